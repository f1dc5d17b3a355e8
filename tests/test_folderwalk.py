"""The folder walk (scan/walk.py) classifies as it walks; it must give exactly what the per-entry
walk (`scan.walk_entries` over `FolderStore.walk`) gives: the same artifacts with the same sums,
members, structure ids and layouts, the same area sums, days and notes, on every fixture, every
hostile tree and random trees, and the same documents through the command."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hostile_corpus
from mlcache_audit.domain import (
    COREAI_CACHE,
    E5_CACHE,
    EXECUTORCH_COREAI,
    EXECUTORCH_COREML,
    MPSGRAPH_SCRATCH,
)
from mlcache_audit.scan.account import walk_entries
from mlcache_audit.scan.classify import any_may_start, classify_entry, file_may_start, quiet_folder
from mlcache_audit.scan.model import area_of
from mlcache_audit.scan.walk import walk_folder
from mlcache_audit.sources import open_containers
from mlcache_audit.sources.base import FILE, Entry
from test_hostile import remove_iteratively
from test_hostile_faults import _make, deny_access, nodes
from test_hostile_faults import names as byte_names


def _artifact(a) -> tuple:
    a.finish_structure()  # the walks leave it running when its top could not be walked (scan_container finishes it)
    structure = a.structure
    return (a.kind, a.path, a.is_dir, a.producer, a.bytes, a.disk_bytes, a.unkept_times, a.files, a.oldest_mtime,
            a.newest_mtime, a.detail,
            a.notes, [(e.path, e.type, e.size, e.mtime_ns, e.inode, e.nlink, e.ctime_ns, e.name) for e in a.members],
            a.top.path if a.top else None, structure, sorted(a.layout))


def _states(part) -> list:
    return [(a.path, a.state.seen(a.top), a.state.freed, a.private_disk, sorted(a.linked.items()))
            for a in part.artifacts]


def _summary(part) -> tuple:
    return ([_artifact(a) for a in part.artifacts], part.total, part.files, part.other, part.days,
            part.total_disk, part.links, part.notes)


def assert_finished(part, label: str) -> None:
    """Each walk lets an artifact's running hashes go as it leaves it (about 1.4 KB of C memory an
    artifact, 21 MB at 15,000 cache entries): none is left running once the walk returns. Nor a
    cache entry's layout as a set of its own: entries of one layout share one frozenset of it."""
    from mlcache_audit.scan.model import LAYOUT_MEMO_NAMES

    first: dict = {}
    for a in part.artifacts:
        assert a.hasher is None, (label, a.path, "structure hash left running")
        assert a.state is None or a.state._h is None, (label, a.path, "plan state left running")  # noqa: SLF001
        assert type(a.layout) is frozenset, (label, a.path, "layout left a set of its own")
        if len(a.layout) <= LAYOUT_MEMO_NAMES:
            assert first.setdefault(a.layout, a.layout) is a.layout, (label, a.path, "an equal layout not shared")


def assert_same_walks(path: Path) -> int:
    """Both walks of every folder container at `path`; returns how many were compared."""
    compared = 0
    for c in open_containers(str(path)):
        if c.store.kind != "folder" or c.scope:
            continue
        slow_notes: list[str] = []
        slow = walk_entries(c.store.walk(c.root, slow_notes), False, slow_notes)
        fast = walk_folder(c.store, c.root, [])
        assert_finished(slow, c.label)
        assert_finished(fast, c.label)
        assert _summary(fast) == _summary(slow), c.label
        # With plan states (clean): the same states, as apply will check them again.
        slow_notes = []
        slow = walk_entries(c.store.walk(c.root, slow_notes), True, slow_notes)
        fast = walk_folder(c.store, c.root, [], plan_state=True)
        assert_finished(slow, c.label)
        assert_finished(fast, c.label)
        assert _summary(fast) == _summary(slow), c.label
        assert _states(fast) == _states(slow), c.label
        compared += 1
    return compared


@pytest.mark.parametrize("key", ["recompile", "studio", "coreai", "llm", "simulator", "healthy", "macos"])
def test_folder_walk_equals_the_entry_walk_on_every_fixture(built, key):
    assert assert_same_walks(built[key]) >= 1


@pytest.mark.parametrize("builder", [b for b in hostile_corpus.BUILDERS
                                     if b.__name__ not in ("hostile_backup", "backup_in_odd_folder", "hostile_zip",
                                                           "hostile_tar", "many_members_zip")],
                         ids=lambda b: b.__name__)
def test_folder_walk_equals_the_entry_walk_on_hostile_trees(builder, tmp_path):
    case = hostile_corpus.build(builder, tmp_path)
    if case is None:
        pytest.skip("not buildable here")
    try:
        assert assert_same_walks(case.target) >= 1
    finally:
        remove_iteratively(tmp_path)  # pytest's own clean-up cannot remove the deep chain


