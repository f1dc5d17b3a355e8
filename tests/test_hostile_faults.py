"""Hostile input, part two: OS faults injected where root cannot meet them, documents fuzzed, random
trees with arbitrary byte names, and the small classes (empty paths, outputs, case-folded names)."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import hostile_corpus  # noqa: E402
from conftest import run, tree_state  # noqa: E402
from mlcache_audit import apply as apply_mod  # noqa: E402
from mlcache_audit.apply import apply_plan, restore_quarantine  # noqa: E402
from mlcache_audit.audit import audit_path  # noqa: E402
from mlcache_audit.errors import MlcacheError, PlanInvalid  # noqa: E402
from mlcache_audit.gate import budgets_from, check, diff, load_snapshot  # noqa: E402
from mlcache_audit.plan import Plan, make_plan  # noqa: E402
from mlcache_audit.quarantine import read_manifest  # noqa: E402
from mlcache_audit.safety import may_act_on  # noqa: E402
from test_hostile import assert_clean_output, full_state, json_doc, remove_iteratively, time_limit  # noqa: E402


def leak_container(tmp_path: Path) -> Path:
    root = hostile_corpus._container(tmp_path / "app")
    hostile_corpus._leak(root, 4)
    return root


def plan_for(root: Path) -> Plan:
    return make_plan(audit_path(str(root), hash_cache=False))


# -- OS errors per entry ------------------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC, errno.ENAMETOOLONG, errno.EPERM])
def test_apply_reports_os_errors_per_entry(tmp_path, monkeypatch, code):
    root = leak_container(tmp_path)
    plan = plan_for(root)
    real_rename = os.rename
    hit = {"n": 0}

    def failing_rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        hit["n"] += 1
        if hit["n"] == 2:
            raise OSError(code, os.strerror(code))
        return real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(apply_mod.os, "rename", failing_rename)
    outcome = apply_plan(plan)
    failed = [o for c in outcome.containers for o in c.outcomes if o.status == "failed"]
    assert len(failed) == 1 and errno.errorcode[code] in failed[0].reason and failed[0].bytes == 0
    assert sum(o.status == "removed" for c in outcome.containers for o in c.outcomes) == \
           sum(len(c.actions) for c in plan.containers) - 1  # the rest went on


def test_failed_entry_through_the_cli_exits_1_without_internal_error(tmp_path, monkeypatch):
    root = leak_container(tmp_path)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(apply_mod.os, "rename", read_only)
    result = run("clean", root, "--apply", "--yes")
    assert_clean_output(result)
    assert result.exit_code == 1 and "Read-only file system (EROFS)" in result.stdout


def _tmpfs(path: Path, options: str = "") -> bool:
    """A real second volume, where the OS itself produces EXDEV and EROFS (root only)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options or "size=64m", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_volume_is_a_failed_entry_not_a_crash(tmp_path):
    vol = tmp_path / "vol"
    if not _tmpfs(vol):
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    try:
        root = leak_container(vol)
        plan = plan_for(root)
        subprocess.run(["mount", "-o", "remount,ro", str(vol)], check=True, capture_output=True)
        outcome = apply_plan(plan, state_dir=tmp_path / "state")
        statuses = {o.status for c in outcome.containers for o in c.outcomes}
        assert statuses == {"failed"}
        assert all("EROFS" in o.reason for c in outcome.containers for o in c.outcomes)
    finally:
        _umount(vol)


def test_quarantine_moves_by_rename_only(tmp_path):
    """Another volume is refused before anything moves (a real tmpfs where possible)."""
    vol = tmp_path / "vol"
    if not _tmpfs(vol):
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    try:
        root = leak_container(tmp_path)
        before = tree_state(root)
        result = run("clean", root, "--apply", "--yes", "--quarantine", vol / "q")
        assert result.exit_code == 2 and "another volume" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert tree_state(root) == before
    finally:
        _umount(vol)


def test_exdev_at_the_move_leaves_the_entry_and_a_cancelled_record(tmp_path, monkeypatch):
    root = leak_container(tmp_path)
    before = tree_state(root)
    q = tmp_path / "q"

    def exdev(*a, **k):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(apply_mod.os, "rename", exdev)
    outcome = apply_plan(plan_for(root), quarantine=q)
    assert {o.status for c in outcome.containers for o in c.outcomes} == {"failed"}
    assert all("another volume" in o.reason for c in outcome.containers for o in c.outcomes)
    assert tree_state(root) == before
    records, finished, damaged = read_manifest(str(q))
    assert records and {r.stored for r in records} == finished and not damaged  # written first, then cancelled
    assert restore_quarantine(q).outcomes == ()


