"""Many containers at once (several PATHs, --jobs, --format jsonl), and what each command does not
import: --version and --help need neither rich, nor the rules, nor coremltools; JSON never draws with
rich; a second scan of a live folder never imports coremltools (its model summaries are cached)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run, scan_json


def test_several_paths_make_one_document(built):
    doc = scan_json(built["recompile"], built["healthy"], built["llm"])
    assert doc["paths"] == [str(built["recompile"]), str(built["healthy"]), str(built["llm"])]
    assert [c["source_path"] for c in doc["containers"]] == doc["paths"]
    alone = scan_json(built["recompile"])["containers"][0]
    assert doc["containers"][0]["reclaimable_bytes"] == alone["reclaimable_bytes"]


def test_jobs_give_the_same_answer_as_one_process(built):
    one = scan_json(built["recompile"], built["studio"], built["coreai"])
    many = scan_json(built["recompile"], built["studio"], built["coreai"], "--jobs", "2")
    key = [(c["source_path"], c["reclaimable_bytes"], c["total_bytes"], len(c["artifacts"])) for c in one["containers"]]
    assert key == [(c["source_path"], c["reclaimable_bytes"], c["total_bytes"], len(c["artifacts"]))
                   for c in many["containers"]]


def test_jsonl_streams_one_container_per_line(built):
    result = run("scan", built["simulator"], built["healthy"], "--jobs", "2", "--format", "jsonl")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3  # two simulator apps and the Device Hub folder
    assert {line["schema"] for line in lines} == {"mlcache.scan-container/2"}
    assert {line["source_path"] for line in lines} == {str(built["simulator"]), str(built["healthy"])}


def test_snapshot_and_check_take_several_paths(built, tmp_path):
    snap = json.loads(run("snapshot", built["recompile"], built["healthy"]).stdout)
    assert len(snap["containers"]) == 2
    assert snap["totals"]["coreml_bytes"] == sum(c["coreml_bytes"] for c in snap["containers"])
    assert run("check", built["recompile"], built["healthy"], "--max-total", "1MB", "--jobs", "2").exit_code == 1


def _modules_after(code: str, env: dict | None = None) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, env={**os.environ, **(env or {})}, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


HEAVY = {"rich", "coremltools", "mlcache_audit.rules", "numpy"}


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["scan", "--help"], ["check", "--help"]])
def test_version_and_help_import_nothing_heavy(args):
    code = ("import sys\nfrom mlcache_audit.cli import cli\n"
            f"try:\n    cli.main(args={args!r}, prog_name='mlcache', standalone_mode=False)\n"
            "except SystemExit:\n    pass\n")
    loaded = _modules_after(code)
    assert not {m for m in loaded if m.split(".")[0] in ("rich", "coremltools", "numpy")}
    assert "mlcache_audit.rules" not in loaded


def test_json_output_never_imports_rich(built, tmp_path):
    code = ("from mlcache_audit.cli import cli\n"
            f"try:\n    cli.main(args=['scan', {str(built['recompile'])!r}, '--format', 'json', '--no-hash-cache'], "
            "prog_name='mlcache', standalone_mode=False)\nexcept SystemExit:\n    pass\n")
    loaded = _modules_after(code)
    assert not {m for m in loaded if m.split(".")[0] == "rich"}


def test_a_small_folder_scan_imports_no_archive_reader_nor_worker_processes(tmp_path):
    """zipfile and tarfile only for an archive, multiprocessing only for a split walk, hashlib only
    for a launch history that exists, decimal only for a size with a fraction."""
    import hostile_corpus

    root = hostile_corpus._container(tmp_path / "app")
    hostile_corpus._leak(root, 3)
    code = ("from mlcache_audit.cli import cli\n"
            f"try:\n    cli.main(args=['scan', {str(root)!r}, '--format', 'json', '--max-hash-bytes', '1GiB'], "
            "prog_name='mlcache', standalone_mode=False)\nexcept SystemExit:\n    pass\n")
    loaded = _modules_after(code, {"MLCACHE_CACHE_DIR": str(tmp_path / "cache"),
                                   "MLCACHE_STATE_DIR": str(tmp_path / "state")})
    assert "mlcache_audit.scan.walk" in loaded  # it did scan
    assert not loaded & {"zipfile", "tarfile", "multiprocessing", "hashlib", "decimal", "coremltools"}


def test_second_scan_of_a_live_folder_never_imports_coremltools(fx, tmp_path):
    root = fx("studio")
    env = {"MLCACHE_CACHE_DIR": str(tmp_path / "cache")}
    code = ("from mlcache_audit.audit import audit_path\n"
            f"r = audit_path({str(root)!r})\n"
            "print([a.model.get('type') for ca in r.containers for a in ca.scan.artifacts if a.kind == 'source_model'])\n")
    first = _modules_after(code, env)
    assert "coremltools" in first  # the first scan reads the source models with coremltools
    second = _modules_after(code, env)
    assert "coremltools" not in second
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert "neuralnetwork" in out.stdout and "mlprogram" in out.stdout  # the same summaries, from the cache


@pytest.mark.parametrize("key", ["recompile", "studio", "coreai", "simulator", "healthy", "backup"])
def test_parallel_walk_gives_the_same_document_as_one_walk(built, key, monkeypatch):
    """The top-level parts walked in forked processes: the same bytes, artifacts, findings and notes.
    A backup is never split: its entries are Manifest.db rows, not the payload folders on disk
    (which a split walk once read as the container, on backups of 20,000 files and more)."""
    import mlcache_audit.scan as scan_mod
    import mlcache_audit.scan.split as split_mod
    from mlcache_audit import commands

    opts = commands.SourceOptions(hash_cache=False)
    monkeypatch.setattr(split_mod, "WALK_WORKERS", 1)
    one = commands.scan(str(built[key]), opts).document
    monkeypatch.setattr(split_mod, "WALK_WORKERS", 2)
    monkeypatch.setattr(split_mod, "PARALLEL_MIN_ENTRIES", 0)
    monkeypatch.setattr(split_mod, "PARALLEL_MIN_TASKS", 10**9)
    forked = []
    real = scan_mod.parallel_parts
    monkeypatch.setattr(scan_mod, "parallel_parts", lambda c: forked.append(real(c)) or forked[-1])
    many = commands.scan(str(built[key]), opts).document
    if key == "backup":
        assert forked and all(parts is None for parts in forked), "a backup's payload folders were walked"
    else:
        assert any(parts is not None for parts in forked), "the walk was not split"
    for a, b in zip(one["containers"], many["containers"], strict=True):
        for k in ("total_bytes", "file_count", "coreml_bytes", "reclaimable_bytes", "bytes_by_kind",
                  "other_bytes_by_area", "timeline", "notes", "artifacts", "findings"):
            assert a[k] == b[k], (key, k)


def _walked_in_workers(monkeypatch) -> list:
    """From here on, many containers (two and more) are walked in two workers; the list returned
    hears what each container's walk gave (None: walked in this process)."""
    import contextlib

    import mlcache_audit.audit as audit_mod
    import mlcache_audit.scan.split as split_mod

    monkeypatch.setattr(split_mod, "WALK_WORKERS", 2)
    monkeypatch.setattr(split_mod, "PARALLEL_MIN_CONTAINERS", 2)
    walked: list = []
    real = split_mod.walking

    @contextlib.contextmanager
    def spy(containers, plan_state):
        with real(containers, plan_state) as parts_of:
            yield lambda c: walked.append(parts_of(c)) or walked[-1]

    monkeypatch.setattr(audit_mod, "walking", spy)
    return walked


