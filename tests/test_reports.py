"""Reports people act on: verdict first, nothing cut when saved, HTML and Markdown whose numbers are
the JSON's, schemas for every document, PR-grade CI output, and the GitHub Action."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import build_fixtures as bf
import jsonschema
import pytest
import xmlschema
import yaml

from conftest import ROOT, run, scan_json, schema_of
from mlcache_audit.report.html import timeline_window

JUNIT = xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit-ant.xsd"))


# -- text -----------------------------------------------------------------------------------------
def test_verdict_comes_first_with_cause_and_next_command(built):
    out = run("scan", built["recompile"]).stdout
    verdict = out.index("Verdict: 23.6 MB can be freed.")
    assert verdict < out.index("Cause:") < out.index("Next:  mlcache clean") < out.index("Findings")
    assert "(repeated-compile)" in out[verdict:out.index("Findings")]


def test_identical_copies_are_collapsed_in_the_largest_list(built):
    out = run("scan", built["recompile"]).stdout
    assert "24 x 964.7 kB" in out and "24 copies, newest tmp/" in out


def test_off_a_terminal_nothing_is_cut(built):
    out = run("scan", built["coreai"]).stdout
    assert "…" not in out  # no shortened hashes
    long_path = next(a["path"] for a in scan_json(built["coreai"])["containers"][0]["artifacts"]
                     if a["kind"] == "specialization_partial")
    assert long_path in out  # whole, on one line


def test_every_path_of_a_finding_is_listed(built):
    out = run("scan", built["studio"]).stdout
    dup = out[out.index("(duplicate-persistent-model)"):out.index("(old-model-version)")]
    for p in ("Documents/Imported/parkinson_wave.mlmodelc", "Library/Application Support/parkinson_wave.mlmodelc",
              "Library/Application Support/Backup/Styler.mlmodelc", "Library/Application Support/models/v2/Styler.mlmodelc"):
        assert p in dup
    assert "(can go with --include-persistent)" in dup and "(kept)" in dup


def test_source_models_are_named_not_typed(built):
    out = run("scan", built["studio"]).stdout
    row = next(line for line in out.splitlines() if "SSDOcr.mlmodel" in line and "source_model" in line)
    assert "SSDOcr" in row.split("SSDOcr.mlmodel", 1)[1] and "neuralnetwork" not in row


def test_progress_says_when_coremltools_loads(built, monkeypatch):
    from mlcache_audit import models
    from mlcache_audit.audit import audit_path

    monkeypatch.setattr(models, "coremltools_loaded", lambda: False)
    stages = []
    audit_path(str(built["studio"]), hash_cache=False, progress=lambda stage, n: stages.append(stage))
    assert "loading coremltools to read a source model" in stages


# -- --output ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [("scan",), ("scan", "--format", "json"), ("scan", "--format", "markdown"),
                                  ("scan", "--format", "html"), ("clean",), ("clean", "--format", "json"),
                                  ("clean", "--format", "markdown"), ("clean", "--format", "html"), ("snapshot",),
                                  ("check", "--max-total", "1GB"), ("check", "--max-total", "1GB", "--format", "json"),
                                  ("check", "--max-total", "1GB", "--format", "markdown")])
def test_output_writes_the_document_to_a_file(args, built, tmp_path):
    out = tmp_path / "report"
    result = run(args[0], built["recompile"], *args[1:], "--output", out)
    assert result.exit_code == 0 and result.stdout == ""
    text = out.read_text()
    assert text.strip() and "…" not in text
    if "json" in args or args[0] == "snapshot":
        json.loads(text)


def test_diff_output_and_snapshot_short_option(built, tmp_path):
    snap = tmp_path / "s.json"
    assert run("snapshot", built["healthy"], "-o", snap).exit_code == 0
    result = run("diff", snap, built["healthy"], "--output", tmp_path / "d.txt")
    assert result.exit_code == 0 and "mlcache diff" in (tmp_path / "d.txt").read_text()


# -- HTML ------------------------------------------------------------------------------------------
class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _page(html: str) -> _Page:
    p = _Page()
    p.feed(html)
    return p


@pytest.mark.parametrize("key", ["recompile", "studio", "coreai", "simulator"])
def test_html_numbers_equal_the_json(key, built):
    doc = scan_json(built[key])
    html = run("scan", built[key], "--format", "html").stdout
    page = _page(html)
    sections = [a for t, a in page.tags if t == "section" and a.get("class") == "container"]
    verdicts = [a for t, a in page.tags if t == "div" and "data-reclaimable-bytes" in a and "verdict" in a.get("class", "")]
    assert len(sections) == len(verdicts) == len(doc["containers"])
    for c, v in zip(doc["containers"], verdicts, strict=True):
        assert int(v["data-reclaimable-bytes"]) == c["reclaimable_bytes"]
        assert int(v["data-total-bytes"]) == c["total_bytes"] and int(v["data-coreml-bytes"]) == c["coreml_bytes"]
    tiles = [a for t, a in page.tags if t == "g" and "data-bytes" in a]
    assert sum(int(a["data-bytes"]) for a in tiles) == sum(c["total_bytes"] for c in doc["containers"])
    days = [a for t, a in page.tags if t == "rect" and "data-date" in a]
    assert sum(int(a["data-bytes"]) for a in days) == \
        sum(d["bytes"] for c in doc["containers"] for d in timeline_window(c["timeline"]))
    findings = [a for t, a in page.tags if t == "div" and "data-rule" in a]
    assert [(a["data-rule"], int(a["data-reclaimable-bytes"])) for a in findings] == \
           [(f["rule"], f["reclaimable_bytes"]) for c in doc["containers"] for f in c["findings"]]


def test_html_is_self_contained(built):
    html = run("scan", built["recompile"], "--format", "html").stdout
    page = _page(html)
    assert not [a for t, a in page.tags if t in ("link", "img", "iframe") or (t == "script" and "src" in a)]
    assert "http://" not in html and "https://" not in html.replace("https://json-schema.org", "")
    assert '<table class="sortable stack">' in html and "<svg class=treemap" in html and "<svg class=timeline" in html


def test_clean_html_and_markdown_preview(built):
    html = run("clean", built["recompile"], "--format", "html").stdout
    rows = [a for t, a in _page(html).tags if t == "td" and "data-bytes" in a]
    plan = json.loads(run("clean", built["recompile"], "--format", "json").stdout)
    assert sum(int(a["data-bytes"]) for a in rows) == plan["containers"][0]["reclaimable_bytes"]
    md = run("clean", built["recompile"], "--format", "markdown").stdout
    assert md.startswith("# mlcache clean of") and "**Would free 23.6 MB.**" in md


def test_scan_markdown_for_a_ticket(built):
    md = run("scan", built["recompile"], "--format", "markdown").stdout
    assert md.startswith("# mlcache scan of")
    assert "**Verdict: 23.6 MB can be freed.**" in md and "| high | `repeated-compile` | 22.2 MB |" in md


# -- schemas ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["scan", "plan", "apply", "restore", "snapshot", "diff", "check", "watch"])
def test_schema_command_prints_a_valid_draft_2020_12_schema(name):
    result = run("schema", name)
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == schema_of(name)


def test_every_document_validates(built, tmp_path):
    """The conftest runner validates every JSON it sees; this walks each document kind once."""
    r = built["recompile"]
    run("scan", r, "--format", "json")
    run("clean", r, "--format", "json")
    run("snapshot", r, "-o", tmp_path / "s.json")
    json.loads((tmp_path / "s.json").read_text())
    run("diff", tmp_path / "s.json", r, "--format", "json")
    run("check", r, "--max-total", "1MB", "--fail-on", "repeated-compile", "--format", "json")
    copy = tmp_path / "copy"
    shutil.copytree(r, copy, symlinks=True)
    run("clean", copy, "--apply", "--yes", "--format", "json", "--quarantine", tmp_path / "q")
    run("restore", tmp_path / "q", "--format", "json")
    for path in (tmp_path / "s.json",):
        jsonschema.validate(json.loads(path.read_text()), schema_of("snapshot"))


# -- CI --------------------------------------------------------------------------------------------
def test_fail_on_a_kept_last_copy_does_not_fail_the_build(fx):
    root = fx("recompile")
    assert run("clean", root, "--apply", "--yes").exit_code == 0
    doc = scan_json(root)
    leftover = next(f for f in doc["containers"][0]["findings"] if f["rule"] == "tmp-compile-leftover")
    assert leftover["reclaimable_bytes"] == 0  # the last copy, kept
    assert run("check", root, "--fail-on", "tmp-compile-leftover").exit_code == 0


def test_fail_on_with_a_baseline_fails_only_when_the_finding_grew(fx, tmp_path):
    root = fx("recompile")
    base = tmp_path / "base.json"
    run("snapshot", root, "-o", base)
    assert run("check", root, "--baseline", base, "--fail-on", "repeated-compile").exit_code == 0
    for i in range(2):
        name = bf.gus(700 + i, 7000 + i)
        bf.copy_bundle(bf.PARKINSON, root / "tmp" / f"{name}.mlmodelc", bf.T0 + 40 * bf.DAY + i * bf.HOUR)
    assert run("check", root, "--baseline", base, "--fail-on", "repeated-compile").exit_code == 1


def test_junit_has_a_suite_per_container_and_one_for_totals(built, tmp_path):
    junit = tmp_path / "j.xml"
    result = run("check", built["simulator"], "--max-total", "1GB", "--max-copies", "1", "--fail-on",
                 "repeated-compile", "--junit", junit)
    assert result.exit_code == 1
    JUNIT.validate(str(junit))
    xml = junit.read_text()
    assert 'name="mlcache budgets: totals"' in xml
    assert 'name="mlcache budgets: com.example.simleak"' in xml and 'name="mlcache budgets: com.example.simcalm"' in xml


def test_junit_escapes_characters_xml_forbids():
    from mlcache_audit.report.junit import check_junit

    doc = {"path": "/p\x01", "notes": ["note\x0b"], "budgets": [{
        "name": "max-total", "scope": "total", "passed": False, "actual": 2, "limit": 1, "unit": "bytes",
        "message": "bad \x00 byte", "findings": [{"rule": "repeated-compile", "summary": "x\x1f", "remedy": "y"}]}]}
    xml = check_junit(doc)
    assert "\x00" not in xml and "\x01" not in xml and "\x0b" not in xml and "\x1f" not in xml
    JUNIT.validate(xml)


def test_a_check_that_cannot_run_still_writes_a_junit_error(tmp_path):
    junit = tmp_path / "j.xml"
    result = run("check", tmp_path / "missing", "--max-total", "1MB", "--junit", junit)
    assert result.exit_code == 2
    JUNIT.validate(str(junit))
    assert "<error" in junit.read_text() and 'errors="1"' in junit.read_text()


def test_check_refuses_a_baseline_of_another_app_and_warns_when_allowed(built, tmp_path):
    base = tmp_path / "b.json"
    run("snapshot", built["healthy"], "-o", base)
    result = run("check", built["recompile"], "--baseline", base, "--max-growth", "1GB")
    assert result.exit_code == 2 and "the baseline is of another app" in result.stderr
    result = run("check", built["recompile"], "--baseline", base, "--max-growth", "1GB", "--allow-other-app")
    assert result.exit_code == 0 and "the baseline is of another app" in result.stdout


def test_config_is_found_upward_and_named_with_relative_baseline(built, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "ios" / "deep").mkdir(parents=True)
    (project / "ci").mkdir()
    run("snapshot", built["healthy"], "-o", project / "ci" / "baseline.json")
    (project / "mlcache.toml").write_text('baseline = "ci/baseline.json"\nmax-growth = "1GB"\n')
    monkeypatch.chdir(project / "ios" / "deep")
    result = run("check", built["healthy"], "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["config"] == str(project / "mlcache.toml") and doc["baseline_totals"] is not None
    assert f"budgets from {project / 'mlcache.toml'}" in run("check", built["healthy"]).stdout


def test_diff_compares_one_app(built, tmp_path):
    multi = run("diff", built["simulator"], built["simulator"])
    assert multi.exit_code == 2 and "several apps" in multi.stderr and "--bundle-id" in multi.stderr
    one = json.loads(run("diff", built["simulator"], built["simulator"], "--bundle-id", "com.example.simleak",
                         "--format", "json").stdout)
    assert one["bundle_id"] == "com.example.simleak"
    assert all(r["delta_bytes"] == 0 for r in one["rows"])
    assert next(r for r in one["rows"] if r["name"] == "compile_leftover")["new_count"] == 3


def test_path_arguments_complete_as_files():
    from click.shell_completion import ShellComplete

    from mlcache_audit.cli import cli

    for args in (["scan"], ["clean"], ["check"], ["diff", "x"]):
        items = ShellComplete(cli, {}, "mlcache", "_MLCACHE_COMPLETE").get_completions(args, "fix")
        assert items and items[0].type in ("file", "dir"), args


# -- the GitHub Action -------------------------------------------------------------------------------
def test_action_yml_runs_its_shell_steps_with_its_inputs(fx, tmp_path):
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert {"path", "bundle-id", "config", "baseline", "max-total", "max-growth", "max-growth-pct", "max-copies",
            "fail-on", "launch", "launches", "max-growth-per-launch", "junit"} <= set(action["inputs"])
    assert not action["inputs"]["path"]["required"]  # no PATH on a macOS runner: its own caches
    assert {"passed", "ml-bytes", "reclaimable-bytes", "growth-bytes", "growth-per-launch-bytes"} <= set(action["outputs"])
    assert "no package index" not in action["description"]
    steps = action["runs"]["steps"]
    for s in steps:  # every action it uses is pinned to a commit, never a moving tag
        if "uses" in s:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", s["uses"]), s["uses"]
    probe, install, check = (s for s in steps if "run" in s)
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    outputs = tmp_path / "github-output"
    env = {**os.environ, "GITHUB_ACTION_PATH": str(ROOT), "PIP_NO_DEPS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "RUNNER_TEMP": str(runner_temp), "GITHUB_OUTPUT": str(outputs)}
    env.pop("PYTHONPATH", None)
    assert subprocess.run(["bash", "-c", probe["run"]], env=env, timeout=60).returncode == 0
    assert outputs.read_text().strip() == "ok=1"  # this Python is 3.11+: setup-python is skipped
    done = subprocess.run(["bash", "-c", install["run"]], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    venv = runner_temp / "mlcache-venv"
    assert (venv / "bin" / "mlcache").exists()  # in a venv of its own, never the runner's Python
    # The dependencies (click, rich, coremltools...) come from the test environment through a .pth line.
    site = next((venv / "lib").glob("python3*/site-packages"))
    outer = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "test-dependencies.pth").write_text(outer + "\n")

    def step(**inputs) -> subprocess.CompletedProcess:
        outputs.write_text("")
        step_env = dict(env)
        for name in action["inputs"]:
            value = inputs.get(name.replace("-", "_"), action["inputs"][name].get("default", ""))
            step_env[f"MLCACHE_INPUT_{name.upper().replace('-', '_')}"] = str(value)
        return subprocess.run(["bash", "-c", check["run"]], env=step_env, capture_output=True, text=True, timeout=300)

    def written() -> dict:
        return dict(line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line)

    root = fx("recompile")
    junit = tmp_path / "junit.xml"
    failed = step(path=root, max_total="1MB", fail_on="repeated-compile, stale-os-build", junit=junit)
    assert failed.returncode == 1, failed.stderr
    assert written()["passed"] == "false" and int(written()["ml-bytes"]) > 1_000_000
    JUNIT.validate(str(junit))
    assert "fail-on:repeated-compile" in junit.read_text() and "fail-on:stale-os-build" in junit.read_text()
    assert step(path=root, max_total="1GB").returncode == 0 and written()["passed"] == "true"
    assert step(path=root).returncode == 2  # no budget: a usage error, never "the cache grew"
    leak = tmp_path / "leak.sh"
    leak.write_text(f"mkdir -p {root}/Library/Caches/com.example.recompile/com.apple.e5rt.e5bundlecache/23A344/"
                    "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' | tr a-f A-F)/x.bundle && "
                    f"head -c 2000000 /dev/urandom > \"$(ls -td {root}/Library/Caches/com.example.recompile/"
                    "com.apple.e5rt.e5bundlecache/23A344/*/ | head -1)x.bundle/main.e5\"\n")
    gate = step(path=root, launch=f"bash {leak}", launches="3", max_growth_per_launch="100KB")
    assert gate.returncode == 1, gate.stderr
    assert int(written()["growth-per-launch-bytes"]) >= 2_000_000
    for name in action["inputs"]:  # every input is passed through the environment
        assert f"${{{{ inputs.{name} }}}}" in json.dumps(check["env"]) and "inputs." not in check["run"]


def test_a_path_has_one_fate_in_a_report(built):
    """A specialization a default rule reclaims is never "(kept)" in another finding that lists it."""
    import re

    md = run("scan", built["recompile"], "--format", "markdown").stdout
    fates: dict[str, set[str]] = {}
    for path, fate in re.findall(r"^- `([^`]+)` \(([^)]+)\)$", md, flags=re.M):
        fates.setdefault(path, set()).add(fate)
    assert fates and all(len(f) == 1 for f in fates.values()), {p: f for p, f in fates.items() if len(f) > 1}
    doc = json.loads(run("scan", built["recompile"], "--format", "json").stdout)
    c = doc["containers"][0]
    both = set(next(f for f in c["findings"] if f["rule"] == "repeated-compile")["paths"]) & \
        set(next(f for f in c["findings"] if f["rule"] == "redundant-specialization")["reclaimable_paths"])
    assert both and all(fates[p] == {"can go"} for p in both if p in fates)


def test_html_of_many_clients_starts_with_the_overview(built, tmp_path):
    out = tmp_path / "home.html"
    run("scan", "--home", built["home"], "--format", "html", "-o", out)
    page = out.read_text()
    assert page.index("class=overview") < page.index("class=container")
    assert page.count("class=client>") == len(json.loads(run("scan", "--home", built["home"], "--format",
                                                             "json").stdout)["containers"])
