"""The CI gate: snapshots, diffs, budgets, JUnit, GitHub Actions output, config files."""

import json
from pathlib import Path

import build_fixtures as bf
import pytest
import xmlschema

from conftest import ROOT, run

SCHEMA = xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit-ant.xsd"))


def three_more_leftovers(root: Path) -> None:
    """What three more launches of a leaky app leave behind."""
    for i in range(3):
        when = bf.T0 + 30 * bf.DAY + i * bf.HOUR
        name = bf.gus(500 + i, 9000 + i)
        bf.write(root / "tmp" / name, bf.TINY_SPEC.read_bytes(), when)
        bf.copy_bundle(bf.PARKINSON, root / "tmp" / f"{name}.mlmodelc", when)


@pytest.fixture
def healthy_with_baseline(fx, tmp_path):
    root = fx("healthy")
    base = tmp_path / "baseline.json"
    result = run("snapshot", root, "-o", base)
    assert result.exit_code == 0 and base.exists()
    return root, base


def test_baseline_of_a_healthy_container_passes(healthy_with_baseline):
    root, base = healthy_with_baseline
    result = run("check", root, "--baseline", base, "--max-growth", "1MB")
    assert result.exit_code == 0, result.stdout
    assert "passed" in result.stdout


def test_three_more_leftovers_fail_a_1mb_growth_budget(healthy_with_baseline, tmp_path, monkeypatch):
    root, base = healthy_with_baseline
    three_more_leftovers(root)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit = tmp_path / "junit.xml"
    result = run("check", root, "--baseline", base, "--max-growth", "1MB", "--junit", junit)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1
    assert errors[0].startswith("::error title=mlcache budget max-growth::ML caches grew by +2.9 MB")
    # The annotation names what is behind the growth: the rule, the model, the producer and the fix.
    assert "repeated-compile (model parkinson_wave, from TensorFlow Lite Core ML delegate)" in errors[0]
    assert "Fix: The TensorFlow Lite Core ML delegate" in errors[0]
    SCHEMA.validate(str(junit))
    xml = junit.read_text()
    assert xml.count("<testcase") == 1 and xml.count("<failure") == 1 and 'type="BudgetExceeded"' in xml
    md = summary.read_text()
    assert "mlcache check: failed" in md and "| max-growth | total | **FAIL** |" in md
    assert "App: com.example.healthy" in md and "| compile_leftover | 0 B | 2.9 MB | +2.9 MB |" in md


def test_a_generous_budget_passes(healthy_with_baseline, tmp_path):
    root, base = healthy_with_baseline
    three_more_leftovers(root)
    junit = tmp_path / "junit.xml"
    result = run("check", root, "--baseline", base, "--max-growth", "10MB", "--max-growth-pct", "500",
                 "--junit", junit)
    assert result.exit_code == 0
    SCHEMA.validate(str(junit))
    assert "<failure" not in junit.read_text()


def test_every_budget_kind(built, tmp_path):
    r = built["recompile"]
    assert run("check", r, "--max-total", "10MB").exit_code == 1
    assert run("check", r, "--max-total", "1GB").exit_code == 0
    assert run("check", r, "--max-copies", "3").exit_code == 1
    assert run("check", built["healthy"], "--max-copies", "1").exit_code == 0
    assert run("check", r, "--fail-on", "repeated-compile").exit_code == 1
    assert run("check", built["healthy"], "--fail-on", "repeated-compile").exit_code == 0
    junit = tmp_path / "j.xml"
    result = run("check", r, "--max-total", "1GB", "--max-copies", "3", "--fail-on", "stale-os-build",
                 "--junit", junit, "--format", "json")
    doc = json.loads(result.stdout)
    assert [b["name"] for b in doc["budgets"]] == ["max-total", "max-copies", "fail-on:stale-os-build"]
    assert [b["passed"] for b in doc["budgets"]] == [True, False, True]
    SCHEMA.validate(str(junit))


def test_growth_percent_budget(healthy_with_baseline):
    root, base = healthy_with_baseline
    three_more_leftovers(root)
    result = run("check", root, "--baseline", base, "--max-growth-pct", "25", "--format", "json")
    assert result.exit_code == 1
    (budget,) = json.loads(result.stdout)["budgets"]
    assert budget["name"] == "max-growth-pct" and budget["unit"] == "percent" and 280 < budget["actual"] < 290


