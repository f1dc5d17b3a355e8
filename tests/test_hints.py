"""Every command mlcache prints as a hint runs as printed: exit 0 or 1, never 2 (a usage error)."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from conftest import run
from mlcache_audit.report.summary import verdict

NAMES = ["recompile", "healthy", "studio", "simulator", "macos", "llm", "coreai", "backup", "healthy_zip",
         "studio_tgz", "home", "home+tmpdir"]


def _run_hint(command: str, *extra: str):
    argv = shlex.split(command)
    assert argv[0] == "mlcache", command
    return run(*argv[1:], *extra)


@pytest.mark.parametrize("name", NAMES)
def test_every_next_command_of_a_scan_runs_as_printed(fx, name):
    target = fx(name.split("+")[0])
    args = ["--home", target] if name == "home" else ["--home", target, "--tmpdir", target / "tmp"] \
        if name == "home+tmpdir" else [target]
    doc = json.loads(run("scan", *args, "--format", "json").stdout)
    commands = {verdict(c, doc["path"], doc.get("discovery")).next_command for c in doc["containers"]} - {None}
    text = run("scan", *args).stdout
    for command in commands:
        assert f"Next:  {command}" in text.replace("\n", " ") or command in text
        result = _run_hint(command)
        assert result.exit_code in (0, 1), (command, result.stderr)
        assert not re.search(r"\((then|a preview)", command)  # no prose inside a command


def test_the_plan_and_restore_hints_run_as_printed(fx, tmp_path):
    root = fx("recompile")
    plan = tmp_path / "my plan.json"  # a space: the hint must be quoted
    made = run("clean", root, "--plan-out", plan)
    hint = re.search(r"carry it out with `([^`]+)`", made.stdout + made.stderr).group(1)
    applied = _run_hint(hint, "--yes")
    assert applied.exit_code == 0, applied.stderr
    root2 = fx("healthy")
    (root2 / "tmp" / "com.apple.MetalPerformanceShadersGraph" / "mpsgraph-99999-1").mkdir(parents=True)
    (root2 / "tmp" / "com.apple.MetalPerformanceShadersGraph" / "mpsgraph-99999-1" / "w").write_bytes(b"x" * 100)
    q = tmp_path / "quarantine dir"
    moved = run("clean", root2, "--apply", "--yes", "--quarantine", q)
    hint = re.search(r"Restore with `([^`]+)`", moved.stdout).group(1)
    assert _run_hint(hint).exit_code == 0