def test_manifest_record_is_synced_before_the_move(tmp_path, monkeypatch):
    """Each move finds its own record (its token) in the manifest, synced, before it happens: a
    group's records share one write and one fsync, all before any move of the group."""
    root = leak_container(tmp_path)
    q = tmp_path / "q"
    real_rename, real_fsync = os.rename, os.fsync
    synced: list[int] = []  # the manifest's length at each sync
    missing = []

    def syncing(fd):
        real_fsync(fd)
        manifest = q / "manifest.jsonl"
        if manifest.exists() and os.fstat(fd).st_ino == manifest.stat().st_ino:  # the manifest's own sync
            synced.append(os.fstat(fd).st_size)

    def watching(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        text = (q / "manifest.jsonl").read_bytes()
        if f'/items/{dst}"'.encode() not in text[:max(synced, default=0)]:
            missing.append(dst)
        return real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(apply_mod.os, "rename", watching)
    monkeypatch.setattr(os, "fsync", syncing)
    outcome = apply_plan(plan_for(root), quarantine=q)
    assert outcome.complete and sum(o.status == "quarantined" for c in outcome.containers for o in c.outcomes) >= 2
    assert not missing, "moved before its record was synced"


def test_a_crash_between_a_groups_records_and_its_moves_loses_nothing(tmp_path, monkeypatch):
    """The run dies after its group's records are synced, two moves in: restore puts back the two,
    passes over the records whose entries never moved (still in the container), and nothing is lost."""
    root = leak_container(tmp_path)
    before = tree_state(root)
    q = tmp_path / "q"
    real_rename = os.rename
    moves = []

    def dying(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        if len(moves) == 2:
            raise SystemExit(137)  # as a kill: nothing after this line of the run happens
        moves.append(dst)
        return real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(apply_mod.os, "rename", dying)
    with pytest.raises(SystemExit):
        apply_plan(plan_for(root), quarantine=q)
    monkeypatch.setattr(apply_mod.os, "rename", real_rename)
    records, finished, damaged = read_manifest(str(q))
    assert len(records) > 2 and not finished and not damaged  # the whole group announced, none cancelled
    result = restore_quarantine(q)
    statuses = sorted(o.status for o in result.outcomes)
    assert statuses.count("restored") == 2 and statuses.count("skipped") == len(records) - 2
    assert all("never moved" in o.reason for o in result.outcomes if o.status == "skipped")
    after = tree_state(root)  # every file where it was, as it was (folders' own times move with a rename)
    assert {p: s for p, s in after.items() if not (root / p).is_dir()} == \
           {p: s for p, s in before.items() if not (root / p).is_dir()}


def _hostile_lines(good: dict, other: Path) -> list:
    return [
        {**good, "stored": "../../outside/secret"},
        {**good, "stored": "/etc/passwd"},
        {**good, "root": str(other)},
        {**good, "path": "../escape"},
        {**good, "path": "Documents/notes.txt"},
        {**good, "bytes": "12"},
        {**good, "bytes": True},
        {**good, "bytes": -1},
        {**good, "root": 5},
        ["not", "an", "object"],
        "text",
        "{torn line",
        "[" * 5000 + "]" * 5000,
    ]


@pytest.mark.parametrize("which", range(13))
def test_one_hostile_manifest_line_means_nothing_is_restored(which, tmp_path):
    root = leak_container(tmp_path)
    q = tmp_path / "q"
    apply_plan(plan_for(root), quarantine=q)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not yours")
    other = hostile_corpus._container(tmp_path / "other-app", "com.example.other")
    good = json.loads((q / "manifest.jsonl").read_text().splitlines()[0])
    rec = _hostile_lines(good, other)[which]
    items = sorted(p.name for p in q.glob("*/items/*"))
    with open(q / "manifest.jsonl", "a") as fh:
        fh.write((rec if isinstance(rec, str) else json.dumps(rec)) + "\n")
    result = run("restore", q, "--format", "json")
    assert_clean_output(result)
    assert result.exit_code == 2 and "nothing was restored" in result.stderr
    assert sorted(p.name for p in q.glob("*/items/*")) == items  # nothing moved
    assert (outside / "secret").read_text() == "not yours"
    assert not any(n.startswith(("F38A", "escape")) for n in os.listdir(other / "tmp"))


def test_a_full_disk_at_the_manifest_moves_nothing_and_leaves_no_torn_line(tmp_path, monkeypatch):
    """The quarantine's manifest cannot be synced (a full disk): the group's records are taken
    back, nothing is moved, each entry says why, and a later run into the same folder appends to a
    manifest with no damaged line (restore refuses one that is not the last)."""
    root = leak_container(tmp_path)
    before = tree_state(root)
    q = tmp_path / "q"
    real_fsync = os.fsync

    def full(fd):
        if (q / "manifest.jsonl").exists() and os.fstat(fd).st_ino == (q / "manifest.jsonl").stat().st_ino:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    outcome = apply_plan(plan_for(root), quarantine=q)
    reasons = {o.reason for c in outcome.containers for o in c.outcomes}
    assert {o.status for c in outcome.containers for o in c.outcomes} == {"skipped"}
    assert all("manifest cannot be written" in r and "not acted on" in r for r in reasons), reasons
    assert tree_state(root) == before
    assert (q / "manifest.jsonl").read_bytes() == b""  # taken back whole: no torn line
    monkeypatch.setattr(os, "fsync", real_fsync)
    again = apply_plan(plan_for(root), quarantine=q)
    moved = sum(o.status == "quarantined" for c in again.containers for o in c.outcomes)
    records, finished, damaged = read_manifest(str(q))
    assert moved and not damaged and len(records) == moved
    assert sum(o.status == "restored" for o in restore_quarantine(q).outcomes) == moved


@pytest.mark.parametrize("reader", [False, True], ids=["fifo", "fifo-with-a-reader"])
def test_a_fifo_for_a_manifest_neither_blocks_nor_moves_anything(tmp_path, reader):
    """A FIFO where the quarantine's manifest should be: opened without blocking and refused on its
    handle (with or without a reader at its other end), so nothing is moved and the run ends."""
    root = leak_container(tmp_path)
    before = tree_state(root)
    q = tmp_path / "q"
    q.mkdir()
    os.mkfifo(q / "manifest.jsonl")
    held = os.open(q / "manifest.jsonl", os.O_RDONLY | os.O_NONBLOCK) if reader else None
    try:
        with time_limit(30):
            result = run("clean", root, "--apply", "--yes", "--quarantine", q, "--format", "json")
    finally:
        if held is not None:
            os.close(held)
    assert_clean_output(result)
    statuses = {o["status"] for c in json_doc(result)["containers"] for o in c["outcomes"]}
    assert statuses == {"skipped"}
    assert tree_state(root) == before


def test_a_full_disk_at_restores_marks_keeps_what_was_put_back_and_says_so(tmp_path, monkeypatch):
    """restore records what it put back a group at a time, after the moves: a manifest that cannot
    take those lines undoes nothing; each such outcome says so, and a later restore passes over them."""
    root = leak_container(tmp_path)
    before = tree_state(root)
    q = tmp_path / "q"
    apply_plan(plan_for(root), quarantine=q)
    real_fsync = os.fsync

    def full(fd):
        if os.fstat(fd).st_ino == (q / "manifest.jsonl").stat().st_ino:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    first = restore_quarantine(q)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert first.outcomes and {o.status for o in first.outcomes} == {"restored"}
    assert all("could not record it" in o.reason for o in first.outcomes)
    after = tree_state(root)
    assert {p: v for p, v in after.items() if not (root / p).is_dir()} == \
           {p: v for p, v in before.items() if not (root / p).is_dir()}
    second = restore_quarantine(q)
    assert {o.status for o in second.outcomes} == {"skipped"} and all("never moved, or restored already" in o.reason
                                                                      for o in second.outcomes)


def test_a_torn_last_manifest_line_is_the_crash_it_records_and_the_rest_is_restored(tmp_path):
    root = leak_container(tmp_path)
    q = tmp_path / "q"
    outcome = apply_plan(plan_for(root), quarantine=q)
    moved = sum(o.status == "quarantined" for c in outcome.containers for o in c.outcomes)
    with open(q / "manifest.jsonl", "a") as fh:
        fh.write('{"root": "/x", "pa')  # the run died writing its next record, before that move
    result = run("restore", q, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert sum(o["status"] == "restored" for o in json_doc(result)["outcomes"]) == moved


def test_restore_only_into_the_container_it_was_made_for(tmp_path):
    root = leak_container(tmp_path)
    q = tmp_path / "q"
    apply_plan(plan_for(root), quarantine=q)
    meta = root / ".com.apple.mobile_container_manager.metadata.plist"
    import plistlib

    meta.write_bytes(plistlib.dumps({"MCMMetadataIdentifier": "com.example.someone-else"}))
    with pytest.raises(PlanInvalid, match="no longer holds"):
        restore_quarantine(q)


def test_restore_refuses_another_folder_put_at_the_containers_path(tmp_path):
    """Identity, not path: the same app's container copied back in place is another folder."""
    root = leak_container(tmp_path)
    q = tmp_path / "q"
    apply_plan(plan_for(root), quarantine=q)
    items = sorted(p.name for p in q.glob("*/items/*"))
    shutil.move(str(root), str(tmp_path / "moved-away"))
    shutil.copytree(tmp_path / "moved-away", root, symlinks=True)
    with pytest.raises(PlanInvalid, match="another folder is there now"):
        restore_quarantine(q)
    assert sorted(p.name for p in q.glob("*/items/*")) == items


def test_restore_of_a_crafted_client_store_never_writes_outside(tmp_path):
    """A handmade per-process store naming a plain folder elsewhere as its root is refused whole."""
    from mlcache_audit import quarantine as qfmt

    q = tmp_path / "q"
    plain = tmp_path / "plain" / "folder"
    plain.mkdir(parents=True)
    root = str(plain)
    store = qfmt.store_name(qfmt.container_key(root, "python"))
    (q / store / "items").mkdir(parents=True)
    (q / store / "items" / ("ab" * 12)).write_text("payload")
    (q / store / "container.json").write_text(json.dumps(qfmt.store_info(root, None, "process-cache", "python",
                                                                        ("python/com.apple.e5rt.e5bundlecache",))))
    (q / "manifest.jsonl").write_text(json.dumps(qfmt.record_dict(
        root, None, "python/com.apple.e5rt.e5bundlecache/deep/new/x", f"{store}/items/{'ab' * 12}", 7,
        "stale-os-build", "2026-01-01T00:00:00Z", client="python")) + "\n")
    result = run("restore", q)
    assert result.exit_code == 2 and "nothing was restored" in result.stderr
    assert list(plain.iterdir()) == []


# -- documents from outside ---------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)


def _replace_somewhere(doc, data):
    """The document with one value, chosen by hypothesis, replaced by any JSON value."""
    if isinstance(doc, dict) and doc:
        key = data.draw(st.sampled_from(sorted(doc)))
        if data.draw(st.booleans()):
            return {**doc, key: data.draw(json_values)}
        return {**doc, key: _replace_somewhere(doc[key], data)}
    if isinstance(doc, list) and doc:
        i = data.draw(st.integers(0, len(doc) - 1))
        return doc[:i] + [_replace_somewhere(doc[i], data)] + doc[i + 1:]
    return data.draw(json_values)


@pytest.fixture(scope="module")
def valid_docs(tmp_path_factory):
    root = leak_container(tmp_path_factory.mktemp("docs"))
    plan = plan_for(root).to_dict()
    snap = json.loads(run("snapshot", root).stdout)
    return {"plan": plan, "snapshot": snap}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_plans_are_a_plan_or_a_clean_error(valid_docs, data):
    doc = _replace_somewhere(valid_docs["plan"], data) if data.draw(st.booleans()) else data.draw(json_values)
    try:
        plan = Plan.from_dict(doc)
    except MlcacheError as exc:
        assert exc.exit_code == 2 and "\n" not in str(exc)
        return
    for c in plan.containers:
        assert os.path.isabs(c.root)
        for a in c.actions:
            assert isinstance(a.bytes, int) and not isinstance(a.bytes, bool) and a.bytes >= 0
            assert isinstance(a.path, str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_snapshots_are_a_snapshot_or_a_clean_error(valid_docs, data):
    doc = _replace_somewhere(valid_docs["snapshot"], data)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "snap.json"
        path.write_text(json.dumps(doc))
        try:
            snap = load_snapshot(path)
        except MlcacheError as exc:
            assert exc.exit_code == 2
            return
    rows = diff(snap, valid_docs["snapshot"])  # a loaded snapshot can always be compared and checked
    assert rows
    try:
        result = check(valid_docs["snapshot"], budgets_from({"max-growth": "1MB", "baseline": "x"}), snap)
    except MlcacheError as exc:  # a baseline that names another app (a fuzzed bundle id) is refused
        assert exc.exit_code == 2 and "another app" in exc.message
        return
    assert all(isinstance(r.passed, bool) for r in result.results)


@settings(max_examples=200, deadline=None)
@given(config=st.dictionaries(st.sampled_from(["max-total", "max-growth", "max-growth-pct", "max-copies",
                                               "fail-on", "baseline", "other"]), json_values, max_size=4))
def test_fuzzed_configs_are_budgets_or_a_clean_error(config):
    try:
        b = budgets_from(config)
    except MlcacheError as exc:
        assert exc.exit_code == 2
        return
    for v in (b.max_total, b.max_growth, b.max_copies):
        assert v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
    assert b.max_growth_pct is None or math.isfinite(b.max_growth_pct)


def test_config_boolean_size_is_an_error_not_a_one_byte_budget(tmp_path):
    root = leak_container(tmp_path)
    (tmp_path / "mlcache.toml").write_text("max-total = true\n")
    result = run("check", root, "--config", tmp_path / "mlcache.toml")
    assert result.exit_code == 2 and "max-total" in result.stderr


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(json_values | st.text(max_size=30), max_size=8))
def test_fuzzed_manifests_are_records_damaged_lines_or_a_clean_error(lines):
    with tempfile.TemporaryDirectory() as d:
        text = "\n".join(v if isinstance(v, str) and v.startswith("{") else json.dumps(v) for v in lines)
        (Path(d) / "manifest.jsonl").write_text(text)
        records, finished, damaged = read_manifest(d)
        assert len(records) + len(finished) + len(damaged) <= len(lines)
        try:
            result = restore_quarantine(Path(d))
        except PlanInvalid:
            return  # one record that fails validation: nothing is moved, exit 2
        assert all(o.status in ("skipped", "failed") for o in result.outcomes)


# -- unreadable parts ---------------------------------------------------------------------------
def deny_access(monkeypatch, path: Path, fault: str) -> None:
    """EACCES from `os.<fault>` (stat, listdir or open) on the file or folder at `path`, found by
    inode: what a folder without read or search permission gives a user (root reads everything)."""
    target = path.stat()
    real = {"stat": os.stat, "listdir": os.listdir, "open": os.open}

    def denied():
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    def fake_stat(p, *a, **k):
        st = real["stat"](p, *a, **k)
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            denied()
        return st

    def fake_listdir(p="."):
        st = os.fstat(p) if isinstance(p, int) else real["stat"](p)
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            denied()
        return real["listdir"](p)

    def fake_open(p, flags, mode=0o777, **k):
        fd = real["open"](p, flags, mode, **k)
        if os.fstat(fd).st_ino == target.st_ino:
            os.close(fd)
            denied()
        return fd

    monkeypatch.setattr(os, fault, {"stat": fake_stat, "listdir": fake_listdir, "open": fake_open}[fault])


@pytest.mark.parametrize("fault", ["stat", "listdir", "open"])
def test_an_unreadable_path_is_a_one_line_error(fault, tmp_path, monkeypatch):
    """The PATH itself cannot be read (no permission on it or a folder above it): exit 2, one line
    naming it; never an internal error (stat) nor "holds no app container" (listdir, open)."""
    root = hostile_corpus._container(tmp_path / "app")
    deny_access(monkeypatch, root, fault)
    result = run("scan", root, "--format", "json")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == f"mlcache: error: cannot read {root}: Permission denied " \
                                    "(check that your user may read it and every folder above it)"


@pytest.mark.parametrize("fault", ["stat", "listdir", "open"])
def test_an_unreadable_simulator_app_is_noted_and_the_others_are_scanned(fault, fx, monkeypatch):
    sim = fx("simulator")
    apps = sim / "Devices/5C3A4B2D-0E1F-4A6B-8C7D-9E0F1A2B3C4D/data/Containers/Data/Application"
    locked, other = sorted(apps.iterdir())[-1], sorted(apps.iterdir())[0]
    deny_access(monkeypatch, locked, fault)
    result = run("scan", sim, "--format", "json", "--no-hash-cache")
    assert result.exit_code == 0, result.stderr
    [c] = json_doc(result)["containers"]
    assert c["root"].endswith(other.name) and c["file_count"] > 0
    assert any("cannot be read" in n and locked.name in n for n in c["notes"]), c["notes"]


def test_an_unreadable_xcappdata_folder_names_it(fx, monkeypatch):
    """Found but not readable: the areas are not observable because they cannot be read (never
    "absent", never clean); not even found (its type unknown): exit 2 naming it."""
    studio = fx("studio")
    deny_access(monkeypatch, studio / "AppData", "listdir")
    result = run("scan", studio, "--format", "json")
    assert result.exit_code == 0, result.stderr
    [c] = json_doc(result)["containers"]
    assert c["file_count"] == 0 and c["not_observable"] == ["tmp"]  # Library/ itself is readable
    assert "tmp/ cannot be read (permission denied): its contents cannot be judged" in c["notes"]
    assert "unreadable folder, not scanned: . (permission denied)" in c["notes"]
    monkeypatch.undo()
    deny_access(monkeypatch, studio / "AppData", "stat")
    result = run("scan", studio, "--format", "json")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"mlcache: error: no app container could be read in {studio}: "
                                            "AppData cannot be read (Permission denied)")


# -- random trees with arbitrary byte names -----------------------------------------------------
names = st.binary(min_size=1, max_size=24).filter(lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))
nodes = st.recursive(st.sampled_from(["file", "fifo", "deep"]),
                     lambda inner: st.dictionaries(names, inner, max_size=4), max_leaves=12)


def _make(path: bytes, node) -> None:
    if node == "file":
        with open(path, "wb") as fh:
            fh.write(b"x" * 17)
    elif node == "fifo":
        os.mkfifo(path)
    elif node == "deep":
        os.mkdir(path)
        fd = os.open(path, os.O_RDONLY)
        for _ in range(300):
            os.mkdir(b"d", dir_fd=fd)
            nfd = os.open(b"d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.close(fd)
    else:
        os.mkdir(path)
        for name, child in node.items():
            _make(path + b"/" + name, child)


@settings(max_examples=25, deadline=None)
@given(tmp_tree=st.dictionaries(names, nodes, max_size=4), caches_tree=st.dictionaries(names, nodes, max_size=3))
def test_random_byte_trees_scan_and_clean_safely(tmp_tree, caches_tree):
    base = Path(tempfile.mkdtemp())
    try:
        root = hostile_corpus._container(base / "app")
        hostile_corpus._leak(root, 2)
        for name, node in tmp_tree.items():
            target = os.fsencode(root / "tmp") + b"/" + name
            if not os.path.lexists(target):
                _make(target, node)
        caches = os.fsencode(root / "Library" / "Caches" / "com.example.hostile" / "com.apple.e5rt.e5bundlecache")
        os.makedirs(caches + b"/23A344", exist_ok=True)
        for name, node in caches_tree.items():
            _make(caches + b"/23A344/" + name, node)
        docs = full_state(root / "Documents")
        with time_limit(120):
            scanned = run("scan", root, "--format", "json", "--no-hash-cache")
            applied = run("clean", root, "--apply", "--yes", "--format", "json", "--no-hash-cache")
        for result in (scanned, applied):
            assert_clean_output(result)
        assert scanned.exit_code == 0 and applied.exit_code in (0, 1)
        json_doc(scanned)
        for c in json_doc(applied)["containers"]:
            for o in c["outcomes"]:
                assert may_act_on(o["path"]) or o["status"] == "skipped"
        assert full_state(root / "Documents") == docs
    finally:
        remove_iteratively(base)
        os.rmdir(base)


# -- small classes ------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [("scan", ""), ("clean", ""), ("snapshot", ""), ("check", "", "--max-total", "1MB"),
                                  ("diff", "", "x"), ("apply", ""), ("restore", "")])
