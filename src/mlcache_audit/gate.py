"""CI support: compact snapshots of a scan, diffs between two, and budgets that fail a build.

The reports CI reads (JUnit, GitHub annotations and step summary, Markdown) are in report/."""

from __future__ import annotations

import os
import posixpath
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mlcache_audit import fsio
from mlcache_audit.audit import AuditResult
from mlcache_audit.docfields import MAX_CONFIG_BYTES, Fields, load_json, load_toml, read_document
from mlcache_audit.domain import COMPILE_LEFTOVER, COMPILED_MODEL, KINDS, MODEL_KINDS, RULES, SOURCE_MODEL
from mlcache_audit.errors import BudgetConfigError, DocumentInvalid, PathNotFound
from mlcache_audit.fsio import readable
from mlcache_audit.units import format_signed_size, format_size, parse_size

SNAPSHOT_SCHEMA = "mlcache.snapshot/2"
SNAPSHOT_SCHEMAS = ("mlcache.snapshot/1", SNAPSHOT_SCHEMA)  # baselines saved by earlier versions still read



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
            "bundle_id": ca.container.bundle_id, "client": ca.container.client, "form": ca.container.form,
            "source": ca.container.source, "findings": [_finding_brief(ca, f) for f in ca.diagnosis.findings],
            "total_bytes": ca.scan.total_bytes, "coreml_bytes": ca.scan.coreml_bytes,
            "reclaimable_bytes": ca.diagnosis.reclaimable_bytes,
            "not_observable": list(ca.container.not_observable),
            "max_copies": max_copies(ca), "kinds": kinds, "rules": rules,
        })
    return {"schema": SNAPSHOT_SCHEMA, "created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "path": audit.path, "containers": containers, "totals": _totals(containers)}


def merge_snapshots(snaps: list[dict], *, errors: list[dict] = (), notes: list[str] = ()) -> dict:
    """Several paths' snapshots as one: their containers together, totals over all; the PATHs that
    could not be read in `errors` and what was folded in `notes` (present only when there are any)."""
    containers = [c for s in snaps for c in s["containers"]]
    extra = {k: list(v) for k, v in (("errors", errors), ("notes", notes)) if v}
    return {"schema": SNAPSHOT_SCHEMA, "created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "path": ", ".join(s["path"] for s in snaps), "containers": containers, "totals": _totals(containers),
            **extra}


def _finding_brief(ca, f) -> dict:
    """What a CI annotation needs to name: the rule, the model, the producer, the fix."""
    by_path = {a.path: a for a in ca.scan.artifacts}
    concerned = [by_path[p] for p in f.paths if p in by_path]
    # Named from the finding's own evidence first (a repeated compile's producer is the framework that
    # compiled, not the cache its specializations went to), never from a tmp/ file's generated name.
    ev = f.evidence or {}
    model = ev.get("model") if isinstance(ev.get("model"), str) else None
    model = model or next((a.model.get("class_name") for a in concerned if a.model.get("class_name")), None) or \
        next((posixpath.basename(a.path) for a in concerned if a.kind in MODEL_KINDS and a.area != "tmp"), None)
    producer = ev.get("producer") if isinstance(ev.get("producer"), str) else None
    producer = producer or next((a.producer for a in concerned if a.producer), None)
    return {"rule": f.rule, "reclaimable_bytes": f.reclaimable_bytes, "paths": len(f.paths),
            "model": fsio.readable(model) if model else None, "producer": producer, "remedy": f.remedy,
            "summary": f.summary}


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
        doc = load_json(data, f"snapshot {readable(str(path))}")
    except DocumentInvalid as exc:
        raise BudgetConfigError(exc.message, hint="make one with `mlcache snapshot PATH -o FILE`") from None
    if not isinstance(doc, dict) or doc.get("schema") not in SNAPSHOT_SCHEMAS:
        raise BudgetConfigError(f"{path} is not an mlcache snapshot (expected schema {SNAPSHOT_SCHEMA})")
    f = Fields(str(path), lambda msg: BudgetConfigError(msg, hint="make a new one with `mlcache snapshot PATH -o FILE`"))
    f.text(doc, "path", "the snapshot")
    _check_counts(f, f.obj(doc.get("totals"), "totals"), "totals")
    for i, c in enumerate(f.seq(doc.get("containers"), "containers")):
        c = f.obj(c, f"containers[{i}]")
        f.text(c, "bundle_id", f"containers[{i}]", optional=True)
        f.text(c, "client", f"containers[{i}]", optional=True)
        _check_counts(f, c, f"containers[{i}]")
        for j, brief in enumerate(f.seq(c.get("findings", []), f"containers[{i}].findings")):
            brief = f.obj(brief, f"containers[{i}].findings[{j}]")
            f.text(brief, "rule", f"containers[{i}].findings[{j}]")
            f.integer(brief, "reclaimable_bytes", f"containers[{i}].findings[{j}]")
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
    return head.lstrip().startswith(b"{") and any(schema.encode() in head for schema in SNAPSHOT_SCHEMAS)


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


def select_app(doc: dict, bundle_id: str | None, side: str) -> dict:
    """The snapshot narrowed to one app. A snapshot of several apps needs --bundle-id: adding up
    every app of a simulator or a backup would compare nothing in particular."""
    apps = doc["containers"]
    if bundle_id is None:
        if len({c.get("bundle_id") or c.get("client") for c in apps}) > 1:
            names = ", ".join(sorted(str(c.get("bundle_id") or c.get("client")) for c in apps))
            raise BudgetConfigError(f"the {side} side holds several apps ({names})",
                                    hint="choose one with --bundle-id")
        return doc
    chosen = [c for c in apps if bundle_id in (c.get("bundle_id"), c.get("client"))]
    if not chosen:
        raise BudgetConfigError(f"the {side} side has no app {bundle_id}")
    return {**doc, "containers": chosen, "totals": _totals(chosen)}


def diff(old: dict, new: dict) -> list[DiffRow]:
    """Old, new and delta per artifact kind, then the Core ML and container totals."""
    o, n = old["totals"], new["totals"]
    rows = []
    for kind in KINDS:
        ok, nk = o["kinds"].get(kind, {}), n["kinds"].get(kind, {})
        if ok or nk:
            rows.append(DiffRow(kind, ok.get("bytes", 0), nk.get("bytes", 0), ok.get("count", 0), nk.get("count", 0)))
    rows.append(DiffRow("ML caches total", o["coreml_bytes"], n["coreml_bytes"],
                        sum(v["count"] for v in o["kinds"].values()), sum(v["count"] for v in n["kinds"].values())))
    rows.append(DiffRow("reclaimable", o["reclaimable_bytes"], n["reclaimable_bytes"], 0, 0))
    rows.append(DiffRow("container total", o["total_bytes"], n["total_bytes"], 0, 0))
    return rows


# -- budgets ------------------------------------------------------------------------------------
@dataclass
class Budgets:
    max_total: int | None = None
    max_growth: int | None = None
    max_growth_pct: float | None = None
    max_copies: int | None = None
    fail_on: list[str] = field(default_factory=list)
    baseline: Path | None = None
    allow_other_app: bool = False  # a baseline of another app is an error unless asked for

    def any(self) -> bool:
        return any(v is not None for v in (self.max_total, self.max_growth, self.max_growth_pct, self.max_copies)) \
            or bool(self.fail_on)


def load_config(explicit: Path | None, cwd: Path) -> tuple[dict, str | None]:
    """Budget settings from `--config`, else the nearest `mlcache.toml` (or `[tool.mlcache]` in a
    `pyproject.toml`) in the current folder or any folder above it. A relative `baseline` in the file
    is resolved against the file's folder, so CI and a developer's shell read the same file alike."""
    if explicit is not None:
        candidates = [explicit]
    else:
        candidates = [d / name for d in (cwd, *cwd.parents) for name in ("mlcache.toml", "pyproject.toml")]
    for path in candidates:
        if not path.is_file():
            if explicit is not None:
                raise PathNotFound(f"no such config file: {explicit}")
            continue
        try:
            doc = load_toml(read_document(path, "config file", MAX_CONFIG_BYTES), f"config file {readable(str(path))}")
        except DocumentInvalid as exc:
            raise BudgetConfigError(exc.message) from None
        section = doc.get("tool", {}).get("mlcache") if path.name == "pyproject.toml" else doc.get("tool", {}).get("mlcache", doc)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise BudgetConfigError(f"{path}: [tool.mlcache] must be a table")
        section = dict(section)
        if isinstance(section.get("baseline"), str) and section["baseline"] and not os.path.isabs(section["baseline"]):
            section["baseline"] = str(path.parent / section["baseline"])
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
    b.allow_other_app = bool(options.get("allow_other_app"))
    return b


@dataclass(frozen=True)
class BudgetResult:
    name: str
    passed: bool
    actual: int | float
    limit: int | float
    unit: str  # bytes | percent | copies | bytes reclaimable
    message: str
    scope: str = "total"  # "total", or the app (bundle id or client) a per-container budget is about
    findings: tuple[dict, ...] = ()  # the findings behind a failure: rule, model, producer, remedy


@dataclass(frozen=True)
class CheckResult:
    path: str
    results: tuple[BudgetResult, ...]
    snapshot: dict
    baseline: dict | None
    notes: tuple[str, ...]
    config: str | None = None
    errors: tuple[dict, ...] = ()  # PATHs of several that could not be read: nothing was checked there

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results) and not self.errors


