"""Cleaning: the safety rules of apply.py, each by name, and the flows people use."""

import json
import os
import shutil
import sys
from pathlib import Path

import build_fixtures as bf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_corpus
from conftest import holding_open, run, scan_json, tree_state
from mlcache_audit import apply as apply_mod
from mlcache_audit.apply import apply_plan, restore_quarantine
from mlcache_audit.audit import audit_path
from mlcache_audit.errors import PlanInvalid
from mlcache_audit.plan import Plan, make_plan


def plan_for(path, bundle_id=None, **kw) -> Plan:
    return make_plan(audit_path(str(path), bundle_id=bundle_id, hash_cache=False), **kw)


def forged(plan: Plan, **changes) -> Plan:
    d = plan.to_dict()
    action = dict(d["containers"][0]["actions"][0])
    action.update(changes)
    d["containers"][0]["actions"] = [action]
    return Plan.from_dict(d)


# -- the flows ----------------------------------------------------------------------------------
def test_dry_run_changes_nothing(fx):
    root = fx("recompile")
    before = tree_state(root)
    result = run("clean", root)
    assert result.exit_code == 0
    assert "Would remove tmp/" in result.stdout and "Would free 23.6 MB" in result.stdout
    assert "Nothing was changed" in result.stdout
    assert tree_state(root) == before


def test_recompile_fixture_is_cleaned_to_one_copy(fx):
    root = fx("recompile")
    scanned = scan_json(root)["containers"][0]
    keep = {p: s for p, s in tree_state(root).items()}
    result = run("clean", root, "--apply", "--yes", "--format", "json")
    assert result.exit_code == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["complete"] and outcome["freed_bytes"] == scanned["reclaimable_bytes"]
    after = tree_state(root)
    removed = {p for p in keep if p not in after}
    planned = {a for f in scanned["findings"] for a in f["reclaimable_paths"]}
    assert all(any(p == a or p.startswith(a + "/") for a in planned) for p in removed)
    for p, state in after.items():  # nothing kept was modified (folders' mtimes aside)
        if not os.path.isdir(root / p):
            assert keep[p] == state, p
    assert len(list((root / "tmp").glob("*.mlmodelc"))) == 1
    cache = root / "Library/Caches/com.example.recompile/com.apple.e5rt.e5bundlecache/23A344"
    assert len(list(cache.iterdir())) == 1
    assert (root / "Documents/notes.txt").exists()
    again = run("clean", root)
    assert "Nothing to remove" in again.stdout and "Would free 0 B" in again.stdout


def test_plan_out_then_apply_is_the_review_flow(fx, tmp_path):
    root = fx("studio")
    plan_file = tmp_path / "plan.json"
    result = run("clean", root, "--plan-out", plan_file)
    assert result.exit_code == 0 and plan_file.exists()
    assert "Plan written to" in result.stderr
    applied = run("apply", plan_file, "--yes")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert "Freed" in applied.stdout
    assert not any((root / "AppData/Library/Caches/com.example.studio/com.apple.e5rt.e5bundlecache").glob("22G90/*"))


def test_plan_contract_keys_are_pinned(fx):
    doc = json.loads(run("clean", fx("recompile"), "--format", "json").stdout)
    assert doc["schema"] == "mlcache.plan/2"
    c = doc["containers"][0]
    assert {"root", "bundle_id", "form", "actions", "reclaimable_bytes", "kept_back", "read_only"} <= set(c)
    a = c["actions"][0]
    assert {"path", "bytes", "rule", "kind", "seen", "content"} <= set(a)
    assert set(a["seen"]) == {"type", "size", "files", "mtime_ns", "inode", "fingerprint"}
    assert c["reclaimable_bytes"] == sum(x["bytes"] for x in c["actions"])


def test_plan_round_trips(fx):
    plan = plan_for(fx("studio"), include_persistent=True)
    assert Plan.from_dict(json.loads(plan.to_json())) == plan


