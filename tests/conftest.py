"""Shared test set-up: fixtures built by the shipped script, isolated state and cache folders."""

from __future__ import annotations

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
    """The real command through click's runner; exceptions are never swallowed."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


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