def test_hardlinks_odd_names_and_links_take_the_entry_steps(tmp_path):
    root = hostile_corpus._container(tmp_path / "app")
    hostile_corpus._leak(root, 2)
    entry = root / "Library/Caches/com.example.hostile" / E5_CACHE / "23A344" / ("AB" * 32)
    (entry / "H16G.bundle").mkdir(parents=True)
    (entry / "H16G.bundle" / "seg.bin").write_bytes(b"s" * 40)
    os.link(entry / "H16G.bundle" / "seg.bin", root / "Documents" / "linked.bin")  # counted once, by the first
    (entry / "H16G.bundle" / "a.bin").write_bytes(b"a" * 3)  # folded in before the odd name's line
    (entry / "H16G.bundle" / "caf\xe9.bin").write_bytes(b"o" * 7)
    (root / "Documents" / "to-entry").symlink_to(entry)
    (root / "Documents" / "plain.mlmodel").write_bytes(b"\x08\x04")
    (root / "Library/Caches" / EXECUTORCH_COREML).mkdir(parents=True)
    (root / "Library/Caches" / EXECUTORCH_COREML / "version.txt").write_text("1")
    (entry / ("CD" * 32 + ".tmp.123_4.bundle")).mkdir()
    (entry / ("CD" * 32 + ".tmp.123_4.bundle") / "part.bin").write_bytes(b"p" * 9)
    assert assert_same_walks(root) == 1


paths = st.lists(st.sampled_from(["tmp", "Library", "Caches", "Documents", "Application Support", E5_CACHE,
                                  COREAI_CACHE, EXECUTORCH_COREML, EXECUTORCH_COREAI, MPSGRAPH_SCRATCH, "23A344",
                                  "models", "staging", "x.mlmodelc", "y.mlpackage", "Preferences", "album"]),
                 min_size=1, max_size=6)
file_names = st.sampled_from(["a.bin", "m.mlmodel", "Caches", "Preferences", "version.txt", "x.mlmodelc",
                              hostile_corpus.GUS, "onnxruntime-" + hostile_corpus.GUS[:-17] + "-1-0000000000000000",
                              "a" * 64, ".tmp-1", "b.bookmark", "c.accessed"]) | st.text(min_size=1, max_size=12).filter(
    lambda s: "/" not in s)


@settings(max_examples=500, deadline=None)
@given(folder=paths, name=file_names)
def test_quiet_folders_start_artifacts_only_from_mlmodel_files(folder, name):
    rel = "/".join(folder)
    area = quiet_folder(rel)
    if area is None or file_may_start(name):
        return
    e = Entry(f"{rel}/{name}", FILE, 1, base=name)
    assert classify_entry(e, None) is None
    assert area_of(e.path) == area


@settings(max_examples=300, deadline=None)
@given(names=st.lists(file_names | st.sampled_from(["w.safetensors", "m.gguf", "a.xnnpack_cache_1", "b.xnnpack_cache",
                                                    "m_1_mldrift_program_cache.bin", "x.mlmodel"]), max_size=6))
def test_a_folder_says_no_file_may_start_only_when_none_may(names):
    """The walk skips file_may_start for a folder whose joined names have none of its marks: that
    must never skip a name that may start an artifact."""
    if any(file_may_start(n) for n in names):
        assert any_may_start("/".join(names))


times = st.floats(-1e12, 1e13, allow_nan=False) | st.integers(-20_000, 120_000).map(float).map(lambda d: d * 86400.0)