def test_only_keep_and_include_persistent_select_rules(fx):
    root = fx("studio")
    default = {a.rule for a in plan_for(root).containers[0].actions}
    assert "duplicate-persistent-model" not in default and "stale-os-build" in default
    wide = {a.rule for a in plan_for(root, include_persistent=True).containers[0].actions}
    assert {"duplicate-persistent-model", "old-model-version"} <= wide
    only = {a.rule for a in plan_for(root, only={"stale-os-build"}).containers[0].actions}
    assert only == {"stale-os-build"}
    kept = {a.rule for a in plan_for(root, keep={"stale-os-build"}).containers[0].actions}
    assert "stale-os-build" not in kept and kept


def test_nested_targets_fold_into_the_outer_one(fx):
    root = fx("studio")
    cache = root / "AppData/Library/Caches/com.example.studio/com.apple.e5rt.e5bundlecache"
    bf.specialization(cache, "22G90", "old-with-partial", bf.T0, interrupted=True)
    plan = plan_for(root)
    paths = [a.path for a in plan.containers[0].actions]
    assert not any(p.startswith(q + "/") for p in paths for q in paths if p != q)
    outcome = apply_plan(plan)
    assert outcome.complete


def test_quarantine_then_restore_puts_everything_back(fx, tmp_path):
    root = fx("recompile")
    before = tree_state(root)
    q = tmp_path / "quarantine"
    result = run("clean", root, "--apply", "--yes", "--quarantine", q)
    assert result.exit_code == 0 and "Moved aside" in result.stdout
    assert len(list((root / "tmp").glob("*.mlmodelc"))) == 1
    moved = len((q / "manifest.jsonl").read_text().splitlines())
    assert moved == 23 * 3  # bundles, their spec files, their specializations
    restored = run("restore", q)
    assert restored.exit_code == 0 and f"Restored {moved} of {moved} entries" in restored.stdout
    after = tree_state(root)
    assert {p: s for p, s in after.items() if not os.path.isdir(root / p)} == \
           {p: s for p, s in before.items() if not os.path.isdir(root / p)}
    assert run("restore", q).stdout.count("Restored 0 of 0") == 1


def test_restore_never_overwrites(fx, tmp_path):
    root = fx("recompile")
    q = tmp_path / "q"
    apply_plan(plan_for(root, only={"repeated-compile"}), quarantine=q)
    victim = json.loads((q / "manifest.jsonl").read_text().splitlines()[0])["path"]
    (root / victim).write_bytes(b"new file the app wrote")
    result = restore_quarantine(q)
    skipped = [o for o in result.outcomes if o.status == "skipped"]
    assert [o.path for o in skipped] == [victim] and "already" in skipped[0].reason
    assert (root / victim).read_bytes() == b"new file the app wrote"


def test_quarantine_inside_the_container_is_refused(fx):
    root = fx("recompile")
    with pytest.raises(PlanInvalid):
        apply_plan(plan_for(root), quarantine=root / "tmp" / "q")


def test_apply_asks_on_a_terminal_and_defaults_to_no(fx, monkeypatch):
    import mlcache_audit.terminal as terminal_mod

    root = fx("recompile")
    before = tree_state(root)
    monkeypatch.setattr(terminal_mod, "stdin_is_terminal", lambda: True)
    result = run("clean", root, "--apply", input="\n")
    assert result.exit_code == 0 and "[y/N]" in result.stderr and "Nothing was changed" in result.stderr
    # What would go is listed before the question, collapsed per rule as the dry run collapses it.
    assert "Delete 69 entries (23.6 MB):" in result.stderr and "repeated-compile: 46 entries" in result.stderr
    assert "redundant-specialization: 23 entries" in result.stderr and "and 20 more" in result.stderr
    assert tree_state(root) == before
    result = run("clean", root, "--apply", input="y\n")
    assert result.exit_code == 0 and "Freed 23.6 MB" in result.stdout


def test_apply_refuses_without_a_terminal_unless_yes(fx):
    root = fx("recompile")
    before = tree_state(root)
    result = run("clean", root, "--apply")
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert tree_state(root) == before


