"""The developer's Mac: every ML cache found without a path (on a fake home tree), and `watch` with a
real child process under a unique name that writes into a container on each launch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import build_fixtures as bf
import pytest

from conftest import holding_open, run, tree_state
from mlcache_audit.sources.discover import Places, discover


def home_scan(home: Path, *extra: str) -> dict:
    result = run("scan", "--home", home, "--format", "json", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def by_client(doc: dict) -> dict[str, dict]:
    return {c["client"]: c for c in doc["containers"]}


def test_every_client_is_discovered_with_its_form(fx):
    home = fx("home")
    clients = by_client(home_scan(home, "--tmpdir", home / "tmp"))
    assert {name: c["form"] for name, c in clients.items()} == {
        "com.example.leaky": "simulator", "com.example.calm": "simulator", "com.example.chat": "simulator",
        "com.example.macapp": "macos-container", "group.com.example.shared": "group-container",
        "python": "process-cache", "com.apple.python3": "process-cache", "shared": "process-cache",
        "MPSGraph (temp folder)": "process-cache"}
    assert "com.apple.Safari" not in clients  # a cache with no ML in it is no client
    assert clients["python"]["bundle_id"] is None and clients["com.example.leaky"]["bundle_id"] == "com.example.leaky"
    assert clients["com.example.leaky"]["info"]["device"] == "iPhone 16 Pro"
    assert clients["com.example.chat"]["info"]["runtime"] == "iOS-27-0"
    assert clients["python"]["root"].endswith("Library/Caches/python")


@pytest.mark.parametrize("place, fault", [("Library/Containers/com.example.macapp", "stat"),
                                          ("Library/Containers/com.example.macapp", "listdir"),
                                          ("Library/Group Containers", "listdir"),
                                          ("Library/Caches/com.apple.python3", "stat"),
                                          ("Library/Caches", "stat"),
                                          ("Library/Developer/CoreSimulator/Devices", "open")])
def test_a_place_the_terminal_may_not_read_is_named_and_the_rest_discovered(place, fault, fx, monkeypatch):
    """macOS's privacy controls keep some containers from a terminal without Full Disk Access
    (EPERM); others lack permission (EACCES). Discovery names each place it could not read, leaves
    it out and finds the rest; never an internal error."""
    from test_hostile_faults import deny_access

    home = fx("home")
    everyone = set(by_client(home_scan(home)))
    deny_access(monkeypatch, home / place, fault)
    doc = home_scan(home)
    assert {u["path"] for u in doc["discovery"]["unreadable"]} == {str(home / place)}, doc["discovery"]
    found = set(by_client(doc))
    assert found and found < everyone  # what is in that place is left out, the rest is found
    text = run("scan", "--home", home).stdout
    assert f"Not searched, cannot be read: {home / place} (Permission denied)" in text


def test_a_place_macos_privacy_controls_refuse_says_how_to_include_it(fx, monkeypatch):
    import errno

    home = fx("home")
    place = home / "Library" / "Containers" / "com.example.macapp"
    real_stat = os.stat
    target = place.stat()

    def tcc(p, *a, **k):  # what macOS answers a terminal without Full Disk Access
        st = real_stat(p, *a, **k)
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return st

    monkeypatch.setattr(os, "stat", tcc)
    text = run("scan", "--home", home).stdout
    assert f"Not searched, cannot be read: {place} (Operation not permitted; to include it, give the " \
           "terminal Full Disk Access)" in " ".join(text.split())


def test_per_process_cache_of_two_builds_and_core_ai(fx):
    python = by_client(home_scan(fx("home")))["python"]
    stale = next(f for f in python["findings"] if f["rule"] == "stale-os-build")
    assert stale["evidence"]["old_builds"] == ["23F79"]
    kinds = {p.split("/")[0] for p in stale["reclaimable_paths"]}
    assert kinds == {"python", "coreai-cache"}  # the E5RT cache and Core AI's, both of the client
    assert all(p.startswith(("python/", "coreai-cache/23F79/python/")) for p in stale["paths"])


def test_places_outside_the_home_are_left_out_unless_named(fx):
    home = fx("home")
    assert "MPSGraph (temp folder)" not in by_client(home_scan(home))
    doc = home_scan(home, "--tmpdir", home / "tmp")
    mps = by_client(doc)["MPSGraph (temp folder)"]
    assert [f["rule"] for f in mps["findings"]] == ["mpsgraph-scratch"] and mps["reclaimable_bytes"] > 0
    assert "system" not in doc or doc["system"] == []


def test_mlcache_home_works_like_home(fx, monkeypatch):
    home = fx("home")
    monkeypatch.setenv("MLCACHE_HOME", str(home))
    result = run("scan", "--format", "json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)["containers"]) == 8


@pytest.mark.skipif(sys.platform == "darwin", reason="on a Mac the user's own home is discovered")
def test_without_a_home_on_linux_there_is_nothing_to_discover(monkeypatch):
    monkeypatch.delenv("MLCACHE_HOME", raising=False)
    result = run("scan")
    assert result.exit_code == 2 and "nothing to discover" in result.stderr and result.stdout == ""


def test_system_ane_cache_is_reported_never_cleaned(fx, tmp_path):
    ane = tmp_path / "aned" / "24A335" / "ModelAssetsCache"
    bf.write(ane / "model.hwx", b"x" * 1234, bf.T0)
    home = fx("home")
    found = discover(Places(home, None, tmp_path / "aned"))
    (place,) = found.system
    assert place["bytes"] == 1234 and place["observable"] and "never cleaned" in place["reason"]
    missing = discover(Places(home, None, tmp_path / "nothing")).system[0]
    assert missing["bytes"] is None and not missing["observable"]


def test_a_system_ane_cache_that_cannot_be_read_gets_a_reason(fx, tmp_path, monkeypatch):
    from test_hostile_faults import deny_access

    (tmp_path / "aned").mkdir()
    deny_access(monkeypatch, tmp_path / "aned", "stat")
    (place,) = discover(Places(fx("home"), None, tmp_path / "aned")).system
    assert place["bytes"] is None and not place["observable"]
    assert place["reason"].startswith("cannot be read (Permission denied)")


def test_clients_table_lists_every_client_largest_first(fx):
    out = run("scan", "--home", fx("home")).stdout
    table = out[out.index("Clients (largest first)"):out.index("\n\n")]
    rows = [line for line in table.splitlines() if "│" in line]
    assert rows[0].split("│")[0].strip().startswith("com.example.leaky") and len(rows) == 8
    assert "--bundle-id com.example.leaky" in out  # the next command names the client


def test_clean_without_a_path_is_a_dry_run_and_needs_all_clients_to_act(fx):
    home = fx("home")
    before = tree_state(home)
    assert run("clean", "--home", home).exit_code == 0
    refused = run("clean", "--home", home, "--apply", "--yes")
    assert refused.exit_code == 2 and "--all-clients" in refused.stderr
    assert tree_state(home) == before


def test_clean_all_clients_skips_a_running_client_and_touches_nothing_else(fx, monkeypatch):
    """A python process runs (a child of the test, not mlcache itself): the python client is in use,
    so it is skipped and named, the run exits 1, and every other client is cleaned."""
    import psutil

    home = fx("home")
    docs = {k: v for k, v in tree_state(home).items() if "/Documents" in k or "Safari" in k or "Preferences" in k}
    with holding_open(home / "Library" / "Caches" / "com.apple.Safari" / "Cache.db") as child:
        if psutil.Process(child.pid).name() not in ("python", "python3", "Python"):
            pytest.skip("a Python child's process is not named python here")
        result = run("clean", "--home", home, "--all-clients", "--apply", "--yes", "--format", "json")
    assert result.exit_code == 1
    outcome = json.loads(result.stdout)
    python = [o for c in outcome["containers"] for o in c["outcomes"] if o["path"].startswith(("python/", "coreai-cache"))]
    assert python and all(o["status"] == "skipped" and "in use by python" in o["reason"] for o in python)
    leaky = [o for c in outcome["containers"] if c["bundle_id"] == "com.example.leaky" for o in c["outcomes"]]
    assert leaky and all(o["status"] == "removed" for o in leaky)
    after = tree_state(home)
    assert {k: v for k, v in after.items() if k in docs} == docs
    assert (home / "Library" / "Caches" / "python" / "com.apple.e5rt.e5bundlecache" / "23F79").is_dir()


def test_apply_keeps_to_a_clients_scope(fx):
    """A per-process client shares ~/Library/Caches; a plan naming another client's folder is refused."""
    from mlcache_audit.apply import apply_plan
    from mlcache_audit.audit import audit_discovered
    from mlcache_audit.plan import Plan, make_plan

    home = fx("home")
    plan = make_plan(audit_discovered(Places(home), hash_cache=False, bundle_id="com.apple.python3"))
    d = plan.to_dict()
    d["containers"][0]["actions"] = [{**a, "path": "com.apple.Safari/Cache.db"} for a in
                                     make_plan(audit_discovered(Places(home), hash_cache=False,
                                                                bundle_id="python")).to_dict()["containers"][0]["actions"][:1]]
    forged = Plan.from_dict(d)
    outcome = apply_plan(forged)
    (o,) = outcome.containers[0].outcomes
    assert o.status == "skipped" and "outside the client's caches" in o.reason
    assert (home / "Library" / "Caches" / "com.apple.Safari" / "Cache.db").exists()