def check(current: dict, budgets: Budgets, baseline: dict | None, config: str | None = None) -> CheckResult:
    """Totals budgets against the whole snapshot; copies and findings per container (one JUnit suite
    each). `--fail-on RULE` fails on a finding that reclaims bytes, or, with a baseline, one whose
    reclaimable bytes grew: a kept last copy (0 B) never fails a build."""
    t = current["totals"]
    out = []
    notes = list(current.get("notes", []))
    if t["not_observable"]:
        notes.append(f"not observable in this form: {', '.join(t['not_observable'])}; growth there cannot be checked")
    if baseline is not None and (other := other_app(baseline, current)):
        if not budgets.allow_other_app and not other.startswith("whether"):
            raise BudgetConfigError(other, hint="compare the same app's snapshots, or pass --allow-other-app")
        notes.append(other + ("" if other.startswith("whether") else ": growth compares different things"))
    coreml = t["coreml_bytes"]
    if budgets.max_total is not None:
        ok = coreml <= budgets.max_total
        out.append(BudgetResult("max-total", ok, coreml, budgets.max_total, "bytes",
                                f"ML caches use {format_size(coreml)}" + (" (within " if ok else ", over the budget of ")
                                + format_size(budgets.max_total) + (")" if ok else "")))
    if baseline is not None:
        old = baseline["totals"]["coreml_bytes"]
        growth = coreml - old
        if budgets.max_growth is not None:
            ok = growth <= budgets.max_growth
            out.append(BudgetResult("max-growth", ok, growth, budgets.max_growth, "bytes",
                                    f"ML caches grew by {format_signed_size(growth)} since the baseline "
                                    f"({format_size(old)} -> {format_size(coreml)}); budget {format_size(budgets.max_growth)}",
                                    findings=_grown(current, baseline) if not ok else ()))
        if budgets.max_growth_pct is not None:
            pct = (growth / old * 100) if old else (0.0 if growth <= 0 else 1e9)
            ok = pct <= budgets.max_growth_pct
            out.append(BudgetResult("max-growth-pct", ok, round(pct, 3), budgets.max_growth_pct, "percent",
                                    f"ML caches grew by {pct:+.1f}% since the baseline; budget {budgets.max_growth_pct:g}%",
                                    findings=_grown(current, baseline) if not ok else ()))
    old_rules = _rules_by_app(baseline) if baseline is not None else {}
    for c in current["containers"]:
        app = str(c.get("bundle_id") or c.get("client") or "unknown app")
        if budgets.max_copies is not None:
            ok = c["max_copies"] <= budgets.max_copies
            out.append(BudgetResult("max-copies", ok, c["max_copies"], budgets.max_copies, "copies",
                                    f"{app}: the most copies of one model is {c['max_copies']}; budget {budgets.max_copies}",
                                    scope=app, findings=() if ok else tuple(
                                        b for b in c.get("findings", []) if b["rule"] == "repeated-compile")))
        for rule in budgets.fail_on:
            briefs = [b for b in c.get("findings", []) if b["rule"] == rule]
            now = sum(b["reclaimable_bytes"] for b in briefs)
            before = old_rules.get(app, {}).get(rule, 0) if baseline is not None else None
            failing = now > 0 and (before is None or now > before)
            why = ("absent" if not briefs else f"found, {format_size(now)} reclaimable"
                   + (f" (was {format_size(before)} in the baseline)" if before is not None else ""))
            out.append(BudgetResult(f"fail-on:{rule}", not failing, now, before or 0, "bytes reclaimable",
                                    f"{app}: {rule}: {why}", scope=app, findings=tuple(briefs) if failing else ()))
    return CheckResult(current["path"], tuple(out), current, baseline, tuple(notes), config,
                       tuple(current.get("errors", [])))