@settings(max_examples=2000, deadline=None)
@given(x=times, y=times | times.map(lambda t: t - 1e-6) | times.map(lambda t: t + 1e-6))
def test_a_day_range_holds_exactly_the_times_of_its_day(x, y):
    """The walk keeps a run's bytes by day while mtimes stay in [d * 86400, d * 86400 + 86400) for the
    day d = int(x // 86400) of the run's first file: a time lies in that range exactly when it is of
    that day, so the days are those of int(mtime // 86400), file by file (before 1970 too)."""
    d = int(x // 86400)
    lo = d * 86400.0
    assert lo <= x < lo + 86400.0
    assert (lo <= y < lo + 86400.0) == (int(y // 86400) == d)


runs = st.lists(st.tuples(st.sampled_from(["file", "file", "file", "dir", "link", "hardlink", "odd"]),
                          st.integers(0, 5000), st.integers(-2, 4_000_000_000)), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(entry_run=runs, docs_run=runs)
def test_run_sums_equal_the_entry_walk_with_mixed_times_and_kinds(entry_run, docs_run):
    """The inner loop sums a folder's plain files in a run and settles them into their artifact (or
    area) before any other kind of entry and at the folder's end: sizes, blocks, kept and unkept
    times, oldest and newest mtime (before 1970 too) stay exactly what the per-entry walk adds up."""
    base = Path(tempfile.mkdtemp())
    try:
        root = hostile_corpus._container(base / "app")
        entry = root / "Library/Caches/com.example.hostile" / E5_CACHE / "23A344" / ("AB" * 32)
        docs = root / "Documents" / "album"
        for where, run in ((entry, entry_run), (docs, docs_run)):
            where.mkdir(parents=True)
            for i, (kind, size, mtime) in enumerate(run):
                p = where / (f"f{i:02d}.bin" if kind != "odd" else f"caf\xe9{i}.bin")
                if kind == "dir":
                    p.mkdir()
                    (p / "inner.bin").write_bytes(b"i" * (size % 7))
                elif kind == "link":
                    p.symlink_to("f00.bin")
                    continue
                elif kind == "hardlink" and (where / "f00.bin").is_file():
                    os.link(where / "f00.bin", p)
                    continue
                else:
                    p.write_bytes(b"x" * size)
                if kind != "dir" and mtime >= 0:  # else: mtime within the unkept window of its ctime
                    os.utime(p, ns=(mtime * 1_000_000_000 + 7, mtime * 1_000_000_000 + 7))
                elif kind != "dir" and mtime == -2:
                    os.utime(p, ns=(-86_400_000_000_123, -86_400_000_000_123))
        assert assert_same_walks(root) == 1
    finally:
        remove_iteratively(base)
        os.rmdir(base)


@settings(max_examples=20, deadline=None)
@given(tmp_tree=st.dictionaries(byte_names, nodes, max_size=4), caches_tree=st.dictionaries(byte_names, nodes, max_size=3),
       docs_tree=st.dictionaries(byte_names, nodes, max_size=3))
def test_folder_walk_equals_the_entry_walk_on_random_byte_trees(tmp_tree, caches_tree, docs_tree):
    base = Path(tempfile.mkdtemp())
    try:
        root = hostile_corpus._container(base / "app")
        hostile_corpus._leak(root, 2)
        caches = os.fsencode(root / "Library" / "Caches" / "com.example.hostile" / E5_CACHE) + b"/23A344"
        os.makedirs(caches, exist_ok=True)
        for where, tree in ((os.fsencode(root / "tmp"), tmp_tree), (caches, caches_tree),
                            (os.fsencode(root / "Documents"), docs_tree)):
            for name, node in tree.items():
                target = where + b"/" + name
                if not os.path.lexists(target):
                    _make(target, node)
        assert assert_same_walks(root) == 1
    finally:
        remove_iteratively(base)
        os.rmdir(base)


def test_a_split_walk_worker_never_enters_a_folder_swapped_since_the_split(tmp_path):
    """Between the split and a worker's walk, a task folder becomes a symlink to a folder outside:
    the worker notes it and walks nothing through it."""
    from mlcache_audit.scan.split import split_tasks, walk_group

    root = hostile_corpus._container(tmp_path / "app")
    hostile_corpus._leak(root, 3)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"s" * 99)
    c = open_containers(str(root))[0]
    _, tasks = split_tasks(c)
    task = next(t for t in tasks if t.startswith("tmp/"))
    parent, _, name = task.rpartition("/")
    moved = tmp_path / "moved"
    os.rename(root / task, moved)
    os.symlink(outside, root / task)
    part = walk_group(c.store, c.root, parent, [name])
    assert part.files == 0 and part.total == 0
    assert any(task in n and "not scanned" in n for n in part.notes), part.notes


@pytest.mark.parametrize("split", [False, True], ids=["one walk", "split walk"])
def test_an_unreadable_folder_is_noted_and_the_rest_is_scanned(split, tmp_path, monkeypatch):
    """EACCES on listing one folder (injected: root reads every folder): both walks note it in the
    same words, and the command still scans everything else, exit 0. (The split walk's size probe
    once let it through as an internal error.)"""
    from conftest import run
    from test_hostile import json_doc

    root = hostile_corpus._container(tmp_path / "app")
    hostile_corpus._leak(root, 2)
    locked = root / "Documents" / "locked"
    locked.mkdir()
    (locked / "a.bin").write_bytes(b"a" * 10)
    deny_access(monkeypatch, locked, "listdir")
    assert assert_same_walks(root) == 1
    if split:
        import mlcache_audit.scan as scan_mod
        import mlcache_audit.scan.split as split_mod

        monkeypatch.setattr(split_mod, "PARALLEL_MIN_ENTRIES", 0)
        forked = []
        real = scan_mod.parallel_parts
        monkeypatch.setattr(scan_mod, "parallel_parts", lambda c: forked.append(real(c)) or forked[-1])
    result = run("scan", root, "--format", "json", "--no-hash-cache")
    if split:
        assert forked and forked[0] is not None, "the walk was not split"
    assert result.exit_code == 0, result.stderr
    c = json_doc(result)["containers"][0]
    assert "unreadable folder, not scanned: Documents/locked (permission denied)" in c["notes"]
    assert c["file_count"] > 0 and c["reclaimable_bytes"] > 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.text(alphabet="\0\1\2/ab.\u00e9\U0001f600", min_size=1, max_size=4).filter(
    lambda n: "/" not in n), min_size=1, max_size=4), min_size=1, max_size=30))
def test_tree_key_orders_paths_as_their_components_do(parts):
    """tree_key (one string a path) orders as the list of its components does, names holding the
    characters it escapes included: every tree-order sort of the scan and the planner rests on it."""
    from mlcache_audit.sources.base import tree_key

    paths = ["/".join(p) for p in parts]
    assert sorted(paths, key=tree_key) == sorted(paths, key=lambda p: p.split("/"))
    assert len({tree_key(p) for p in paths}) == len(set(paths))  # one key a path: no two paths alike