@pytest.mark.parametrize("key", ["simulator", "home"])
def test_many_containers_walked_in_workers_give_the_same_document(built, key, monkeypatch):
    """A home's many small containers, each walked whole by a forked worker while this process
    works on the ones before it: the same document as walking them one after another here."""
    import mlcache_audit.scan.split as split_mod
    from mlcache_audit import commands

    opts = commands.SourceOptions(hash_cache=False)
    monkeypatch.setattr(split_mod, "WALK_WORKERS", 1)
    one = commands.scan(str(built[key]), opts).document
    walked = _walked_in_workers(monkeypatch)
    many = commands.scan(str(built[key]), opts).document
    assert len(one["containers"]) >= 2 and any(parts is not None for parts in walked), "no container walked in a worker"
    for a, b in zip(one["containers"], many["containers"], strict=True):
        for k in ("root", "total_bytes", "file_count", "reclaimable_bytes", "bytes_by_kind", "other_bytes_by_area",
                  "timeline", "notes", "artifacts", "findings"):
            assert a[k] == b[k], (key, k)


@pytest.mark.parametrize("key", ["simulator", "home"])
def test_plans_from_containers_walked_in_workers_equal_the_plan_of_one_walk(built, key, monkeypatch):
    """clean's walk of many containers in workers: every action's recorded state, freed bytes and
    evidence are those one walk in this process records, since apply holds the target to that
    state. The states cross processes closed (a Seen and its freed bytes), as each walk closes them
    on leaving an artifact."""
    import mlcache_audit.scan.split as split_mod
    from mlcache_audit import commands

    opts = commands.SourceOptions(hash_cache=False)

    def plan() -> dict:
        doc = commands.clean(str(built[key]), source=opts).plan.to_dict()
        doc.pop("created")
        return doc

    monkeypatch.setattr(split_mod, "WALK_WORKERS", 1)
    one = plan()
    assert any(c["actions"] for c in one["containers"]), "nothing planned: the comparison would prove nothing"
    walked = _walked_in_workers(monkeypatch)
    assert plan() == one
    assert any(parts is not None for parts in walked), "no container was walked in a worker"


