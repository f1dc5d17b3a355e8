"""Hostile input: every class in tests/hostile_corpus.py, run through the real command.

Each case asserts: no traceback, no "internal error", the documented exit code, JSON that is valid
UTF-8, a scan that ends in bounded time (an alarm fails a hang), and no change outside the plan or
outside the container (full tree state, compared before and after).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import hostile_corpus  # noqa: E402
from conftest import run  # noqa: E402
from mlcache_audit.fsio import path_from  # noqa: E402

TIME_LIMIT = 60  # seconds for one command on one case: a hang fails the test instead of CI


@contextlib.contextmanager
def time_limit(seconds: int = TIME_LIMIT):
    def expire(signum, frame):
        raise TimeoutError(f"the command did not finish in {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def full_state(root: Path) -> dict[str, tuple]:
    """Every entry below root (iteratively, by folder handles: deep chains and odd names included)
    with its type, size, content digest, and mtime for files."""
    state: dict[str, tuple] = {}
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    stack = [(top, "")]
    while stack:
        fd, rel = stack.pop()
        for name in os.listdir(fd):
            p = f"{rel}/{name}" if rel else name
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd), "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            mtime = None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns  # folders' mtimes move with children
            state[p] = (stat.S_IFMT(st.st_mode), st.st_size if not stat.S_ISDIR(st.st_mode) else 0, mtime, digest)
            if stat.S_ISDIR(st.st_mode):
                stack.append((os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd), p))
        os.close(fd)
    return state


def remove_iteratively(root: Path) -> None:
    """What pytest's cleanup (shutil.rmtree, recursive in Python 3.11) cannot do for a deep chain."""
    if not os.path.lexists(root):
        return
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    stack = [(None, None, top)]
    while stack:
        parent, name, fd = stack[-1]
        child = next((n for n in os.listdir(fd)), None)
        if child is None:
            stack.pop()
            os.close(fd)
            if parent is not None:
                os.rmdir(name, dir_fd=parent)
            continue
        if stat.S_ISDIR(os.stat(child, dir_fd=fd, follow_symlinks=False).st_mode):
            stack.append((fd, child, os.open(child, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)))
        else:
            os.unlink(child, dir_fd=fd)


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path):
    yield
    remove_iteratively(tmp_path)


def assert_clean_output(result) -> None:
    text = result.stdout + result.stderr
    assert "Traceback" not in text and "internal error" not in text, text[-2000:]


def json_doc(result) -> dict:
    raw = result.stdout_bytes
    raw.decode("utf-8")  # strictly valid UTF-8
    doc = json.loads(raw)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # no lone surrogates hidden in \u escapes
    return doc


CASES = [b for b in hostile_corpus.BUILDERS]


@pytest.mark.parametrize("builder", CASES, ids=[b.__name__ for b in CASES])
def test_hostile_case(builder, tmp_path):
    case = hostile_corpus.build(builder, tmp_path)
    if case is None:
        pytest.skip(f"{builder.__name__} cannot be built here (needs root)")
    base = tmp_path / builder.__name__
    before = full_state(base)
    with time_limit():
        scanned = run("scan", case.target, "--format", "json", *case.args)
    assert_clean_output(scanned)
    assert scanned.exit_code in case.scan_exit, scanned.stderr
    if scanned.exit_code == 2:
        assert len(scanned.stderr.strip().splitlines()) == 1  # one line, naming the problem
        return
    doc = json_doc(scanned)
    for c in doc["containers"]:
        for a in c["artifacts"]:
            assert isinstance(path_from(a), str)
    with time_limit():
        text = run("scan", case.target, *case.args)
        dry = run("clean", case.target, "--format", "json", *case.args)
    assert_clean_output(text)
    assert_clean_output(dry)
    assert text.exit_code == 0 and dry.exit_code == 0, dry.stderr
    assert full_state(base) == before  # scans and a dry run change nothing at all
    plan = json_doc(dry)
    if not case.cleanable:
        with time_limit():
            refused = run("clean", case.target, "--apply", "--yes", *case.args)
        assert refused.exit_code == 2 and "read-only evidence" in refused.stderr
        assert full_state(base) == before
        return
    planned = [os.path.join(c["root"] if "root_b64" not in c else path_from(c, "root"), path_from(a))
               for c in plan["containers"] for a in c["actions"]]
    with time_limit():
        applied = run("clean", case.target, "--apply", "--yes", "--format", "json", *case.args)
    assert_clean_output(applied)
    assert applied.exit_code in (0, 1)
    outcome = json_doc(applied)
    assert outcome["complete"], [o for c in outcome["containers"] for o in c["outcomes"] if o["status"] != "removed"]
    after = full_state(base)
    rel_planned = [os.path.relpath(p, base) for p in planned]
    for key in set(before) | set(after):
        if before.get(key) != after.get(key):
            assert any(key == p or key.startswith(p + "/") for p in rel_planned), f"changed outside the plan: {key!r}"
    for outside in case.outside:
        rel = os.path.relpath(outside, base)
        assert {k: v for k, v in after.items() if k.startswith(rel)} == \
               {k: v for k, v in before.items() if k.startswith(rel)}


def test_apply_walks_and_removes_iteratively(tmp_path, monkeypatch):
    """A leftover holding a chain deeper than PATH_MAX and the recursion limit is removed, and an
    interrupted removal of it is finished by journal recovery."""
    import mlcache_audit.apply as apply_mod

    case = hostile_corpus.build(hostile_corpus.deep_chain, tmp_path)
    older, newer = hostile_corpus.DEEP_LEFTOVERS
    real = apply_mod._delete_aside
    calls = {"n": 0}

    def interrupted_once(parent_fd, trash, is_dir):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # the run dies with the deep tree renamed aside
        return real(parent_fd, trash, is_dir)

    monkeypatch.setattr(apply_mod, "_delete_aside", interrupted_once)
    with time_limit():
        first = run("clean", case.target, "--apply", "--yes")
    assert first.exit_code == 130
    assert not os.path.lexists(case.target / older)  # renamed aside, with its chain, before the interrupt
    with time_limit():
        second = run("clean", case.target, "--apply", "--yes")
    assert_clean_output(second)
    assert second.exit_code == 0 and "removal finished now" in second.stdout
    assert not os.path.lexists(case.target / older) and os.path.isdir(case.target / newer)
    assert not [n for n in os.listdir(case.target / "tmp") if n.startswith(".mlcache-removing-")]