def other_app(old: dict, new: dict) -> str | None:
    """Why two snapshots are not of the same app (bundle ids, else clients), or None when they are;
    a side whose container names neither gets a warning that it cannot be told."""
    then_apps = {c.get("bundle_id") or c.get("client") for c in old["containers"]}
    now_apps = {c.get("bundle_id") or c.get("client") for c in new["containers"]}
    if None in now_apps or None in then_apps:
        return ("whether the baseline is of the same app cannot be told (a container names no bundle id or "
                "client); growth may compare different things")
    if now_apps != then_apps:
        return (f"the baseline is of another app ({', '.join(sorted(map(str, then_apps)))}; now "
                f"{', '.join(sorted(map(str, now_apps)))})")
    return None


def _rules_by_app(doc: dict) -> dict[str, dict[str, int]]:
    return {str(c.get("bundle_id") or c.get("client") or "unknown app"):
            {r: v["reclaimable_bytes"] for r, v in c["rules"].items()} for c in doc["containers"]}


def _grown(current: dict, baseline: dict) -> tuple[dict, ...]:
    """The findings whose reclaimable bytes grew since the baseline: what is behind the growth."""
    before = _rules_by_app(baseline)
    out = []
    for c in current["containers"]:
        app = str(c.get("bundle_id") or c.get("client") or "unknown app")
        for b in c.get("findings", []):
            if b["reclaimable_bytes"] > before.get(app, {}).get(b["rule"], 0):
                out.append(b)
    return tuple(sorted(out, key=lambda b: -b["reclaimable_bytes"]))


