"""Round three of hostile input: what a crafted home, quarantine or output path could make mlcache
touch outside the container it was given. Every place is generated, not picked by hand."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import run, tree_state

# Every folder discovery descends through on its way to a container, from the home down.
DISCOVERY_LEVELS = [
    "Library",
    "Library/Caches",
    "Library/Caches/python",
    "Library/Caches/coreai-cache",
    "Library/Group Containers",
    "Library/Containers",
    "Library/Developer",
    "Library/Developer/CoreSimulator",
    "Library/Developer/CoreSimulator/Devices",
]


def _swap_for_symlink(home: Path, level: str, outside: Path) -> Path:
    """Move `home/level` outside the home and leave a symlink to it in its place."""
    src = home / level
    dst = outside / level.replace("/", "_")
    shutil.move(str(src), str(dst))
    os.symlink(dst, src)
    return dst


@pytest.mark.parametrize("level", DISCOVERY_LEVELS)
def test_discovery_never_crosses_a_symlink_and_names_it(level, fx, tmp_path):
    home = fx("home")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    moved = _swap_for_symlink(home, level, outside)
    before = tree_state(outside)
    scan = run("scan", "--home", home, "--format", "json")
    assert scan.exit_code == 0, scan.stderr
    doc = json.loads(scan.stdout)
    skipped = doc["discovery"]["skipped"]
    assert any(s["path"] == str(home / level) and s["target"] == str(moved) and "scan it as PATH" in s["reason"]
               for s in skipped), skipped
    assert all(not c["root"].startswith(str(outside)) for c in doc["containers"])
    text = run("scan", "--home", home)
    assert f"Skipped: {home / level}: symlink to {moved}; scan it as PATH" in text.stdout.replace("\n", " ") or \
        "Skipped:" in text.stdout
    result = run("clean", "--home", home, "--all-clients", "--apply", "--yes", "--format", "json")
    assert result.exit_code in (0, 1), result.stderr
    assert tree_state(outside) == before


def test_a_symlinked_named_home_is_resolved_once_and_recorded(fx, tmp_path):
    home = fx("home")
    link = tmp_path / "home-link"
    os.symlink(home, link)
    doc = json.loads(run("scan", "--home", link, "--format", "json").stdout)
    assert doc["discovery"]["home"] == os.path.realpath(home)
    assert doc["containers"] and all(c["root"].startswith(os.path.realpath(home)) for c in doc["containers"])