def test_an_interrupt_while_containers_are_walked_in_workers_ends_every_worker(built, monkeypatch):
    import psutil

    import mlcache_audit.scan.split as split_mod
    from mlcache_audit.sources.detect import open_containers

    monkeypatch.setattr(split_mod, "WALK_WORKERS", 2)
    monkeypatch.setattr(split_mod, "PARALLEL_MIN_CONTAINERS", 2)
    containers = open_containers(str(built["simulator"]))
    assert len(containers) >= 2
    with pytest.raises(KeyboardInterrupt), split_mod.walking(containers, plan_state=False) as parts_of:
        assert parts_of(containers[0]) is not None
        raise KeyboardInterrupt
    assert not [p for p in psutil.Process().children(recursive=True) if p.is_running() and p.status() != "zombie"]


@pytest.mark.parametrize("count", [1, 2, 3, 31, 32, 33, 100, 600, 5000])
@pytest.mark.parametrize("workers", [2, 3, 8])
def test_shrinking_tasks_keep_every_container_once_in_order_and_end_small(count, workers):
    """Many containers go to the workers as tasks that shrink: large first, small last, so at the
    end neither worker waits long and few containers are left to report after the walk."""
    from mlcache_audit.scan.split import shrinking_tasks

    items = list(range(count))
    tasks = shrinking_tasks(items, workers)
    assert [i for t in tasks for i in t] == items
    sizes = [len(t) for t in tasks]
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False))  # never growing
    assert all(s >= 2 for s in sizes[:-1]) and sizes[-1] >= 1
    assert sizes[-1] <= 2 and sizes[0] <= max(2, min(12, count // (4 * workers)))  # 12: one result's bound
    if count >= 600:  # not one task per container: each costs a round trip
        assert len(tasks) <= count // 12 + 12 * workers * 4


@settings(max_examples=200, deadline=None)
@given(count=st.integers(0, 60), ahead=st.integers(1, 8), takes=st.lists(st.integers(0, 3), max_size=30))
def test_a_bounded_map_never_has_more_than_ahead_results_waiting(count, ahead, takes):
    """walking's look-ahead: with `ahead`, the pool never holds more than that many tasks submitted
    and not yet taken, whatever the caller does between takes, and the results come in order, each
    once. Without it, workers that walked a home faster than this process reported it left every
    container's walk waiting in memory (70 MB against 54 MB at a home's 600 containers)."""
    from concurrent.futures import Future

    from mlcache_audit.workers import _Masked

    class Pool:
        submitted = 0

        def submit(self, fn, *args):
            Pool.submitted += 1
            f = Future()
            f.set_result(fn(*args))
            return f

    results = _Masked(Pool()).map(lambda i, j: (i, j), range(count), range(count, 2 * count), ahead=ahead)
    assert Pool.submitted == min(count, ahead)  # handed out at once, as map does: the workers start
    got = []
    for pause in [*takes, *[0] * count]:
        item = next(results, None)
        if item is None:
            break
        got.append(item)
        assert Pool.submitted - len(got) <= ahead
        for _ in range(pause):  # the caller busy with what it took: nothing more is handed out
            assert Pool.submitted - len(got) <= ahead
    assert got == [(i, count + i) for i in range(count)]


def test_a_build_folder_of_odd_entries_splits_into_the_same_document(tmp_path, monkeypatch):
    """The split hands each folder of a specialization cache's build folder to a worker as the
    listing says, without a stat or a classification of its own: a non-hex folder, an interrupted
    write, a plain file beside them and a folder that is no build still give exactly the document
    of one walk (the worker finds what each is)."""
    import hostile_corpus
    import mlcache_audit.scan as scan_mod
    import mlcache_audit.scan.split as split_mod
    from mlcache_audit import commands
    from mlcache_audit.domain import E5_CACHE

    root = hostile_corpus._container(tmp_path / "app")
    hostile_corpus._leak(root, 2)
    cache = root / "Library/Caches/com.example.hostile" / E5_CACHE
    for build in ("23A344", "24B100", "unknown"):
        for name in ("AB" * 32, "CD" * 32, "not-hex", "EF" * 32 + ".tmp.123_4.bundle"):
            (cache / build / name / "H16G.bundle").mkdir(parents=True)
            (cache / build / name / "H16G.bundle" / "seg.bin").write_bytes(b"s" * (len(name) + len(build)))
        (cache / build / "stray.bin").write_bytes(b"x" * 5)
    opts = commands.SourceOptions(hash_cache=False)
    monkeypatch.setattr(split_mod, "WALK_WORKERS", 1)
    one = commands.scan(str(root), opts).document
    monkeypatch.setattr(split_mod, "WALK_WORKERS", 2)
    monkeypatch.setattr(split_mod, "PARALLEL_MIN_TASKS", 1)
    forked = []
    real = scan_mod.parallel_parts
    monkeypatch.setattr(scan_mod, "parallel_parts", lambda c: forked.append(real(c)) or forked[-1])
    many = commands.scan(str(root), opts).document
    assert forked and forked[0] is not None, "the walk was not split"
    _, tasks = split_mod.split_tasks(open_containers_of(root))
    # Four folders in each of the two builds; the folder that is no build is one artifact, one task.
    assert sum(t.startswith(f"Library/Caches/com.example.hostile/{E5_CACHE}/") for t in tasks) == 9
    assert one["containers"][0]["artifacts"] == many["containers"][0]["artifacts"]
    for k in ("total_bytes", "file_count", "bytes_by_kind", "other_bytes_by_area", "timeline", "notes", "findings"):
        assert one["containers"][0][k] == many["containers"][0][k], k


def open_containers_of(root):
    from mlcache_audit.sources import open_containers

    return open_containers(str(root))[0]


_json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4) | st.integers(-3, 3), inner, max_size=4),
    max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(doc=_json_docs, chunk=st.sampled_from([1, 7, 1 << 20]), run=st.sampled_from([1, 2, 256]),
       depth=st.sampled_from([1, 2, 4, 6]), runs_from=st.integers(0, 4), few=st.sampled_from([0, 1, 2, 8]))
