"""Round three of hostile input, on how runs meet each other and the machine: a second run on the
same container, a live container named by its own path, mlcache's own process, overlapping or
unreadable PATHs in one batch, caps that drop work, a zip that lies about its size, forged bytes."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_corpus
from conftest import holding_open, run, tree_state
from mlcache_audit import errors as errors_mod
from mlcache_audit.apply import apply_plan
from mlcache_audit.audit import audit_path
from mlcache_audit.plan import Plan, make_plan


def leak_container(where: Path) -> Path:
    root = hostile_corpus._container(where)
    hostile_corpus._leak(root, 4)
    return root


# -- errors cross process boundaries whole --------------------------------------------------------
def _error_classes():
    out, todo = [], [errors_mod.MlcacheError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_pickles_whole(cls):
    """A --jobs worker's error reaches the parent by pickle: every typed error, with every field."""
    kwargs = {"place": "/x", "reason": "Permission denied"} if cls is errors_mod.PathUnreadable else {}
    exc = cls("the message", "the hint", **kwargs)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls and str(back) == str(exc) and back.__dict__ == exc.__dict__


def test_jobs_with_an_unreadable_path_reports_it_and_finishes_the_rest(built, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "data").write_text("x")
    missing = tmp_path / "no-such-path"
    for jobs in ("1", "2"):
        for fmt in ("json", "jsonl", "text"):
            result = run("scan", built["recompile"], missing, built["healthy"], "--jobs", jobs, "--format", fmt)
            assert result.exit_code == 2, (jobs, fmt, result.stderr)
            assert "internal error" not in result.stderr and "Traceback" not in result.stderr
            assert f"mlcache: error: {missing}: no such file or folder" in result.stderr
            if fmt == "json":
                doc = json.loads(result.stdout)
                assert [e["path"] for e in doc["errors"]] == [str(missing)]
                assert {c["source_path"] for c in doc["containers"]} == {str(built["recompile"]), str(built["healthy"])}
            if fmt == "jsonl":
                lines = [json.loads(x) for x in result.stdout.splitlines()]
                assert [x["path"] for x in lines if x["schema"] == "mlcache.scan-error/1"] == [str(missing)]
                assert sum(x["schema"] == "mlcache.scan-container/2" for x in lines) == 2


def test_a_bad_path_in_a_check_batch_wins_over_a_failed_budget(built, tmp_path):
    result = run("check", built["recompile"], tmp_path / "gone", "--max-total", "1B", "--format", "json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["errors"] and not doc["passed"]


# -- overlapping PATHs ------------------------------------------------------------------------------
def test_overlapping_paths_count_each_container_once(built, tmp_path):
    top = tmp_path / "exports"
    shutil.copytree(built["simulator"], top / "simulator", symlinks=True)
    shutil.copytree(built["recompile"], top / "recompile-app", symlinks=True)
    alone = json.loads(run("check", top, "--max-total", "1TB", "--format", "json").stdout)["totals"]
    inner = top / "recompile-app"
    for paths in ([top, top], [top, inner], [inner, top], [top, top / "simulator", inner]):
        result = run("check", *paths, "--max-total", "1TB", "--format", "json")
        assert result.exit_code == 0, (paths, result.stderr)
        doc = json.loads(result.stdout)
        assert doc["totals"]["coreml_bytes"] == alone["coreml_bytes"], paths
        assert any("counted once" in n or "read once" in n for n in doc["notes"]), doc["notes"]
        scan = json.loads(run("scan", *paths, "--format", "json").stdout)
        roots = [c["root"] for c in scan["containers"]]
        assert len(roots) == len(set(roots)), paths
        assert scan["notes"]


# -- caps that drop work say so --------------------------------------------------------------------
def test_the_container_cap_says_where_the_search_stopped(tmp_path):
    top = tmp_path / "many"
    for i in range(12):
        hostile_corpus._container(top / f"app{i:02d}", f"com.example.app{i:02d}")
    doc = json.loads(run("scan", top, "--format", "json", "--max-containers", "5").stdout)
    assert len(doc["containers"]) == 5
    assert all(any("--max-containers 5" in n for n in c["notes"]) for c in doc["containers"])
    text = run("scan", top, "--max-containers", "5").stdout
    assert "--max-containers 5" in text
    assert len(json.loads(run("scan", top, "--format", "json").stdout)["containers"]) == 12


def _lying_zip(path: Path, declared: int, held: int) -> None:
    body, cd = bytearray(), bytearray()
    for i in range(held):
        n = f"f{i}".encode()
        cd += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(n), 0, 0, 0, 0, 0,
                          len(body)) + n
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(n), 0) + n
    off = len(body)
    body += cd + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, declared, declared, len(cd), off, 0)
    path.write_bytes(bytes(body))