def test_empty_path_is_an_error_never_the_current_folder(args, tmp_path, monkeypatch):
    monkeypatch.chdir(leak_container(tmp_path))  # the current folder is a container: it must not be scanned
    result = run(*args)
    assert result.exit_code == 2 and "is empty" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("option", [("clean", "--plan-out"), ("snapshot", "-o"), ("check", "--junit"),
                                    ("scan", "--output")])
def test_outputs_into_a_missing_folder_are_one_line(option, tmp_path):
    root = leak_container(tmp_path)
    extra = {"check": ("--max-total", "1GB"), "scan": ("--format", "jsonl")}.get(option[0], ())
    result = run(option[0], root, option[1], tmp_path / "missing" / "out", *extra)
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_step_summary_into_a_missing_folder_is_one_line(tmp_path, monkeypatch):
    root = leak_container(tmp_path)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "missing" / "summary.md"))
    result = run("check", root, "--max-total", "1GB")
    assert result.exit_code == 2 and "cannot append" in result.stderr


@pytest.mark.parametrize("path", ["documents/notes.txt", "DOCUMENTS", "library/preferences/x.plist",
                                  "Library/PREFERENCES", "tmp/.COM.APPLE.MOBILE_CONTAINER_MANAGER.METADATA.PLIST"])