def test_a_document_written_in_pieces_is_the_document_encoded_whole(doc, chunk, run, depth, runs_from, few):
    """JSON output is written as it is encoded, in pieces (no text of the whole document is held):
    their concatenation is byte for byte the one-shot encoding, for any document (non-str keys,
    NaN and infinities, escapes, nesting below the streamed levels), chunk size, run of elements
    encoded in one call, number of levels written out, level from which long lists go in runs, and
    length of list still written out element by element."""
    import mlcache_audit.report.json as rj

    names = ("STREAM_CHUNK", "STREAM_RUN", "STREAM_DEPTH", "STREAM_RUNS_FROM", "STREAM_FEW")
    old = [getattr(rj, n) for n in names]
    for n, v in zip(names, (chunk, run, depth, runs_from, few), strict=True):
        setattr(rj, n, v)
    try:
        assert "".join(rj.encoded_chunks(doc)) == rj.encoded(doc)
    finally:
        for n, v in zip(names, old, strict=True):
            setattr(rj, n, v)


def test_a_long_list_deep_in_a_few_findings_is_written_in_runs():
    """The 15,000 links of the one finding of a stale build: no piece holds more than a run of them."""
    import mlcache_audit.report.json as rj

    link = {"path": "Library/Caches/x/" + "A" * 64, "evidence": ["os_build", "22G90"]}
    doc = {"schema": "s", "containers": [{"artifacts": [], "findings": [{"rule": "r", "links": [link] * 5000}]}]}
    pieces = list(rj.encoded_pieces(doc))
    assert "".join(pieces) == rj.encoded(doc)
    assert max(map(len, pieces)) <= rj.STREAM_RUN * (len(rj.encoded(link)) + 2)


