"""CI support: compact snapshots of a scan, diffs between two, and budgets that fail a build."""

from __future__ import annotations

import json
import os
import socket
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

from mlcache_audit import fsio
from mlcache_audit.audit import AuditResult
from mlcache_audit.docfields import Fields, append_output, read_document
from mlcache_audit.domain import COMPILE_LEFTOVER, COMPILED_MODEL, KINDS, RULES, SOURCE_MODEL
from mlcache_audit.errors import BudgetConfigError, PathNotFound
from mlcache_audit.units import format_signed_size, format_size, parse_size

SNAPSHOT_SCHEMA = "mlcache.snapshot/1"
CHECK_SCHEMA = "mlcache.check/1"


# -- snapshots ----------------------------------------------------------------------------------
def snapshot(audit: AuditResult) -> dict:
    """Bytes and counts per kind and per rule, per container and in total: enough to compare later."""
    containers = []
    for ca in audit.containers:
        kinds: dict[str, dict[str, int]] = {}
        for a in ca.scan.artifacts:
            k = kinds.setdefault(a.kind, {"bytes": 0, "count": 0})
            k["bytes"] += a.bytes
            k["count"] += 1
        rules = {f.rule: {"reclaimable_bytes": f.reclaimable_bytes, "paths": len(f.paths)}
                 for f in ca.diagnosis.findings}
        containers.append({
            "bundle_id": ca.container.bundle_id, "form": ca.container.form, "source": ca.container.source,
            "total_bytes": ca.scan.total_bytes, "coreml_bytes": ca.scan.coreml_bytes,
            "reclaimable_bytes": ca.diagnosis.reclaimable_bytes,
            "not_observable": list(ca.container.not_observable),
            "max_copies": max_copies(ca), "kinds": kinds, "rules": rules,
        })
    return {"schema": SNAPSHOT_SCHEMA, "created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "path": audit.path, "containers": containers, "totals": _totals(containers)}


def max_copies(ca) -> int:
    """The most copies of one model (same content) among compiled bundles, leftovers and sources."""
    counts: dict[str, int] = defaultdict(int)
    for a in ca.scan.artifacts:
        if a.kind in (COMPILED_MODEL, COMPILE_LEFTOVER, SOURCE_MODEL):
            digest = ca.fingerprints.content.get(a.path)
            counts[digest or ("unique:" + a.path)] += 1
    return max(counts.values(), default=0)


def _totals(containers: list[dict]) -> dict:
    kinds: dict[str, dict[str, int]] = {}
    for c in containers:
        for k, v in c["kinds"].items():
            t = kinds.setdefault(k, {"bytes": 0, "count": 0})
            t["bytes"] += v["bytes"]
            t["count"] += v["count"]
    rules: dict[str, dict[str, int]] = {}
    for c in containers:
        for r, v in c["rules"].items():
            t = rules.setdefault(r, {"reclaimable_bytes": 0, "paths": 0})
            t["reclaimable_bytes"] += v["reclaimable_bytes"]
            t["paths"] += v["paths"]
    return {
        "total_bytes": sum(c["total_bytes"] for c in containers),
        "coreml_bytes": sum(c["coreml_bytes"] for c in containers),
        "reclaimable_bytes": sum(c["reclaimable_bytes"] for c in containers),
        "max_copies": max((c["max_copies"] for c in containers), default=0),
        "not_observable": sorted({a for c in containers for a in c["not_observable"]}),
        "kinds": kinds, "rules": rules,
    }


def load_snapshot(path: Path) -> dict:
    """A snapshot file, every field the diff and the budgets read type- and range-checked; a damaged
    one is exit 2 naming the field, never "the cache grew"."""
    data = read_document(path, "snapshot")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BudgetConfigError(f"{path} is not a readable snapshot ({exc.__class__.__name__})",
                                hint="make one with `mlcache snapshot PATH -o FILE`") from None
    if not isinstance(doc, dict) or doc.get("schema") != SNAPSHOT_SCHEMA:
        raise BudgetConfigError(f"{path} is not an mlcache snapshot (expected schema {SNAPSHOT_SCHEMA})")
    f = Fields(str(path), lambda msg: BudgetConfigError(msg, hint="make a new one with `mlcache snapshot PATH -o FILE`"))
    f.text(doc, "path", "the snapshot")
    _check_counts(f, f.obj(doc.get("totals"), "totals"), "totals")
    for i, c in enumerate(f.seq(doc.get("containers"), "containers")):
        c = f.obj(c, f"containers[{i}]")
        f.text(c, "bundle_id", f"containers[{i}]", optional=True)
        _check_counts(f, c, f"containers[{i}]")
    return doc


def _check_counts(f: Fields, d: dict, where: str) -> None:
    for key in ("total_bytes", "coreml_bytes", "reclaimable_bytes", "max_copies"):
        f.integer(d, key, where)
    f.texts(d, "not_observable", where)
    for name, v in f.obj(d.get("kinds"), f"{where}.kinds").items():
        v = f.obj(v, f"{where}.kinds.{name}")
        f.integer(v, "bytes", f"{where}.kinds.{name}")
        f.integer(v, "count", f"{where}.kinds.{name}")
    for name, v in f.obj(d.get("rules"), f"{where}.rules").items():
        v = f.obj(v, f"{where}.rules.{name}")
        f.integer(v, "reclaimable_bytes", f"{where}.rules.{name}")
        f.integer(v, "paths", f"{where}.rules.{name}")


def is_snapshot_file(path: Path) -> bool:
    try:
        head = fsio.read_regular(str(path), 256)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and SNAPSHOT_SCHEMA.encode() in head


# -- diff ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiffRow:
    name: str
    old_bytes: int
    new_bytes: int
    old_count: int
    new_count: int

    @property
    def delta_bytes(self) -> int:
        return self.new_bytes - self.old_bytes


def diff(old: dict, new: dict) -> list[DiffRow]:
    """Old, new and delta per artifact kind, then the Core ML and container totals."""
    o, n = old["totals"], new["totals"]
    rows = []
    for kind in KINDS:
        ok, nk = o["kinds"].get(kind, {}), n["kinds"].get(kind, {})
        if ok or nk:
            rows.append(DiffRow(kind, ok.get("bytes", 0), nk.get("bytes", 0), ok.get("count", 0), nk.get("count", 0)))
    rows.append(DiffRow("coreml total", o["coreml_bytes"], n["coreml_bytes"],
                        sum(v["count"] for v in o["kinds"].values()), sum(v["count"] for v in n["kinds"].values())))
    rows.append(DiffRow("reclaimable", o["reclaimable_bytes"], n["reclaimable_bytes"], 0, 0))
    rows.append(DiffRow("container total", o["total_bytes"], n["total_bytes"], 0, 0))
    return rows


def diff_dict(old: dict, new: dict) -> dict:
    return {"schema": "mlcache.diff/1", "old": old.get("path"), "new": new.get("path"),
            "rows": [{"name": r.name, "old_bytes": r.old_bytes, "new_bytes": r.new_bytes,
                      "delta_bytes": r.delta_bytes, "old_count": r.old_count, "new_count": r.new_count}
                     for r in diff(old, new)]}


# -- budgets ------------------------------------------------------------------------------------
@dataclass
class Budgets:
    max_total: int | None = None
    max_growth: int | None = None
    max_growth_pct: float | None = None
    max_copies: int | None = None
    fail_on: list[str] = field(default_factory=list)
    baseline: Path | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.max_total, self.max_growth, self.max_growth_pct, self.max_copies)) \
            or bool(self.fail_on)


