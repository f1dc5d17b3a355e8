"""Shared test set-up: fixtures built by the shipped script, isolated state and cache folders."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))

import build_fixtures  # noqa: E402

from mlcache_audit.cli import cli  # noqa: E402


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, Path]:
    """Every fixture, built once per session with its timeline (git does not keep mtimes)."""
    return build_fixtures.build_all(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture
def fx(built, tmp_path):
    """A private, writable copy of one fixture: fx("recompile") -> Path."""

    def copy(name: str) -> Path:
        src = built[name]
        dst = tmp_path / "copy" / src.name
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        return dst

    return copy


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCACHE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MLCACHE_CACHE_DIR", str(tmp_path / "hashcache"))
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def run(*args: str, input: str | None = None):
    """The real command through click's runner; exceptions are never swallowed. Every JSON document
    it prints is validated against the schema mlcache ships for it (`mlcache schema NAME`)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)
    validate_output(result.stdout)
    return result


_SCHEMAS: dict[str, dict] = {}


def schema_of(name: str) -> dict:
    if name not in _SCHEMAS:
        from importlib import resources

        text = resources.files("mlcache_audit").joinpath("schemas", f"{name}.schema.json").read_text("utf-8")
        _SCHEMAS[name] = json.loads(text)
    return _SCHEMAS[name]


def validate_document(doc: dict) -> None:
    import jsonschema

    name = doc["schema"].split(".", 1)[1].split("/", 1)[0]
    jsonschema.validate(doc, schema_of(name), cls=jsonschema.Draft202012Validator)


def validate_output(stdout: str) -> None:
    """Validate what looks like an mlcache JSON document or JSON Lines stream; leave text alone."""
    for line in stdout.splitlines() if stdout.lstrip().startswith("{") else ():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            doc = json.loads(stdout)  # an indented document (snapshot): validate it whole, once
            if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("mlcache."):
                validate_document(doc)
            return
        if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("mlcache."):
            validate_document(doc)


def scan_json(path: Path, *extra: str) -> dict:
    result = run("scan", path, "--format", "json", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry below root with type, size, mtime_ns and content digest: compare before/after."""
    import hashlib
    import os

    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
            state[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return state


@contextlib.contextmanager
def holding_open(path: Path, name: str | None = None):
    """Another process (a Python child, optionally under another executable name) that holds `path`
    open until the block ends: a running app, as far as the in-use checks can tell."""
    import subprocess
    import time

    exe = sys.executable
    script = "import sys, time\nfh = open(sys.argv[1], 'rb')\nprint('ready', flush=True)\ntime.sleep(120)\n"
    proc = subprocess.Popen([exe, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
