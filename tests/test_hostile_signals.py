"""Ctrl-C and kill -9 while workers run: every worker ends, none prints a traceback, exit 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

ENTRIES, FILES = 400, 150  # 60,000 files in 400 specialization entries: the walk is split in workers


@pytest.fixture(scope="module")
def big_container(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("big") / "com.example.big"
    for d in ("Documents", "Library/Preferences", "tmp"):
        (root / d).mkdir(parents=True)
    cache = root / "Library" / "Caches" / "com.example.big" / "com.apple.e5rt.e5bundlecache" / "23A344"
    for i in range(ENTRIES):
        entry = cache / f"{i:064X}" / "x.bundle"
        entry.mkdir(parents=True)
        for j in range(FILES):
            (entry / f"f{j}").write_bytes(b"")
    return root


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "mlcache_audit", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)


def _workers(proc: subprocess.Popen, timeout: float = 30.0) -> list:
    """The worker processes of `proc`, once there are some (None if it ended first)."""
    deadline = time.monotonic() + timeout
    parent = psutil.Process(proc.pid)
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            kids = parent.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        if kids:
            return kids
        time.sleep(0.005)
    return []


def _all_gone(procs: list, within: float = 5.0) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=within)
    return not alive


@pytest.mark.parametrize("args", [["scan", "{big}", "--format", "json", "--no-hash-cache"],
                                  ["scan", "{big}", "{big2}", "{big3}", "--jobs", "2", "--no-hash-cache"]],
                         ids=["split-walk", "jobs"])
def test_ctrl_c_ends_every_worker_and_exits_130(args, big_container, tmp_path):
    proc, kids = _running_with_workers(args, big_container, tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("mlcache did not exit within 5 s of Ctrl-C")
    err = proc.stderr.read()
    assert code == 130, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert _all_gone(kids), "a worker outlived Ctrl-C"


@pytest.mark.parametrize("args", [["scan", "{big}", "--format", "json", "--no-hash-cache"],
                                  ["scan", "{big}", "{big2}", "{big3}", "--jobs", "2", "--no-hash-cache"]],
                         ids=["split-walk", "jobs"])
def test_kill_9_of_mlcache_leaves_no_worker_behind(args, big_container, tmp_path):
    proc, kids = _running_with_workers(args, big_container, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)  # the parent alone: its workers must notice by themselves
    proc.wait(timeout=5)
    assert _all_gone(kids), "a worker outlived kill -9 of mlcache"


def _running_with_workers(args: list[str], big: Path, tmp_path: Path):
    """mlcache started on `args` ({big}, {big2}, {big3}: the big tree and copies), once its workers
    run: (the process, its workers). Skipped when every try finished before a worker was seen."""
    extra = _copies(big, tmp_path, 2) if "{big2}" in args else []
    names = {"{big}": str(big), **{f"{{big{i + 2}}}": str(p) for i, p in enumerate(extra)}}
    for _ in range(5):
        proc = _start([names.get(a, a) for a in args])
        kids = _workers(proc)
        if kids:
            return proc, kids
        proc.wait(timeout=60)
    pytest.skip("every run finished before its workers could be seen")


def _copies(src: Path, tmp_path: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        dst = tmp_path / f"copy{i}" / src.name
        dst.parent.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(src), str(dst)], check=True)  # hard links: fast, distinct folders
        out.append(dst)
    return out


def test_jobs_and_walk_workers_never_exceed_the_cpus(big_container, tmp_path, monkeypatch):
    """One budget: with 2 CPUs, --jobs 4 is lowered to 2 (with a note), and path workers times walk
    workers never exceed 2 processes at once; one PATH alone may split its walk in 2."""
    import json
    import threading

    from conftest import run
    from mlcache_audit import workers

    monkeypatch.setattr(workers, "cpus", lambda: 2)
    copies = _copies(big_container, tmp_path, 2)
    me = psutil.Process()
    most = {"n": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                most["n"] = max(most["n"], len(me.children(recursive=True)))
            except psutil.Error:
                pass
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        result = run("scan", big_container, *copies, "--jobs", "4", "--format", "json", "--no-hash-cache")
    finally:
        done.set()
        t.join()
    assert result.exit_code == 0, result.stderr
    assert any("--jobs 4 lowered to 2" in n for n in json.loads(result.stdout)["notes"])
    assert 0 < most["n"] <= 2, most