def load_config(explicit: Path | None, cwd: Path) -> tuple[dict, str | None]:
    """Budget settings from `--config`, else `mlcache.toml`, else `[tool.mlcache]` in pyproject.toml."""
    candidates = [explicit] if explicit else [cwd / "mlcache.toml", cwd / "pyproject.toml"]
    for path in candidates:
        if path is None or not path.is_file():
            if explicit:
                raise PathNotFound(f"no such config file: {explicit}")
            continue
        try:
            doc = tomllib.loads(read_document(path, "config file").decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BudgetConfigError(f"{path} is not valid TOML ({exc})") from None
        section = doc.get("tool", {}).get("mlcache") if path.name == "pyproject.toml" else doc.get("tool", {}).get("mlcache", doc)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise BudgetConfigError(f"{path}: [tool.mlcache] must be a table")
        return section, str(path)
    return {}, None


def budgets_from(config: dict, **options) -> Budgets:
    """Options given on the command line win over the config file's."""
    known = {"max-total", "max-growth", "max-growth-pct", "max-copies", "fail-on", "baseline"}
    unknown = set(config) - known
    if unknown:
        raise BudgetConfigError(f"unknown mlcache setting(s): {', '.join(sorted(unknown))}",
                                hint="known: " + ", ".join(sorted(known)))

    for key in ("max-total", "max-growth"):
        if key in config and (isinstance(config[key], bool) or not isinstance(config[key], int | str)):
            raise BudgetConfigError(f"{key} must be a size such as 500KB or a number of bytes, not {config[key]!r}")

    def pick(opt: str, key: str):
        return options.get(opt) if options.get(opt) not in (None, (), []) else config.get(key)

    b = Budgets()
    if (v := pick("max_total", "max-total")) is not None:
        b.max_total = parse_size(v)
    if (v := pick("max_growth", "max-growth")) is not None:
        b.max_growth = parse_size(v)
    if (v := pick("max_growth_pct", "max-growth-pct")) is not None:
        b.max_growth_pct = Fields("budgets", BudgetConfigError).number(v, "max-growth-pct", high=1e9)
    if (v := pick("max_copies", "max-copies")) is not None:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise BudgetConfigError(f"max-copies must be a whole number, not {v!r}")
        b.max_copies = v
    fail_on = pick("fail_on", "fail-on") or []
    if isinstance(fail_on, str):
        fail_on = [fail_on]
    if not isinstance(fail_on, list | tuple) or not all(isinstance(r, str) for r in fail_on):
        raise BudgetConfigError(f"fail-on must be a rule name or a list of them, not {fail_on!r}")
    bad = [r for r in fail_on if r not in RULES]
    if bad:
        raise BudgetConfigError(f"unknown rule(s) for fail-on: {', '.join(bad)}", hint="rules are: " + ", ".join(RULES))
    b.fail_on = list(fail_on)
    if (v := pick("baseline", "baseline")) is not None:
        if not isinstance(v, str | Path) or str(v) == "":
            raise BudgetConfigError(f"baseline must be a file name, not {v!r}")
        b.baseline = Path(v)
    if (b.max_growth is not None or b.max_growth_pct is not None) and b.baseline is None:
        raise BudgetConfigError("--max-growth and --max-growth-pct need --baseline FILE",
                                hint="make a baseline with `mlcache snapshot PATH -o baseline.json`")
    return b


@dataclass(frozen=True)
class BudgetResult:
    name: str
    passed: bool
    actual: str
    limit: str
    message: str


@dataclass(frozen=True)
class CheckResult:
    path: str
    results: tuple[BudgetResult, ...]
    snapshot: dict
    baseline: dict | None
    notes: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_dict(self) -> dict:
        return {"schema": CHECK_SCHEMA, "path": self.path, "passed": self.passed,
                "budgets": [r.__dict__ for r in self.results], "notes": list(self.notes),
                "totals": self.snapshot["totals"],
                "baseline_totals": self.baseline["totals"] if self.baseline else None}


def check(current: dict, budgets: Budgets, baseline: dict | None) -> CheckResult:
    """Each budget against the current snapshot (and the baseline for growth)."""
    t = current["totals"]
    out = []
    notes = []
    if t["not_observable"]:
        notes.append(f"not observable in this form: {', '.join(t['not_observable'])}; growth there cannot be checked")
    coreml = t["coreml_bytes"]
    if budgets.max_total is not None:
        ok = coreml <= budgets.max_total
        out.append(BudgetResult("max-total", ok, format_size(coreml), format_size(budgets.max_total),
                                f"Core ML uses {format_size(coreml)}" + (" (within " if ok else ", over the budget of ")
                                + format_size(budgets.max_total) + (")" if ok else "")))
    if baseline is not None:
        old = baseline["totals"]["coreml_bytes"]
        growth = coreml - old
        if budgets.max_growth is not None:
            ok = growth <= budgets.max_growth
            out.append(BudgetResult("max-growth", ok, format_signed_size(growth), format_size(budgets.max_growth),
                                    f"Core ML grew by {format_signed_size(growth)} since the baseline "
                                    f"({format_size(old)} -> {format_size(coreml)}); budget {format_size(budgets.max_growth)}"))
        if budgets.max_growth_pct is not None:
            pct = (growth / old * 100) if old else (0.0 if growth <= 0 else float("inf"))
            ok = pct <= budgets.max_growth_pct
            out.append(BudgetResult("max-growth-pct", ok, f"{pct:+.1f}%", f"{budgets.max_growth_pct:g}%",
                                    f"Core ML grew by {pct:+.1f}% since the baseline; budget {budgets.max_growth_pct:g}%"))
    if budgets.max_copies is not None:
        copies = t["max_copies"]
        ok = copies <= budgets.max_copies
        out.append(BudgetResult("max-copies", ok, str(copies), str(budgets.max_copies),
                                f"the most copies of one model is {copies}; budget {budgets.max_copies}"))
    for rule in budgets.fail_on:
        hit = t["rules"].get(rule)
        ok = not hit
        out.append(BudgetResult(f"fail-on:{rule}", ok, "found" if hit else "absent", "absent",
                                f"{rule}: " + (f"found ({hit['paths']} paths, {format_size(hit['reclaimable_bytes'])} "
                                               "reclaimable)" if hit else "not found")))
    return CheckResult(current["path"], tuple(out), current, baseline, tuple(notes))


# -- CI reports ---------------------------------------------------------------------------------
def junit_xml(result: CheckResult) -> str:
    """One testcase per budget, <failure> on breach, in the Ant JUnit shape that Jenkins, GitLab,
    Azure and the GitHub test-report actions read (strict: properties, system-out and system-err
    present, no attributes on <testsuites>)."""
    failures = sum(not r.passed for r in result.results)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name="mlcache budgets", package="mlcache", id="0",
                          timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                          hostname=socket.gethostname() or "localhost", tests=str(len(result.results)),
                          failures=str(failures), errors="0", skipped="0", time="0")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="path", value=result.path)
    for r in result.results:
        case = ET.SubElement(suite, "testcase", classname="mlcache.budget", name=r.name, time="0")
        if not r.passed:
            failure = ET.SubElement(case, "failure", message=r.message, type="BudgetExceeded")
            failure.text = f"{r.name}: actual {r.actual}, limit {r.limit}\n{r.message}"
    ET.SubElement(suite, "system-out").text = "\n".join(result.notes)
    ET.SubElement(suite, "system-err").text = ""
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(result: CheckResult) -> list[str]:
    """One `::error` line per exceeded budget (not per file: GitHub shows only a few per step)."""
    return [f"::error title={_escape_property('mlcache budget ' + r.name)}::{_escape_data(r.message)}"
            for r in result.results if not r.passed]


def markdown_summary(result: CheckResult) -> str:
    lines = [f"### mlcache check: {'passed' if result.passed else 'failed'}", "",
             "| budget | result | actual | limit |", "|---|---|---|---|"]
    for r in result.results:
        lines.append(f"| {r.name} | {'pass' if r.passed else '**FAIL**'} | {r.actual} | {r.limit} |")
    t = result.snapshot["totals"]
    lines += ["", f"Core ML: {format_size(t['coreml_bytes'])} of {format_size(t['total_bytes'])}; "
                  f"reclaimable: {format_size(t['reclaimable_bytes'])}; most copies of one model: {t['max_copies']}."]
    lines += [f"> {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def write_github_summary(result: CheckResult) -> None:
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        append_output(target, markdown_summary(result))
