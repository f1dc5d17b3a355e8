"""A fuzz harness for every document mlcache reads, by who wrote it:

- a command's input (a plan, a snapshot or baseline, a config, a quarantine manifest): a one-line
  error and exit 2, never a traceback;
- a document inside a container (metadata.json, Manifest.json, the container and device plists):
  a note or nothing, and the scan goes on;
- mlcache's own state (the journal, the watch history, the hash cache): set aside or passed over
  with a note, never fatal.

Each reader is fed truncated, deeply nested, oversized, wrong-typed and binary input.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_corpus
from conftest import run

FUZZ = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _nested(depth: int, kind: str) -> bytes:
    if kind == "toml":
        return b"a = " + b"[" * depth + b"]" * depth + b"\n"
    return b"[" * depth + b"]" * depth if depth % 2 else b'{"a":' * depth + b"1" + b"}" * depth


def damaged(valid: bytes, kind: str = "json"):
    """Truncated, nested, huge, wrong-typed or binary versions of `valid`."""
    whole = valid.rstrip()  # cut at least one byte of the document itself, not only its newline
    truncated = st.integers(0, max(0, len(whole) - 1)).map(lambda n: whole[:n])
    nested = st.sampled_from([65, 200, 3000, 100_000]).map(lambda d: _nested(d, kind))
    binary = st.binary(min_size=1, max_size=300)
    typed = st.sampled_from([b"null", b"[]", b"12", b'"text"', b"true", b"{}", b'{"schema": 5}', b"NaN"])
    huge = st.just(b" " * (70 * 1024**2) + b"{}") if kind != "toml" else st.just(b"#" * (2 * 1024**2))
    return st.one_of(truncated, nested, binary, typed, huge)


def fresh(tmp_path: Path) -> Path:
    """A new folder per hypothesis example (tmp_path is one per test)."""
    import tempfile

    return Path(tempfile.mkdtemp(dir=tmp_path))


def assert_one_line_error(result) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout[-500:], result.stderr[-500:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlcache: error:"), result.stderr[-800:]
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def assert_goes_on(result) -> None:
    assert result.exit_code in (0, 1), (result.exit_code, result.stderr[-800:])
    assert "internal error" not in result.stderr + result.stdout and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def base(tmp_path_factory, built):
    d = tmp_path_factory.mktemp("fuzzbase")
    app = d / "app"
    shutil.copytree(built["recompile"], app, symlinks=True)
    plan, snap = d / "plan.json", d / "snap.json"
    assert run("clean", app, "--plan-out", plan).exit_code == 0
    assert run("snapshot", app, "-o", snap).exit_code == 0
    q = d / "q"
    leak = hostile_corpus._container(d / "leak")
    hostile_corpus._leak(leak, 2)
    assert run("clean", leak, "--apply", "--yes", "--quarantine", q).exit_code == 0
    return {"app": app, "plan": plan.read_bytes(), "snap": snap.read_bytes(),
            "manifest": (q / "manifest.jsonl").read_bytes(), "q": q,
            "config": b"[tool.mlcache]\nmax-total = \"1GB\"\n"}


# -- a command's input -----------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_a_damaged_plan_is_one_line_and_exit_2(data, base, tmp_path):
    p = tmp_path / "plan.json"
    p.write_bytes(data.draw(damaged(base["plan"])))
    assert_one_line_error(run("apply", p, "--yes"))


@FUZZ
@given(data=st.data())
def test_a_damaged_snapshot_or_baseline_is_one_line_and_exit_2(data, base, tmp_path):
    p = tmp_path / "snap.json"
    p.write_bytes(data.draw(damaged(base["snap"])))
    assert_one_line_error(run("check", base["app"], "--baseline", p, "--max-growth", "1GB"))
    assert_one_line_error(run("diff", p, p))


@FUZZ
@given(data=st.data())
def test_a_damaged_config_is_one_line_and_exit_2(data, base, tmp_path):
    p = tmp_path / "mlcache.toml"
    raw = data.draw(damaged(base["config"], "toml"))
    p.write_bytes(raw)
    result = run("check", base["app"], "--config", p)
    if result.exit_code != 2:  # a damaged file that is still a valid config with no budget: said as such
        pytest.fail(result.stderr)
    assert_one_line_error(result)


@FUZZ
@given(data=st.data())
def test_a_damaged_quarantine_manifest_is_one_line_and_exit_2_or_nothing_to_restore(data, base, tmp_path):
    q = fresh(tmp_path) / "q"
    shutil.copytree(base["q"], q)
    raw = data.draw(damaged(base["manifest"]))
    (q / "manifest.jsonl").write_bytes(raw + b"\n")  # a whole line (a torn last one is the crash case)
    result = run("restore", q)
    if result.exit_code == 0:
        return  # nothing left to restore (a line that names nothing)
    assert_one_line_error(result)


# -- a document inside a container ----------------------------------------------------------------
INSIDE = ["metadata.json", "Manifest.json", "container-plist", "device-plist", "appdatainfo-plist"]


@FUZZ
@given(data=st.data(), which=st.sampled_from(INSIDE))
def test_a_damaged_document_inside_a_container_is_a_note_and_the_scan_goes_on(data, which, built, tmp_path):
    tmp_path = fresh(tmp_path)
    if which == "device-plist":  # read by discovery: scanned with --home
        home = tmp_path / "home"
        shutil.copytree(built["home"], home, symlinks=True)
        target = next(home.rglob("device.plist"))
        top = None
    elif which == "appdatainfo-plist":
        top = tmp_path / "Studio.xcappdata"
        shutil.copytree(built["studio"], top, symlinks=True)
        target = top / "AppDataInfo.plist"
    else:
        top = tmp_path / "app"
        shutil.copytree(built["recompile"], top, symlinks=True)
        if which == "metadata.json":
            target = next(top.rglob("metadata.json"))
        elif which == "Manifest.json":
            pkg = top / "Documents" / "Model.mlpackage"
            pkg.mkdir(parents=True)
            target = pkg / "Manifest.json"
        else:
            target = top / ".com.apple.mobile_container_manager.metadata.plist"
    raw = data.draw(damaged(target.read_bytes() if target.exists() else b'{"a": 1}', "json"))
    target.write_bytes(raw[: 8 * 1024**2])
    where = [top] if top is not None else ["--home", home]
    for args in (["scan", *where, "--format", "json"], ["scan", *where], ["clean", *where]):
        assert_goes_on(run(*args))


# -- mlcache's own state --------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_a_damaged_journal_is_set_aside_with_a_note(data, tmp_path):
    from mlcache_audit.journal import Journal

    tmp_path = fresh(tmp_path)
    root = hostile_corpus._container(tmp_path / "app")
    hostile_corpus._leak(root, 2)
    state = Path(os.environ["MLCACHE_STATE_DIR"])
    journal = Journal(state, os.path.realpath(root)).path
    journal.parent.mkdir(parents=True, exist_ok=True)
    good = (b'{"event": "journal", "root": "x"}\n{"event": "begin", "path": "tmp/x", "trash": '
            b'".mlcache-removing-0123456789ab"}\n')
    body = data.draw(damaged(good))
    journal.write_bytes(body + b"\nmore\n")  # damage before the last line: not a torn write
    result = run("clean", root, "--apply", "--yes", "--format", "json")
    assert_goes_on(result)
    notes = [n for c in json.loads(result.stdout)["containers"] for n in c.get("recovered", [])]
    assert any("damaged" in n and "set aside" in n for n in notes), notes
    assert list(journal.parent.glob("*.damaged-*.jsonl"))


@FUZZ
@given(data=st.data())
def test_a_damaged_watch_history_is_passed_over(data, built, tmp_path):
    from mlcache_audit.watch import history_file

    tmp_path = fresh(tmp_path)
    app = tmp_path / "app"
    shutil.copytree(built["recompile"], app, symlinks=True)
    state = Path(os.environ["MLCACHE_STATE_DIR"])
    doc = json.loads(run("scan", app, "--format", "json").stdout)
    client = doc["containers"][0]["client"]
    h = history_file(client, state)
    h.parent.mkdir(parents=True, exist_ok=True)
    h.write_bytes(data.draw(damaged(b'{"client": "%s", "added": ["tmp/x"]}\n' % client.encode())))
    assert_goes_on(run("scan", app))


@FUZZ
@given(raw=st.binary(min_size=0, max_size=4096))
def test_a_damaged_hash_cache_is_passed_over(raw, built, tmp_path):
    from mlcache_audit.hashcache import HashCache

    tmp_path = fresh(tmp_path)
    app = tmp_path / "app"
    shutil.copytree(built["recompile"], app, symlinks=True)
    cache = HashCache()
    path = cache.path
    cache.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    assert_goes_on(run("scan", app, "--format", "json"))
