"""On-device compiles: repeated compile copies in tmp/ and compile leftovers (one model's copies
are grouped by content; the newest copy stays)."""

from __future__ import annotations

from collections import defaultdict

from mlcache_audit.domain import (
    COMPILE_LEFTOVER,
    COMPILED_MODEL,
    EXECUTORCH_ASSET,
    SOURCE_MODEL,
    SPECIALIZATION,
    remedy_of,
)
from mlcache_audit.fingerprint import Fingerprints
from mlcache_audit.rules.model import (
    DAY,
    WHY_RESPECIALIZE,
    Finding,
    make_finding,
    newest,
    remedies_for,
)
from mlcache_audit.scan import Artifact
from mlcache_audit.units import iso_utc


def compile_findings(artifacts: list[Artifact], fp: Fingerprints) -> tuple[list[Finding], list[Artifact]]:
    """Findings, and the repeated compile copies (the evidence the re-specialization rule pairs with)."""
    findings = []
    copies: list[Artifact] = []
    by_content: dict[str, list[Artifact]] = defaultdict(list)
    for a in artifacts:
        if a.path in fp.content:
            by_content[fp.content[a.path]].append(a)
    persistent_contents = {fp.content[a.path] for a in artifacts
                           if a.kind in (COMPILED_MODEL, SOURCE_MODEL, EXECUTORCH_ASSET) and a.path in fp.content}
    specializations = [a for a in artifacts if a.kind == SPECIALIZATION]
    handled: set[str] = set()
    for digest, group in sorted(by_content.items(), key=lambda kv: kv[1][0].path):
        leftovers = [a for a in group if a.kind == COMPILE_LEFTOVER and a.detail.get("bundle")]
        if len(leftovers) < 2:
            continue
        copies += leftovers
        keep = None if digest in persistent_contents else newest(leftovers)
        reclaim = [a for a in leftovers if a is not keep]
        handled.update(a.path for a in leftovers)
        producer = _most_common(a.producer for a in leftovers)
        first = min(a.oldest_mtime or 0 for a in leftovers)
        last = max(a.newest_mtime or 0 for a in leftovers)
        span_days = (last - first) / DAY
        total = sum(a.bytes for a in leftovers)
        pids = {a.detail["pid"] for a in leftovers if "pid" in a.detail}
        during = [s for s in specializations if s.newest_mtime and first - 3600 <= s.newest_mtime <= last + 3600]
        evidence = {
            "copies": len(leftovers), "producer": producer or "an on-device compile",
            "model": leftovers[0].model.get("class_name"),
            "bytes_per_copy": leftovers[0].bytes, "total_bytes": total,
            "first_seen": iso_utc(first or None), "last_seen": iso_utc(last or None), "span_days": round(span_days, 2),
            "bytes_per_day": round(total / span_days) if span_days >= 1 / 24 else None,
            "launches": len(pids) or None,
            "bytes_per_launch": round(total / len(pids)) if pids else None,
            "specializations_in_span": len(during),
            "kept": keep.path if keep else None,
        }
        days = f" over {span_days:.1f} days" if span_days >= 1 / 24 else ""
        launches = f" in {len(pids)} launches" if pids else ""
        findings.append(make_finding(
            "repeated-compile", leftovers + during, reclaim,
            f"{producer or 'an on-device compile'} compiled one model {len(leftovers)} times{days}{launches}; "
            f"{len(during)} specializations were made in the same span",
            evidence, explanation=WHY_RESPECIALIZE, remedy=remedy_of(producer)))
    rest = [a for a in artifacts if a.kind == COMPILE_LEFTOVER and a.path not in handled]
    if rest:
        reclaim = []
        groups: dict[str, list[Artifact]] = defaultdict(list)
        for a in rest:
            if a.detail.get("leftover") == "trash":
                reclaim.append(a)  # ExecuTorch's own trash: already replaced
            elif a.path in fp.content:
                groups[fp.content[a.path]].append(a)
            else:
                groups["unique:" + a.path].append(a)
        for digest, group in groups.items():
            keep = None if digest in persistent_contents else newest(group)
            reclaim.extend(a for a in group if a is not keep)
        kept = len(rest) - len(reclaim)
        findings.append(make_finding(
            "tmp-compile-leftover", rest, reclaim,
            f"{len(rest)} compile input(s) or output(s) left in tmp/"
            + (f"; the last copy of {kept} model(s) is kept" if kept else ""),
            {"items": len(rest), "kept": kept,
             "producers": sorted({a.producer for a in rest if a.producer})},
            explanation="Apple's contract for on-device compiles: the compiled model lands in a temporary "
                        "location and the app must move it to a permanent one. Files left in tmp/ are "
                        "deleted by the system only while the app is not running, and are recompiled next time.",
            remedy=remedies_for(a.producer for a in rest)))
    return findings, copies


def _most_common(values) -> str | None:
    counts: dict[str, int] = defaultdict(int)
    for v in values:
        if v:
            counts[v] += 1
    return max(counts, key=lambda k: (counts[k], k)) if counts else None