@settings(max_examples=25, deadline=None)
@given(declared=st.integers(1, 40), held=st.integers(1, 400), cap=st.integers(1, 200))
def test_a_zip_is_capped_by_what_its_directory_holds_not_what_it_declares(declared, held, cap):
    from mlcache_audit.errors import ArchiveLimitExceeded
    from mlcache_audit.sources.archive import ArchiveStore

    with tempfile.TemporaryDirectory() as d:
        z = Path(d) / "a.zip"
        _lying_zip(z, declared, held)
        if max(declared, held) > cap:
            with pytest.raises(ArchiveLimitExceeded):
                ArchiveStore(z, "zip", max_members=cap)
        else:
            ArchiveStore(z, "zip", max_members=cap)


# -- one run per container ------------------------------------------------------------------------
def test_a_second_run_on_the_same_container_waits_its_turn(tmp_path, monkeypatch):
    """While one run holds the container, another `clean --apply`, `apply` or `restore` exits 2
    naming it, and touches nothing; once the first is done, the second goes through."""
    import subprocess

    root = leak_container(tmp_path / "app")
    state = Path(os.environ["MLCACHE_STATE_DIR"])
    plan_file = tmp_path / "plan.json"
    assert run("clean", root, "--plan-out", plan_file).exit_code == 0
    from mlcache_audit.identity import key_of

    key = key_of(str(root))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib\n"
        "from mlcache_audit.locks import holding\n"
        "from mlcache_audit.identity import ContainerKey\n"
        f"with holding(pathlib.Path({str(state)!r}), [ContainerKey({key.dev}, {key.ino})], 'test'):\n"
        "    print('held', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = tree_state(root)
        for args in (["clean", root, "--apply", "--yes"], ["apply", plan_file, "--yes"]):
            result = run(*args)
            assert result.exit_code == 2, (args, result.stderr)
            assert f"another mlcache run (pid {holder.pid}, started" in result.stderr
        assert tree_state(root) == before
    finally:
        holder.kill()
        holder.wait()
    assert run("apply", plan_file, "--yes").exit_code == 0  # the OS dropped the lock with its holder


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(note=st.one_of(st.binary(max_size=4096), st.sampled_from([b"[" * 4096, b'{"pid":' * 600, b'{"pid": "x"}',
                                                                  b'{"pid": 1e400, "started": 1}', b"[]", b"null",
                                                                  b'{"pid": "' + b"9" * 5000 + b'"}',
                                                                  b'{"pid": 5, "started": "2026\\n\\u001b[2J::error::x"}'])))
def test_a_held_lock_with_any_note_is_one_line_naming_the_holder_or_pid_unknown(note, tmp_path):
    """The note in a held lock file is read only to name its holder: whatever it holds (a file of
    mlcache's state anyone may have edited), the second run is ContainerBusy, never an internal error."""
    import fcntl

    from mlcache_audit.errors import ContainerBusy
    from mlcache_audit.identity import ContainerKey
    from mlcache_audit.locks import holding

    state = Path(tempfile.mkdtemp(dir=tmp_path))
    key = ContainerKey(1, 2)
    with holding(state, [key], "test"):
        pass
    (lock,) = (state / "locks").glob("*.lock")
    lock.write_bytes(note)
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ContainerBusy) as busy, holding(state, [key], "test"):
            pass
        assert "another mlcache run (" in str(busy.value) and "\n" not in str(busy.value)
    finally:
        os.close(fd)


def test_an_unwritable_state_folder_refuses_before_acting(tmp_path, monkeypatch):
    root = leak_container(tmp_path / "app")
    blocked = tmp_path / "state-is-a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("MLCACHE_STATE_DIR", str(blocked))
    before = tree_state(root)
    result = run("clean", root, "--apply", "--yes")
    assert result.exit_code == 2 and "MLCACHE_STATE_DIR" in result.stderr and str(blocked) in result.stderr
    assert "internal error" not in result.stderr
    assert tree_state(root) == before


# -- where a container lives says whether it is live ----------------------------------------------
LIVE_PLACES = ["Devices/{U}/data/Containers/Data/Application/{A}", "Library/Containers/com.x/Data",
               "Library/Group Containers/group.x", "Library/Caches/pulled/app"]