# -- the safety rules, by name ------------------------------------------------------------------
def test_apply_never_follows_symlinks(fx, tmp_path):
    root = fx("recompile")
    plan = plan_for(root, only={"redundant-specialization"})
    outside = tmp_path / "outside"
    build_dir = root / "Library/Caches/com.example.recompile/com.apple.e5rt.e5bundlecache/23A344"
    shutil.copytree(build_dir, outside)  # same names, same sizes, same times
    shutil.rmtree(build_dir)
    build_dir.symlink_to(outside)
    outside_before = tree_state(outside)
    outcome = apply_plan(plan)
    assert all(o.status == "skipped" and "symlink" in o.reason for o in outcome.containers[0].outcomes)
    assert tree_state(outside) == outside_before


def test_apply_removes_links_inside_targets_not_their_targets(fx, tmp_path):
    root = fx("recompile")
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    bundle = sorted((root / "tmp").glob("*.mlmodelc"))[0]
    (bundle / "link").symlink_to(precious)
    outcome = apply_plan(plan_for(root))
    assert outcome.complete and not bundle.exists()
    assert precious.read_text() == "keep me"


def test_apply_never_acts_outside_root(fx, tmp_path):
    root = fx("recompile")
    victim = root.parent / "victim.txt"
    victim.write_text("outside")
    for bad in ("../victim.txt", "/etc/hostname", "tmp/../../victim.txt", ""):
        outcome = apply_plan(forged(plan_for(root), path=bad))
        (o,) = outcome.containers[0].outcomes
        assert o.status == "skipped" and "unsafe" in o.reason
    assert victim.read_text() == "outside"


def test_apply_never_touches_protected_paths(fx):
    root = fx("recompile")
    for protected in ("Documents/notes.txt", "Documents", "Library/Preferences/com.example.recompile.plist",
                      ".com.apple.mobile_container_manager.metadata.plist", "Library"):
        outcome = apply_plan(forged(plan_for(root), path=protected))
        assert outcome.containers[0].outcomes[0].status == "skipped"
    assert (root / "Documents/notes.txt").exists()
    assert (root / "Library/Preferences/com.example.recompile.plist").exists()


def test_apply_skips_entries_changed_since_plan(fx):
    root = fx("recompile")
    plan = plan_for(root)
    bundles = sorted((root / "tmp").glob("*.mlmodelc"))
    grown = next(b for b in bundles if any(a.path == f"tmp/{b.name}" for a in plan.containers[0].actions))
    (grown / "new-file").write_bytes(b"written after the plan")
    touched = next(b for b in bundles if b != grown and any(a.path == f"tmp/{b.name}" for a in plan.containers[0].actions))
    st = (touched / "metadata.json").stat()
    os.utime(touched / "metadata.json", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    outcome = apply_plan(plan)
    by_path = {o.path: o for o in outcome.containers[0].outcomes}
    assert by_path[f"tmp/{grown.name}"].status == "skipped" and "changed since plan" in by_path[f"tmp/{grown.name}"].reason
    assert by_path[f"tmp/{touched.name}"].status == "skipped"
    assert grown.exists() and touched.exists() and not outcome.complete
    result = run("clean", root)  # and the CLI says so with exit 1 when applying a stale plan
    assert result.exit_code == 0


def test_apply_refuses_plan_for_another_container(fx, tmp_path):
    root = fx("recompile")
    plan = plan_for(root)
    meta = root / ".com.apple.mobile_container_manager.metadata.plist"
    import plistlib

    meta.write_bytes(plistlib.dumps({"MCMMetadataIdentifier": "com.example.other"}, fmt=plistlib.FMT_BINARY))
    with pytest.raises(PlanInvalid):
        apply_plan(plan)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "mlcache.plan/999", "containers": []}))
    result = run("apply", bad, "--yes")
    assert result.exit_code == 2 and "not an mlcache plan of a known format" in result.stderr
    bad.write_text("not json")
    assert run("apply", bad, "--yes").exit_code == 2