# -- watch -----------------------------------------------------------------------------------------
CHILD = """
import os, shutil, sys, time, uuid
root = sys.argv[1]
gus = f"{str(uuid.uuid4()).upper()}-{os.getpid()}-{os.urandom(8).hex().upper()}"
shutil.copytree(sys.argv[2], f"{root}/tmp/{gus}.mlmodelc")
entry = f"{root}/Library/Caches/com.example.healthy/com.apple.e5rt.e5bundlecache/23A344/{os.urandom(32).hex().upper()}"
os.makedirs(entry + "/x.bundle")
with open(entry + "/x.bundle/main.e5", "wb") as fh:
    fh.write(os.urandom(48000))
time.sleep(float(sys.argv[3]))
"""


@pytest.fixture
def leaky_program(tmp_path):
    """A copy of the Python executable under a unique process name, and the script it runs."""
    name = f"mlw{os.getpid() % 100000}"
    exe = tmp_path / name
    shutil.copy2(sys.executable, exe)
    if subprocess.run([str(exe), "-c", "pass"], capture_output=True).returncode != 0:
        exe.unlink()
        exe.symlink_to(sys.executable)  # a relocated copy that cannot find its library: the name is what counts
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return name, exe, script


@pytest.fixture
def watching(monkeypatch):
    """An event set once `watch` has its first snapshot, so launches start only after it."""
    import mlcache_audit.watch as watch_mod

    ready = threading.Event()
    real_follow = watch_mod.follow
    monkeypatch.setattr(watch_mod, "follow", lambda *a, **k: real_follow(
        *a, **{**k, "ready": lambda: (k["ready"]() if k.get("ready") else None, ready.set())}))
    return ready


