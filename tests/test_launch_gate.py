"""The growth gate per launch (`check --launch CMD --launches N --max-growth-per-launch SIZE`), with
three fake apps: one that leaks every launch, one steady with noise, one with a single jump."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import run
from mlcache_audit.launchgate import judge, suggested_budget

FAKE_APP = Path(__file__).resolve().parent.parent / "scripts" / "fake_app.py"


@pytest.fixture
def fake_app(fx, tmp_path):
    root = fx("healthy")

    def command(mode: str) -> str:
        return f"{sys.executable} {FAKE_APP} {root} {mode} {tmp_path / ('count-' + mode)}"
    return root, command


@pytest.mark.parametrize("mode,code", [("leak", 1), ("noise", 0), ("jump", 0)])
def test_the_gate_fails_a_leak_and_passes_noise_and_a_single_jump(mode, code, fake_app, tmp_path):
    root, command = fake_app
    junit = tmp_path / "junit.xml"
    summary = tmp_path / "summary.md"
    result = run("check", root, "--launch", command(mode), "--launches", "5", "--max-growth-per-launch", "100KB",
                 "--format", "json", "--junit", junit, "--step-summary", summary)
    assert result.exit_code == code, (result.stdout[-2000:], result.stderr)
    doc = json.loads(result.stdout)
    gate = doc["launches"]
    assert gate["count"] == 5 and len(gate["runs"]) == 5 and gate["passed"] == (code == 0)
    assert [r["gated"] for r in gate["runs"]] == [False, True, True, True, True]
    budget = next(b for b in doc["budgets"] if b["name"] == "max-growth-per-launch")
    assert budget["passed"] == (code == 0) and budget["message"] == gate["why"]
    if mode == "leak":
        assert all(r["delta_bytes"] >= 1_000_000 for r in gate["runs"])
        f = budget["findings"][0]
        assert f["kind"] == "specialization" and "com.apple.e5rt.e5bundlecache" in f["path"]
    xml = junit.read_text()
    assert 'name="max-growth-per-launch"' in xml and "launch 1:" in xml
    assert "| launch |" in summary.read_text()


def test_annotations_go_to_stderr_and_json_parses_under_github_actions(fake_app, monkeypatch):
    root, command = fake_app
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = run("check", root, "--launch", command("leak"), "--launches", "3", "--max-growth-per-launch", "100KB",
                 "--format", "json")
    assert result.exit_code == 1
    json.loads(result.stdout)  # the document alone
    assert "::error title=mlcache budget max-growth-per-launch::" in result.stderr


def test_stability_suggests_a_budget_and_passes(fake_app):
    root, command = fake_app
    result = run("check", root, "--launch", command("noise"), "--launches", "4", "--stability", "--format", "json")
    assert result.exit_code == 0, result.stderr
    gate = json.loads(result.stdout)["launches"]
    deltas = [r["delta_bytes"] for r in gate["runs"]][1:]
    assert gate["suggested_budget_bytes"] == max(0, max(deltas)) + (max(deltas) - min(deltas))
    text = run("check", root, "--launch", command("noise"), "--launches", "3", "--stability").stdout
    assert "suggested --max-growth-per-launch" in text


@pytest.mark.parametrize("args,words", [
    (["--launches", "2", "--max-growth-per-launch", "1MB"], "at least 3"),
    (["--launches", "3"], "--max-growth-per-launch"),
])
def test_bad_launch_options_are_exit_2(args, words, fake_app):
    root, command = fake_app
    result = run("check", root, "--launch", command("noise"), *args)
    assert result.exit_code == 2 and words in result.stderr


def test_a_failing_or_hanging_launch_is_exit_2_naming_it(fake_app, tmp_path):
    root, command = fake_app
    failed = run("check", root, "--launch", command("fail"), "--launches", "3", "--max-growth-per-launch", "1MB")
    assert failed.exit_code == 2 and "launch 2 failed" in failed.stderr and "code 3" in failed.stderr
    hung = run("check", root, "--launch", command("hang"), "--launches", "3", "--max-growth-per-launch", "1MB",
               "--launch-timeout", "0.5")
    assert hung.exit_code == 2 and "launch 1 ran past --launch-timeout 0.5 s" in hung.stderr


def test_the_gate_measures_one_app(built, tmp_path):
    top = tmp_path / "sim"
    shutil.copytree(built["simulator"], top, symlinks=True)
    result = run("check", top, "--launch", "true", "--launches", "3", "--max-growth-per-launch", "1MB")
    assert result.exit_code == 2 and "--bundle-id" in result.stderr


@given(deltas=st.lists(st.integers(-10**7, 10**7), min_size=3, max_size=12), budget=st.integers(0, 10**7))
def test_the_verdict_is_the_median_and_the_count(deltas, budget):
    v = judge(deltas, budget)
    gated = deltas[1:]
    s = sorted(gated)
    mid = (s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2)
    over = sum(1 for d in gated if d > budget)  # a negative delta is never over a budget >= 0
    assert v.passed == (not (mid > budget and over >= math.ceil(len(gated) / 2)))
    assert v.over == over and v.gated == tuple(gated)
    assert suggested_budget(judge(deltas, None)) >= max(0, max(gated))


def test_watch_launches_keeps_its_meaning(fx):
    """`watch --launches N` stops after N launches; `check --launches N` runs the app N times."""
    from mlcache_audit.cli import cli

    watch = next(c for c in cli.commands["watch"].params if c.name == "launches")
    check = next(c for c in cli.commands["check"].params if c.name == "launches")
    assert "Stop after" in watch.help and "how many launches" in check.help
    assert Path(fx("healthy")).is_dir()


# -- CI output that is right ------------------------------------------------------------------------
def test_a_bundle_id_that_matches_nothing_is_exit_2_naming_the_known_ones(fx):
    home = fx("home")
    result = run("check", "--home", home, "--bundle-id", "com.example.typo", "--max-total", "1MB")
    assert result.exit_code == 2 and "com.example.typo" in result.stderr and "com.example.leaky" in result.stderr
    sim = fx("simulator")
    result = run("check", sim, "--bundle-id", "com.example.typo", "--max-total", "1MB")
    assert result.exit_code == 2 and "known: com.example.simcalm, com.example.simleak" in result.stderr


def test_a_baseline_of_another_app_is_an_error_unless_allowed(fx, built, tmp_path):
    base = tmp_path / "base.json"
    assert run("snapshot", built["healthy"], "-o", base).exit_code == 0
    root = fx("recompile")
    refused = run("check", root, "--baseline", base, "--max-growth", "1GB")
    assert refused.exit_code == 2 and "another app" in refused.stderr and "--allow-other-app" in refused.stderr
    allowed = run("check", root, "--baseline", base, "--max-growth", "1GB", "--allow-other-app", "--format", "json")
    assert allowed.exit_code == 0 and any("another app" in n for n in json.loads(allowed.stdout)["notes"])


def test_a_check_that_cannot_run_still_annotates_and_summarises(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run("check", tmp_path / "no-such-container", "--max-total", "1MB")
    assert result.exit_code == 2
    assert "::error title=mlcache check could not run::" in result.stderr
    assert "could not run" in summary.read_text()


def test_no_name_can_forge_a_workflow_command_or_markup(fx, tmp_path, monkeypatch):
    """A bundle id holding a newline and `::stop-commands::x` (or markup) reaches every CI output
    escaped for where it goes: no line of stdout or stderr starts a workflow command but mlcache's
    own annotations, and the step summary keeps `<GUS>`-like text visible."""
    import plistlib

    root = fx("recompile")
    evil = "com.example.x\n::stop-commands::x\n<b>bold</b> | ::error::forged"
    meta = root / ".com.apple.mobile_container_manager.metadata.plist"
    meta.write_bytes(plistlib.dumps({"MCMMetadataIdentifier": evil}))
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    for fmt in ("text", "json", "markdown"):
        result = run("check", root, "--max-total", "1MB", "--max-copies", "1", "--fail-on", "repeated-compile",
                     "--format", fmt)
        assert result.exit_code == 1
        for stream in (result.stdout, result.stderr):
            for line in stream.splitlines():
                assert not line.startswith("::") or line.startswith("::error title=mlcache budget "), line
                assert "::stop-commands::" not in line or "%0A" in line or "\\n" in line, line
    text = summary.read_text()
    assert "<b>" not in text and "&lt;b&gt;" in text and "\n::" not in text
    scan_md = run("scan", root, "--format", "markdown").stdout
    assert "<GUS>" not in scan_md or "&lt;GUS&gt;" in scan_md


def test_ctrl_c_during_a_launch_ends_its_process_group_and_exits_130(fx, tmp_path):
    import os
    import signal
    import subprocess
    import time

    import psutil

    root = fx("healthy")
    marker = tmp_path / "child.pid"
    cmd = f"sh -c 'echo $$ > {marker}; sleep 60'"
    proc = subprocess.Popen([sys.executable, "-m", "mlcache_audit", "check", str(root), "--launch", cmd,
                             "--launches", "3", "--max-growth-per-launch", "1MB"], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(marker.read_text())
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches mlcache's group, not the launch's own
    assert proc.wait(timeout=10) == 130
    assert "Traceback" not in proc.stderr.read()
    gone, alive = psutil.wait_procs([psutil.Process(child)] if psutil.pid_exists(child) else [], timeout=5)
    assert not alive, "the launched command outlived Ctrl-C"


def test_diff_of_two_apps_warns(built):
    result = run("diff", built["healthy"], built["recompile"], "--format", "json")
    assert result.exit_code == 0 and "another app" in json.loads(result.stdout)["notes"][0]
    assert "warning: the baseline is of another app" in run("diff", built["healthy"], built["recompile"]).stdout