@pytest.mark.parametrize("place", LIVE_PLACES)
def test_a_live_container_named_by_its_own_path_gets_the_in_use_check(place, tmp_path):
    root = leak_container(tmp_path / "home" / place.format(U="A0B1C2D3-0000-4000-8000-000000000001",
                                                           A="B0B1C2D3-0000-4000-8000-000000000002"))
    plan = make_plan(audit_path(str(root), hash_cache=False))
    assert plan.containers[0].live and plan.to_dict()["containers"][0]["live"] is True
    before = tree_state(root)
    with holding_open(root / "Documents" / "notes.txt") as app:
        outcome = apply_plan(plan)
        assert {o.status for c in outcome.containers for o in c.outcomes} == {"skipped"}
        assert all(f"pid {app.pid}" in o.reason for c in outcome.containers for o in c.outcomes)
    assert tree_state(root) == before


def test_an_offline_copy_is_not_live_but_still_refused_while_a_process_uses_it(tmp_path):
    root = leak_container(tmp_path / "Desktop" / "pulled")
    plan = make_plan(audit_path(str(root), hash_cache=False))
    assert plan.containers[0].live is None
    with holding_open(root / "Documents" / "notes.txt"):
        outcome = apply_plan(plan)
        assert {o.status for c in outcome.containers for o in c.outcomes} == {"skipped"}


@given(parts=st.lists(st.sampled_from(["Library", "Containers", "Caches", "Group Containers", "Devices", "data",
                                       "U", "x", "Data"]), max_size=8))
def test_live_place_is_about_where_a_root_lies(parts):
    from mlcache_audit.sources.base import live_place

    root = "/" + "/".join(parts)
    why = live_place(root, temp=())
    runs = [("Library", "Containers"), ("Library", "Group Containers"), ("Library", "Caches")]
    below = any(parts[i:i + 2] == list(r) and len(parts) > i + 2 for r in runs for i in range(len(parts)))
    sim = any(parts[i] == "Devices" and parts[i + 2:i + 4] == ["data", "Containers"] and len(parts) > i + 4
              for i in range(len(parts) - 3))
    assert (why is not None) == (below or sim)


# -- mlcache's own process is never a client ------------------------------------------------------
def test_mlcache_never_counts_itself_or_its_workers_as_a_running_client(monkeypatch):
    import psutil

    from mlcache_audit.processes import own_pids, processes_named

    me = psutil.Process()
    assert os.getpid() in own_pids()
    assert all(pid != os.getpid() for pid, _ in processes_named({me.name()}))


# -- bytes are measured, never taken from a plan ---------------------------------------------------
def test_apply_reports_what_it_measured_not_what_a_plan_claims(tmp_path):
    root = leak_container(tmp_path / "app")
    plan = make_plan(audit_path(str(root), hash_cache=False))
    d = plan.to_dict()
    true = sum(a["bytes"] for c in d["containers"] for a in c["actions"])
    for c in d["containers"]:
        for a in c["actions"]:
            a["bytes"] = 1 << 62
    outcome = apply_plan(Plan.from_dict(d))
    assert outcome.complete and outcome.freed_bytes == true


# -- watch books every instance -------------------------------------------------------------------
def test_watch_books_overlapping_instances_as_launches_each(monkeypatch):
    import mlcache_audit.watch as watch_mod

    # Three instances: pids 30, 20, 10 start in that order and overlap; 20 ends first, then 30, then 10.
    timeline = iter([{30: 1.0}, {30: 1.0, 20: 2.0}, {30: 1.0, 20: 2.0, 10: 3.0}, {30: 1.0, 10: 3.0},
                     {30: 1.0, 10: 3.0}, {10: 3.0}, {10: 3.0}, {}, {}, {}])
    current = {"now": {}}

    def instances(name):
        return current["now"]

    def sleep(_):
        current["now"] = next(timeline)

    monkeypatch.setattr(watch_mod, "running_instances", instances)
    snaps = iter([watch_mod.Snapshot({}, 0.0)] + [watch_mod.Snapshot({("app", f"tmp/{i}"): (1, (), 9.0)}, 9.0)
                                                  for i in range(3)])
    events = list(watch_mod.follow(lambda: next(snaps), process="x", launches=3, interval=1, count=None,
                                   record=False, sleep=sleep, poll=0))
    assert [e["pid"] for e in events if e["type"] == "launch"] == [20, 30, 10]
    assert events[-1]["launches"] == 3