def test_usage_and_input_errors_are_exit_2(built, tmp_path):
    r = built["healthy"]
    assert run("check", r).exit_code == 2  # no budget at all
    missing = run("check", r, "--baseline", tmp_path / "nope.json", "--max-growth", "1MB")
    assert missing.exit_code == 2 and "no such snapshot" in missing.stderr
    assert run("check", r, "--max-growth", "1MB").exit_code == 2  # growth needs a baseline
    assert run("check", r, "--max-total", "lots").exit_code == 2
    assert run("check", tmp_path / "no-container", "--max-total", "1MB").exit_code == 2
    not_snapshot = tmp_path / "x.json"
    not_snapshot.write_text('{"schema": "something/1"}')
    assert run("check", r, "--baseline", not_snapshot, "--max-growth", "1MB").exit_code == 2


def test_budgets_from_pyproject_and_mlcache_toml(built, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.mlcache]\nmax-total = "10MB"\nfail-on = ["repeated-compile"]\n')
    result = run("check", built["recompile"], "--format", "json")
    assert result.exit_code == 1
    assert [b["name"] for b in json.loads(result.stdout)["budgets"]] == ["max-total", "fail-on:repeated-compile"]
    (tmp_path / "mlcache.toml").write_text('max-total = "1GB"\n')
    assert run("check", built["recompile"]).exit_code == 0  # mlcache.toml wins over pyproject.toml
    assert run("check", built["recompile"], "--max-total", "1MB").exit_code == 1  # options win over files
    (tmp_path / "mlcache.toml").write_text('max-totl = "1GB"\n')
    bad = run("check", built["recompile"])
    assert bad.exit_code == 2 and "unknown mlcache setting" in bad.stderr


def test_not_observable_is_said_in_check_output(built):
    result = run("check", built["backup"], "--max-total", "1GB")
    assert result.exit_code == 0 and "not observable in this form: Library/Caches, tmp" in result.stdout


def test_snapshot_and_check_contract_keys_are_pinned(built, tmp_path):
    snap = json.loads(run("snapshot", built["recompile"]).stdout)
    assert snap["schema"] == "mlcache.snapshot/2"
    assert {"created", "path", "containers", "totals"} <= set(snap)
    assert {"total_bytes", "coreml_bytes", "reclaimable_bytes", "max_copies", "not_observable", "kinds", "rules"} \
        <= set(snap["totals"])
    assert snap["totals"]["max_copies"] == 24
    assert snap["totals"]["kinds"]["specialization"] == {"bytes": snap["totals"]["kinds"]["specialization"]["bytes"],
                                                         "count": 24}
    check = json.loads(run("check", built["recompile"], "--max-total", "1GB", "--format", "json").stdout)
    assert check["schema"] == "mlcache.check/3"
    assert {"path", "passed", "config", "budgets", "notes", "totals", "baseline_totals", "containers"} <= set(check)
    assert set(check["budgets"][0]) == {"name", "scope", "passed", "actual", "limit", "unit", "message", "findings"}
    assert isinstance(check["budgets"][0]["actual"], int) and check["budgets"][0]["unit"] == "bytes"


def test_diff_of_snapshots_and_of_containers(healthy_with_baseline, tmp_path):
    root, base = healthy_with_baseline
    three_more_leftovers(root)
    result = run("diff", base, root, "--format", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["schema"] == "mlcache.diff/3"
    assert doc["old"]["path"] == str(root) and doc["old"]["created"]  # the snapshot is the old side
    rows = {r["name"]: r for r in doc["rows"]}
    assert rows["compile_leftover"]["old_bytes"] == 0 and rows["compile_leftover"]["new_count"] == 6
    assert rows["ML caches total"]["delta_bytes"] == rows["compile_leftover"]["new_bytes"]
    text = run("diff", base, root).stdout
    assert "compile_leftover" in text and "+2.9 MB" in text and text.index("old") < text.index("new")


def test_github_escapes_are_applied():
    from mlcache_audit.report.github import annotations

    doc = {"budgets": [{"name": "max-total", "passed": False, "message": "100% over\nline two", "findings": []}]}
    (line,) = annotations(doc)
    assert line == "::error title=mlcache budget max-total::100%25 over%0Aline two"