def _launch_twice(exe: Path, script: Path, root: Path, delay: float, ready: threading.Event) -> threading.Thread:
    def go():
        assert ready.wait(timeout=60)
        for _ in range(2):
            time.sleep(delay)
            subprocess.run([str(exe), str(script), str(root), str(bf.PARKINSON), "0.8"], check=True, timeout=60)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_watch_reports_what_each_launch_added_as_json_lines(fx, leaky_program, watching):
    name, exe, script = leaky_program
    root = fx("healthy")
    t = _launch_twice(exe, script, root, 0.3, watching)
    result = run("watch", root, "--process", name, "--launches", "2", "--poll", "0.05", "--format", "json")
    t.join(timeout=60)
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events] == ["launch", "launch", "summary"]
    for n, e in enumerate(events[:2], 1):
        assert e["launch"] == n and e["pid"] > 0 and e["added_bytes"] > 900_000 and e["removed_bytes"] == 0
        assert any(p.startswith("tmp/") and p.endswith(".mlmodelc") for p in e["added"])
        assert any("com.apple.e5rt.e5bundlecache/23A344/" in p for p in e["added"])
    summary = events[-1]
    assert summary["launches"] == 2 and summary["added_bytes_per_launch"] > 900_000 and summary["added_bytes_per_day"] is None  # seconds, not a day


def test_watch_history_proves_respecializations(fx, leaky_program, watching):
    name, exe, script = leaky_program
    root = fx("healthy")
    t = _launch_twice(exe, script, root, 0.3, watching)
    assert run("watch", root, "--process", name, "--launches", "2", "--poll", "0.05").exit_code == 0
    t.join(timeout=60)
    doc = json.loads(run("scan", root, "--format", "json").stdout)
    red = next(f for f in doc["containers"][0]["findings"] if f["rule"] == "redundant-specialization")
    assert red["evidence"]["basis"] == "watch history" and len(red["reclaimable_paths"]) == 1
    state = Path(os.environ["MLCACHE_STATE_DIR"]) / "watch"
    assert list(state.glob("*.jsonl")) and not list(root.rglob("*.jsonl"))  # never inside the container


def test_watch_intervals_without_a_process(fx):
    root = fx("healthy")

    def grow():
        time.sleep(0.3)
        bf.copy_bundle(bf.PARKINSON, root / "tmp" / "Grown_0B1C2D3E-4F50-4617-8293-A4B5C6D7E8F9.mlmodelc", bf.T0)
    t = threading.Thread(target=grow, daemon=True)
    t.start()
    result = run("watch", root, "--interval", "0.2", "--count", "1", "--format", "json")
    t.join()
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events] == ["interval", "summary"]
    assert events[0]["added"] == ["tmp/Grown_0B1C2D3E-4F50-4617-8293-A4B5C6D7E8F9.mlmodelc"]