def test_protected_paths_compare_as_macos_does(path):
    assert not may_act_on(path)


def test_protected_path_in_nfd_is_protected():
    import unicodedata

    assert not may_act_on(unicodedata.normalize("NFD", "Documents/Café.txt"))
    assert not may_act_on("dOcUmEnTs/x")


def test_hash_cache_notices_an_in_place_edit_that_keeps_mtime(tmp_path):
    root = leak_container(tmp_path)
    audit_path(str(root))
    victim = next((root / "tmp").glob("*.mlmodelc")) / "coremldata.bin"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime kept, as `touch -r` or a restore would
    again = audit_path(str(root))
    assert again.hashes.stats.files_hashed >= 1  # not taken from the cache
    groups = {}
    for ca in again.containers:
        for a in ca.scan.artifacts:
            if a.path.endswith(".mlmodelc"):
                groups.setdefault(ca.fingerprints.content.get(a.path), []).append(a.path)
    assert any(victim.parent.name in p for ps in groups.values() if len(ps) == 1 for p in ps)


def test_non_utf8_entries_quarantine_and_restore_exactly(tmp_path):
    case = hostile_corpus.build(hostile_corpus.non_utf8_names, tmp_path)
    before = full_state(case.target)
    q = tmp_path / "q"
    moved = run("clean", case.target, "--apply", "--yes", "--quarantine", q, "--format", "json")
    assert_clean_output(moved)
    doc = json_doc(moved)
    exact = [o for c in doc["containers"] for o in c["outcomes"] if "path_b64" in o]
    assert exact and all(o["status"] == "quarantined" for o in exact)
    assert b"bad\xff\xfe-copy.mlmodelc" not in os.listdir(os.fsencode(case.target / "tmp")) or \
           b"bad\xff\xfe.mlmodelc" not in os.listdir(os.fsencode(case.target / "tmp"))
    restored = run("restore", q)
    assert_clean_output(restored)
    assert restored.exit_code == 0
    assert full_state(case.target) == before


@pytest.mark.parametrize("fault", ["stat", "listdir", "open"])
def test_any_one_unreadable_place_is_reported_never_an_internal_error(fault, fx, monkeypatch):
    """Each level of a real layout (three folders of each, and a file) made unreadable in turn: the scan still
    runs (exit 0 or 1, the place named in a note), or, for the PATH itself, stops with one line (exit 2)."""
    root = fx("recompile")
    places = [root]
    for folder, dirs, files in os.walk(root):  # files are never listed, and a plain one never opened
        dirs[:] = sorted(dirs)[:3]  # every level of the layout, not every one of its 24 alike entries
        places += [Path(folder) / d for d in dirs] + ([Path(folder) / f for f in sorted(files)[:1]]
                                                      if fault == "stat" else [])
    for place in places:
        with monkeypatch.context() as m:
            deny_access(m, place, fault)
            result = run("scan", root, "--format", "json", "--no-hash-cache")
        assert_clean_output(result)
        if place == root:
            assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
            continue
        assert result.exit_code in (0, 1), (place, result.stderr)
        notes = [n for c in json_doc(result)["containers"] for n in c["notes"]]
        name = place.relative_to(root).as_posix()
        assert any(name in n or "cannot be read" in n for n in notes), (place, fault, notes)