@pytest.mark.parametrize("key", ["simulator", "home"])
def test_a_scan_keeps_each_containers_document_and_lets_its_audit_go(built, key, tmp_path, monkeypatch):
    """scan keeps each container's document as the container is done, not its audit (the walk's
    artifacts, fingerprints, findings): no audit of a container already documented is still alive
    when the next is, and the document is the one made from the whole audit kept to the end, the
    hash cache's note on the first container included."""
    import weakref

    from mlcache_audit import audit as audit_mod
    from mlcache_audit import commands
    from mlcache_audit.report.json import container_document, scan_document

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("MLCACHE_CACHE_DIR", str(blocker / "cache"))  # the cache cannot open: a note on the first
    refs, alive = [], []

    def keep(ca):
        alive.append(sum(r() is not None for r in refs))
        refs.append(weakref.ref(ca))
        return container_document(ca)

    kept = audit_mod.audit_path(str(built[key]), plan_state=False, keep=keep)
    assert len(refs) >= 2 and alive == [0] * len(refs)
    whole = audit_mod.audit_path(str(built[key]), plan_state=False)
    assert whole.containers[0].notes, "the hash cache opened: its note is not tried"
    assert scan_document(kept, documents=kept.containers) == scan_document(whole)
    assert commands.scan(str(built[key])).document == scan_document(whole)


def test_jsonl_lines_come_in_pieces_here_and_as_their_text_from_a_worker(built, monkeypatch):
    """A path's JSON Lines are written as they are encoded (no line of a large container is held
    whole), and pickled back from a worker they are that same text, not the document."""
    import pickle

    import mlcache_audit.report.json as rj
    from mlcache_audit import commands

    monkeypatch.setattr(rj, "STREAM_CHUNK", 64)
    lines = commands._scan_lines_of(str(built["simulator"]), commands.SourceOptions(hash_cache=False))  # noqa: SLF001
    pieces = list(lines)
    text = "".join(pieces)
    assert len(pieces) > 2 * text.count("\n") and all(len(p) < len(text) / 4 for p in pieces)
    docs = [json.loads(line) for line in text.splitlines()]
    assert len(docs) >= 2 and all(d["schema"] == rj.SCAN_CONTAINER_SCHEMA for d in docs)
    sent = pickle.loads(pickle.dumps(lines))
    assert type(sent) is str and sent == text
    assert len(pickle.dumps(lines)) < len(text) + 200  # the text alone crosses