def test_ctrl_c_prints_the_summary_and_exits_0(fx, monkeypatch):
    import mlcache_audit.watch as watch_mod

    calls = {"n": 0}

    def interrupted(seconds):
        calls["n"] += 1
        raise KeyboardInterrupt

    real_follow = watch_mod.follow
    monkeypatch.setattr(watch_mod, "follow", lambda *a, **k: real_follow(*a, **{**k, "sleep": interrupted}))
    result = run("watch", fx("healthy"), "--process", "no-such-process-here")
    assert result.exit_code == 0 and "Summary: 0 launches" in result.stdout and calls["n"] == 1


def test_a_watch_history_that_cannot_be_saved_is_said_not_a_crash(tmp_path, monkeypatch):
    import mlcache_audit.watch as watch_mod

    blocked = tmp_path / "state"
    blocked.write_text("a file where the state folder should be")
    snaps = iter([watch_mod.Snapshot({}, 0.0), watch_mod.Snapshot({("app", "tmp/x.mlmodelc"): (10, (), 1.0)}, 1.0)])
    monkeypatch.setattr(watch_mod, "_next_exit", lambda *a: (4242, 0.0))
    monkeypatch.setattr(watch_mod, "running_instances", lambda *a: {})
    events = list(watch_mod.follow(lambda: next(snaps), process="x", launches=1, interval=1, count=None,
                                   state_dir=blocked))
    assert events[0]["added"] == ["tmp/x.mlmodelc"] and "launch history not saved" in events[0]["note"]
    assert events[-1]["type"] == "summary" and events[-1]["launches"] == 1


def test_clean_names_every_client_and_outcomes_carry_client_and_key(fx):
    """Per-process clients share ~/Library/Caches: each is named in text, and JSON outcomes carry the
    client and the container identity (mlcache.apply/2), so no two are told apart by root alone."""
    home = fx("home")
    doc = json.loads(run("clean", "--home", home, "--format", "json").stdout)
    scan = json.loads(run("scan", "--home", home, "--format", "json").stdout)
    clients = {c["bundle_id"] or c["client"] for c in scan["containers"]}
    text = run("clean", "--home", home).stdout
    assert "unknown bundle id" not in text
    for name in clients:
        assert name in text, name
    applied = json.loads(run("clean", "--home", home, "--all-clients", "--apply", "--yes", "--format", "json").stdout)
    keys = [(c["root"], c["client"]) for c in applied["containers"]]
    assert len(keys) == len(set(keys)) and all(c["client"] for c in applied["containers"])
    assert all(c["container_key"] for c in applied["containers"])
    shared = [c for c in applied["containers"] if c["root"].endswith("/Library/Caches")]
    assert len(shared) >= 2 and len({c["container_key"] for c in shared}) == len(shared)
    assert doc["schema"] == "mlcache.plan/2"


def test_watch_projects_per_day_only_from_an_hour_and_says_intervals(fx, monkeypatch):
    import mlcache_audit.watch as watch_mod

    snaps = iter([watch_mod.Snapshot({}, 0.0), watch_mod.Snapshot({("app", "tmp/x.mlmodelc"): (1_000_000, (), 1.0)}, 1.0)])
    events = list(watch_mod.follow(lambda: next(snaps), process=None, launches=None, interval=0, count=1,
                                   sleep=lambda s: None))
    summary = events[-1]
    assert summary["mode"] == "intervals" and summary["added_bytes_per_day"] is None  # a second is no day
    import io

    from mlcache_audit.report.text import render_watch_event
    from mlcache_audit.terminal import Terminal

    out = io.StringIO()
    render_watch_event(Terminal(out, io.StringIO(), color=False), summary)
    assert "1 changed interval," in out.getvalue() and "too short to project per day" in out.getvalue()
    interrupted = {**summary, "intervals": 0, "added_bytes": 0}
    out = io.StringIO()
    render_watch_event(Terminal(out, io.StringIO(), color=False), interrupted)
    assert "0 changed intervals" in out.getvalue() and "launch" not in out.getvalue()


def test_every_discovered_root_exists_and_is_absolute(fx):
    doc = json.loads(run("scan", "--home", fx("home"), "--format", "json").stdout)
    for c in doc["containers"]:
        assert os.path.isabs(c["root"]) and os.path.isdir(c["root"]), c["root"]