def test_apply_refuses_live_container_in_use(fx):
    top = fx("simulator")
    plan = plan_for(top, bundle_id="com.example.simleak")
    app_root = Path(plan.containers[0].root)
    before = tree_state(app_root)
    with holding_open(app_root / "Documents" / "notes.txt") as app:  # another process: the app
        outcome = apply_plan(plan)  # skipped, naming the process; the run is not complete
        reasons = {o.reason for c in outcome.containers for o in c.outcomes}
        assert {o.status for c in outcome.containers for o in c.outcomes} == {"skipped"}
        assert len(reasons) == 1 and f"pid {app.pid}" in reasons.pop() and not outcome.complete
        result = run("clean", top, "--bundle-id", "com.example.simleak", "--apply", "--yes")
        assert result.exit_code == 1 and "in use by" in result.stdout
    assert tree_state(app_root) == before
    assert apply_plan(plan).complete


def test_apply_refuses_backups_and_archives(built):
    for key in ("backup", "healthy_zip", "studio_tgz"):
        result = run("clean", built[key], "--apply", "--yes")
        assert result.exit_code == 2 and "read-only evidence" in result.stderr, key


def test_apply_journal_records_interrupted_run(fx, monkeypatch):
    root = fx("recompile")
    plan = plan_for(root)
    calls = {"n": 0}
    real = apply_mod._delete_aside

    def dies_on_third(parent_fd, trash, is_dir):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C after the rename, before the removal: the worst moment
        return real(parent_fd, trash, is_dir)

    monkeypatch.setattr(apply_mod, "_delete_aside", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        apply_plan(plan)
    journals = list((Path(os.environ["MLCACHE_STATE_DIR"]) / "journals").glob("*.jsonl"))
    assert len(journals) == 1
    events = [json.loads(line)["event"] for line in journals[0].read_text().splitlines()]
    assert events.count("done") == 2 and events[-1] == "renamed"
    aside = list(root.rglob(".mlcache-removing-*"))
    assert len(aside) == 1  # renamed aside, recorded, not lost
    monkeypatch.setattr(apply_mod, "_delete_aside", real)
    result = run("clean", root, "--apply", "--yes")
    assert result.exit_code == 0
    assert "removed by the interrupted run" in result.stdout
    assert "removal finished now" in result.stdout
    assert not list(root.rglob(".mlcache-removing-*")) and not journals[0].exists()


def test_a_group_of_begins_is_synced_once_and_a_crash_before_any_rename_recovers(fx, monkeypatch):
    """BEGINs are written a group at a time and synced once (Journal.write's recovery argument):
    one fsync per group plus the start, not one per entry; a crash after a group's BEGINs but
    before any of its entries is touched leaves every entry at its own name, reported as not
    started, and the next run removes them all."""
    root = fx("recompile")
    plan = plan_for(root)
    n = len(plan.containers[0].actions)
    assert n > 2
    syncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(apply_mod, "GROUP", 2)
    monkeypatch.setattr(os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd))[1])
    real_fresh = apply_mod.fresh_state

    def dies_on_first(*args):
        raise KeyboardInterrupt  # after the first group's BEGINs are on disk, before any re-check

    monkeypatch.setattr(apply_mod, "fresh_state", dies_on_first)
    with pytest.raises(KeyboardInterrupt):
        apply_plan(plan)
    journal = next((Path(os.environ["MLCACHE_STATE_DIR"]) / "journals").glob("*.jsonl"))
    events = [json.loads(line)["event"] for line in journal.read_text().splitlines()]
    assert events.count("begin") == 2 and len(syncs) == 2  # the start, then the first group's BEGINs
    assert not list(root.rglob(".mlcache-removing-*"))
    monkeypatch.setattr(apply_mod, "fresh_state", real_fresh)
    syncs.clear()
    monkeypatch.setattr(apply_mod, "GROUP", 64)
    result = run("clean", root, "--apply", "--yes", "--format", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 0 and all(o["status"] == "removed" for c in doc["containers"] for o in c["outcomes"])
    notes = [r for c in doc["containers"] for r in c["recovered"]]
    assert sum("had not started removing it; it is still there" in r for r in notes) == 2
    assert len(syncs) <= 2 + (n + 63) // 64  # start + one per group (+ the recovery run's own journal)


def test_cli_interrupt_exits_130(fx, monkeypatch):
    root = fx("recompile")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(apply_mod, "_delete_aside", interrupted)
    result = run("clean", root, "--apply", "--yes")
    assert result.exit_code == 130 and "interrupted" in result.stderr


def test_apply_reports_each_outcome_truthfully(fx, monkeypatch):
    root = fx("recompile")
    plan = plan_for(root)
    first = plan.containers[0].actions[0].path
    shutil.rmtree(root / first) if (root / first).is_dir() else (root / first).unlink()
    real = apply_mod._delete_aside
    failing = {"done": False}

    def fails_once(parent_fd, trash, is_dir):
        if not failing["done"]:
            failing["done"] = True
            return "Permission denied"
        return real(parent_fd, trash, is_dir)

    monkeypatch.setattr(apply_mod, "_delete_aside", fails_once)
    outcome = apply_plan(plan)
    statuses = [o.status for o in outcome.containers[0].outcomes]
    assert statuses.count("skipped") == 1 and statuses.count("failed") == 1
    assert statuses.count("removed") == len(statuses) - 2
    gone = [o for o in outcome.containers[0].outcomes if o.status == "skipped"][0]
    assert gone.path == first and "gone since" in gone.reason and gone.bytes == 0
    failed = [o for o in outcome.containers[0].outcomes if o.status == "failed"][0]
    assert "Permission denied" in failed.reason and failed.bytes == 0
    assert outcome.freed_bytes == sum(o.bytes for o in outcome.containers[0].outcomes if o.status == "removed")
    assert not outcome.complete


def test_failed_apply_exits_1(fx, tmp_path):
    root = fx("recompile")
    plan_file = tmp_path / "plan.json"
    run("clean", root, "--plan-out", plan_file)
    victim = sorted((root / "tmp").glob("*.mlmodelc"))[0]
    (victim / "extra").write_text("x")
    result = run("apply", plan_file, "--yes")
    assert result.exit_code == 1 and "changed since plan" in result.stdout


# -- property: nothing outside the plan, nothing outside the root -------------------------------
names = st.sampled_from(["a", "b", "Model.mlmodelc", "model.mlmodelc", "x y", "é", "line\nbreak", "..x", ".hidden"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.lists(st.tuples(st.sampled_from(["tmp", "Library/Application Support", "Documents",
                                                 "tmp/" + bf.gus(1, 1) + ".mlmodelc"]), names,
                                st.sampled_from(["file", "symlink-out", "symlink-in", "hardlink"])),
                      max_size=8),
       copies=st.integers(min_value=2, max_value=4))
def test_apply_never_removes_anything_outside_the_plan(tmp_path_factory, extra, copies):
    base = tmp_path_factory.mktemp("prop")
    outside = base / "outside"
    outside.mkdir()
    (outside / "target.txt").write_text("outside")
    root = base / "c"
    bf.container_skeleton(root, "com.example.prop", bf.T0)
    for i in range(copies):
        bf.copy_bundle(bf.PARKINSON, root / "tmp" / f"{bf.gus(i, 100 + i)}.mlmodelc", bf.T0 + i)
    for folder, name, kind in extra:
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        p = d / name
        if os.path.lexists(p):
            continue
        if kind == "file":
            p.write_text("data")
        elif kind == "symlink-out":
            p.symlink_to(outside / "target.txt")
        elif kind == "symlink-in":
            p.symlink_to(root / "Documents" / "notes.txt")
        else:
            os.link(root / "Documents" / "notes.txt", p)
    plan = plan_for(root)
    planned = [a.path for a in plan.containers[0].actions]
    before = tree_state(root)
    apply_plan(plan, state_dir=base / "state")
    after = tree_state(root)
    for p in set(before) - set(after):
        assert any(p == q or p.startswith(q + "/") for q in planned), p
    assert (outside / "target.txt").read_text() == "outside"
    assert (root / "Documents" / "notes.txt").read_text().startswith("A user's own notes")


KILLER = r"""
import os, signal, sys
from pathlib import Path
from mlcache_audit import apply as apply_mod
from mlcache_audit.audit import audit_path
from mlcache_audit.plan import make_plan

plan = make_plan(audit_path(sys.argv[1], hash_cache=False))
real = apply_mod._delete_aside
calls = {"n": 0}

def killed_on_fifth(parent_fd, trash, is_dir):
    calls["n"] += 1
    if calls["n"] == 5:
        os.kill(os.getpid(), signal.SIGKILL)  # no finally, no flush: as a crash or a power cut
    return real(parent_fd, trash, is_dir)

apply_mod._delete_aside = killed_on_fifth
apply_mod.apply_plan(plan)
"""


def test_apply_killed_half_way_leaves_a_journal_the_next_run_finishes(fx, tmp_path):
    import signal
    import subprocess

    root = fx("recompile")
    done = subprocess.run([sys.executable, "-c", KILLER, str(root)], capture_output=True, text=True,
                          env={**os.environ, "MLCACHE_STATE_DIR": str(tmp_path / "state")})
    assert done.returncode == -signal.SIGKILL
    (journal,) = (tmp_path / "state" / "journals").glob("*.jsonl")
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [e["event"] for e in events].count("done") == 4
    assert events[-1]["event"] == "renamed"  # the fifth entry was moved aside, then the process died
    assert len(list(root.rglob(".mlcache-removing-*"))) == 1
    result = run("clean", root, "--apply", "--yes")
    assert result.exit_code == 0
    assert result.stdout.count("removed by the interrupted run") == 4
    assert "removal finished now" in result.stdout
    assert not list(root.rglob(".mlcache-removing-*"))
    assert "Nothing to remove" in run("clean", root).stdout


def test_apply_and_restore_contract_keys_are_pinned(fx, tmp_path):
    root = fx("recompile")
    dry = json.loads(run("clean", root, "--only", "repeated-compile", "--apply", "--yes", "--format", "json",
                         "--quarantine", tmp_path / "q").stdout)
    assert dry["schema"] == "mlcache.apply/2"
    assert set(dry) == {"schema", "dry_run", "quarantine", "freed_bytes", "freed_disk_bytes", "would_free_bytes", "complete", "containers"}
    c = dry["containers"][0]
    assert set(c) == {"root", "bundle_id", "client", "container_key", "recovered", "outcomes"}
    assert set(c["outcomes"][0]) == {"path", "bytes", "disk_bytes", "rule", "status", "reason"}
    restored = json.loads(run("restore", tmp_path / "q", "--format", "json").stdout)
    assert restored["schema"] == "mlcache.restore/1" and set(restored) == {"schema", "complete", "outcomes"}
    assert restored["complete"] and restored["outcomes"][0]["status"] == "restored"


def test_clean_apply_detects_the_container_once(fx, monkeypatch):
    """clean --apply hands apply the containers it just planned; only `mlcache apply` of a saved plan,
    which is older, detects them again."""
    import mlcache_audit.preflight as preflight_mod
    import mlcache_audit.sources.detect as detect_mod

    calls = []
    real = detect_mod.open_containers

    def counted(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    for mod in (detect_mod, preflight_mod):
        monkeypatch.setattr(mod, "open_containers", counted)
    import mlcache_audit.audit as audit_mod
    monkeypatch.setattr(audit_mod, "open_containers", counted)
    root = fx("recompile")
    assert run("clean", root, "--apply", "--yes").exit_code == 0
    assert len(calls) == 1, calls


def test_siblings_share_their_parents_handle(fx, monkeypatch):
    """Each folder on the way is opened once per run of siblings, from the checked root handle, not
    once per action from `/` (69 actions: 797 opens before, 302 with the re-checks' own walks)."""
    from mlcache_audit import fsio

    root = fx("recompile")
    plan = plan_for(root)
    parents = {a.path.rsplit("/", 1)[0] for c in plan.containers for a in c.actions}
    calls = []
    real = fsio.open_chain_at
    monkeypatch.setattr(fsio, "open_chain_at", lambda fd, parts, **k: calls.append(tuple(parts)) or real(fd, parts, **k))
    outcome = apply_plan(plan)
    assert outcome.complete
    below = [c for c in calls if "/".join(c) in parents]  # not the roots, which are opened from /
    assert len(below) == len(parents) < sum(len(c.actions) for c in plan.containers)


def test_the_prompt_on_a_real_terminal_lists_what_goes_and_shows_y_n(fx):
    """On a pty (a person's terminal): the list, then `[y/N]`, with no spinner drawn over it; no
    answer but y changes anything."""
    import pty
    import select
    import subprocess
    import sys
    import time

    root = fx("recompile")
    before = tree_state(root)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mlcache_audit", "clean", str(root), "--apply"],
                            stdin=follower, stdout=follower, stderr=follower, close_fds=True,
                            env={**os.environ, "COLUMNS": "200", "TERM": "xterm"})
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                seen += os.read(leader, 65536)
            except OSError:
                break
    os.write(leader, b"n\n")
    try:
        proc.wait(timeout=30)
    finally:
        while True:  # drain what is left
            ready, _, _ = select.select([leader], [], [], 0.2)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert "[y/N]" in text and "Delete 69 entries (23.6 MB):" in text and "repeated-compile: 46 entries" in text
    prompt_line = text[text.index("Go ahead?"):].splitlines()[0]
    assert "Scanning" not in prompt_line  # the spinner is stopped before asking
    assert proc.returncode == 0 and "Nothing was changed" in text
    assert tree_state(root) == before


_kinds = st.recursive(st.sampled_from(["file", "linked", "symlink", "fifo", "empty"]),
                      lambda inner: st.dictionaries(st.sampled_from(["a", "b", "B", "a.b", "z\u00e9", "\u00e9"]), inner,
                                                    min_size=1, max_size=4), max_leaves=14)


def _grow(path: Path, node, spare: Path) -> None:
    if node == "file":
        path.write_bytes(b"x" * (len(path.name) * 37))
    elif node == "linked":  # a second link to a file outside: frees nothing
        spare.write_bytes(b"h" * 500) if not spare.exists() else None
        os.link(spare, path)
    elif node == "symlink":
        path.symlink_to("../elsewhere")
    elif node == "fifo":
        os.mkfifo(path)
    elif node == "empty":
        path.mkdir()
    else:
        path.mkdir()
        for name, child in node.items():
            _grow(path / name, child, spare)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.dictionaries(st.sampled_from(["a", "b", "c.bin", "d"]), _kinds, min_size=1, max_size=4))
def test_the_recheck_folds_entries_as_they_come_as_the_sorted_records_did(tree, tmp_path_factory):
    """apply's re-check folds each entry into the state as the walk yields it (no record kept, no
    sort): the same state and freed bytes as records of every entry, sorted in tree order, give;
    and the same state the scan's walk recorded for the plan."""
    from mlcache_audit import fsio
    from mlcache_audit.scan.walk import walk_folder
    from mlcache_audit.sources import open_containers
    from mlcache_audit.sources.folder import entry_from_stat
    from mlcache_audit.state import fresh_state, target_state

    root = hostile_corpus._container(tmp_path_factory.mktemp("recheck") / "app", "com.example.re")
    entry = root / "Library" / "Caches" / "com.example.re" / "com.apple.e5rt.e5bundlecache" / "23A344" / ("AB" * 32)
    entry.mkdir(parents=True)
    for name, node in tree.items():
        _grow(entry / name, node, root / "spare.bin")
    parent_fd = os.open(entry.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st_top = os.stat(entry.name, dir_fd=parent_fd, follow_symlinks=False)
        got = fresh_state(parent_fd, entry.name, st_top)
        fd = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent_fd)
        try:
            below = [entry_from_stat(rel, est, tgt) for rel, est, tgt in fsio.walk_at(fd, lambda *a: None)]
        finally:
            os.close(fd)
    finally:
        os.close(parent_fd)
    own = [e for e in below if e.type == "file" and e.nlink <= 1]
    want = (target_state(entry_from_stat(entry.name, st_top), below), sum(e.size for e in own),
            sum(e.disk or 0 for e in own))
    assert got == want
    # The scan's walk (with plan states) recorded the very state the re-check reads.
    (c,) = [c for c in open_containers(str(root)) if c.store.kind == "folder"]
    part = walk_folder(c.store, c.root, [], plan_state=True)
    (a,) = [a for a in part.artifacts if a.path.endswith("AB" * 32)]
    assert a.state.seen(a.top) == got[0]
