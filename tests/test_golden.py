"""The golden diff: every command's JSON on every fixture, byte for byte, with times and the
temporary root normalised. A restructuring must leave it empty; a change that means to change a
document updates the reference in the same commit (MLCACHE_UPDATE_GOLDEN=1 pytest tests/test_golden.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import run

GOLDEN = Path(__file__).parent / "golden"
FIXTURES = ["recompile", "healthy", "studio", "simulator", "macos", "llm", "coreai", "home", "backup",
            "healthy_zip", "studio_tgz"]
_TIME = re.compile(r'"(created|started|ended|at|plan_created)": "[^"]*"')
_INODE = re.compile(r'"(inode|mtime_ns)": \d+')  # a copy's inodes, and folder times copying resets
_FINGERPRINT = re.compile(r'"fingerprint": "[0-9a-f]+"')  # covers those folder times too
_KEY = re.compile(r'"container_key": "[^"]*"')  # a copy's device and inode


def _commands(where: list[str], folder: bool) -> dict[str, list[str]]:
    cmds = {
        "scan": ["scan", *where, "--format", "json", "--no-hash-cache"],
        "scan-jsonl": ["scan", *where, "--format", "jsonl", "--no-hash-cache"],
        "plan": ["clean", *where, "--format", "json", "--no-hash-cache"],
        "snapshot": ["snapshot", *where, "--no-hash-cache"],
        "check": ["check", *where, "--max-total", "1MB", "--max-copies", "1", "--format", "json", "--no-hash-cache"],
    }
    if folder:
        cmds["apply"] = ["clean", *where, "--apply", "--yes", "--format", "json", "--no-hash-cache",
                         *(["--all-clients"] if where[0] == "--home" else [])]
    return cmds


def _normalise(text: str, root: Path) -> str:
    text = text.replace(str(root), "<ROOT>").replace(os.path.realpath(root), "<ROOT>")
    text = _INODE.sub(lambda m: f'"{m.group(1)}": "<N>"', text)
    text = _FINGERPRINT.sub('"fingerprint": "<F>"', text)
    text = _KEY.sub('"container_key": "<KEY>"', text)
    return _TIME.sub(lambda m: f'"{m.group(1)}": "<TIME>"', text)


def _outputs(built, tmp_path, key: str) -> dict[str, str]:
    out = {}
    src = built[key]
    cleanable = src.is_dir() and key != "backup"
    for name, args in _commands(["--home", "HOME"] if key == "home" else ["PATH"], cleanable).items():
        root = tmp_path / name
        dst = root / src.name
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            dst.parent.mkdir(parents=True)
            shutil.copy2(src, dst)
        result = run(*[str(dst) if a in ("PATH", "HOME") else a for a in args])
        assert result.exit_code in (0, 1), (key, name, result.stderr)
        text = result.stdout if name == "scan-jsonl" else json.dumps(json.loads(result.stdout), indent=1,
                                                                        sort_keys=True) + "\n"
        out[name] = _normalise(text, root)
    return out


@pytest.mark.parametrize("key", FIXTURES)
def test_every_commands_json_is_unchanged(key, built, tmp_path):
    for name, text in _outputs(built, tmp_path, key).items():
        ref = GOLDEN / f"{key}.{name}.json"
        if os.environ.get("MLCACHE_UPDATE_GOLDEN"):
            ref.write_text(text)
            continue
        assert ref.exists(), f"no reference {ref.name}: run with MLCACHE_UPDATE_GOLDEN=1"
        assert text == ref.read_text(), f"{ref.name} changed"
