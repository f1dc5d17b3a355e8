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
    link,
    make_finding,
    remedies_for,
)
from mlcache_audit.rules.units import unit_of
from mlcache_audit.scan import Artifact
from mlcache_audit.units import iso_utc


def compile_findings(artifacts: list[Artifact], fp: Fingerprints) -> tuple[list[Finding], list[list[Artifact]]]:
    """Findings, and the repeated compile copies, one list per model (the evidence the
    re-specialization rule pairs with: one model's copies speak only for that model's entries).

    Compile leftovers are judged as units (rules/units.py): a TFLite spec with its bundle, PyTorch's
    `<sha256>` set. A unit is one model's copy when its bundle's content (or, with no bundle, its
    own) matches another unit's; the newest unit of a model stays whole. PyTorch's set is its live
    cache while its .mlmodelc exists (it is reused, never recompiled), so it is reported, never
    reclaimed; a set whose .mlmodelc is gone is reported too (0 B: its spec is recompiled from)."""
    findings = []
    copies: list[list[Artifact]] = []
    leftovers = [a for a in artifacts if a.kind == COMPILE_LEFTOVER]
    by_unit: dict[str, list[Artifact]] = defaultdict(list)
    for a in leftovers:
        by_unit[unit_of(a).key].append(a)
    persistent = {fp.content[a.path]: a.path for a in sorted(artifacts, key=lambda x: x.path, reverse=True)
                  if a.kind in (COMPILED_MODEL, SOURCE_MODEL, EXECUTORCH_ASSET) and a.path in fp.content}
    specializations = [a for a in artifacts if a.kind == SPECIALIZATION]
    torch_sets = {k: m for k, m in by_unit.items() if k.startswith("pytorch:")}
    units = {k: m for k, m in by_unit.items() if k not in torch_sets}
    by_model: dict[str, list[str]] = defaultdict(list)  # model identity -> unit keys
    for key, members in units.items():
        by_model[_identity(members, fp)].append(key)
    handled: set[str] = set()
    for digest, keys in sorted(by_model.items(), key=lambda kv: min(kv[1])):
        bundles = [_bundle(units[k]) for k in keys]
        if digest.startswith("unique:") or len(keys) < 2 or any(b is None for b in bundles):
            continue
        copies.append(bundles)
        keep = None if digest in persistent else max(keys, key=lambda k: _newest_time(units[k]))
        kept = _bundle(units[keep]) if keep else None
        reclaim = [a for k in keys if k != keep for a in units[k]]
        handled.update(a.path for k in keys for a in units[k])
        producer = _most_common(a.producer for a in bundles)
        first = min(a.oldest_mtime or 0 for a in bundles)
        last = max(a.newest_mtime or 0 for a in bundles)
        span_days = (last - first) / DAY
        total = sum(a.bytes for k in keys for a in units[k])
        pids = {a.detail["pid"] for a in bundles if "pid" in a.detail}
        during = [s for s in specializations if s.newest_mtime and first - 3600 <= s.newest_mtime <= last + 3600]
        evidence = {
            "copies": len(bundles), "producer": producer or "an on-device compile",
            "model": bundles[0].model.get("class_name"),
            "bytes_per_copy": bundles[0].bytes, "total_bytes": total,
            "first_seen": iso_utc(first or None), "last_seen": iso_utc(last or None), "span_days": round(span_days, 2),
            "bytes_per_day": round(total / span_days) if span_days >= 1 / 24 else None,
            "launches": len(pids) or None,
            "bytes_per_launch": round(total / len(pids)) if pids else None,
            "specializations_in_span": len(during),
            "kept": kept.path if kept else None,
        }
        days = f" over {span_days:.1f} days" if span_days >= 1 / 24 else ""
        launches = f" in {len(pids)} launches" if pids else ""
        same = persistent[digest] if kept is None else kept.path
        findings.append(make_finding(
            "repeated-compile", [a for k in keys for a in units[k]] + during, reclaim,
            f"{producer or 'an on-device compile'} compiled one model {len(bundles)} times{days}{launches}; "
            f"{len(during)} specializations were made in the same span",
            evidence, explanation=WHY_RESPECIALIZE, remedy=remedy_of(producer),
            links={a.path: _copy_link(a, digest, same) for k in keys if k != keep for a in units[k]}))
    rest = {k: m for k, m in units.items() if not any(a.path in handled for a in m)}
    reclaim: list[Artifact] = []
    links: dict[str, dict] = {}
    groups: dict[str, list[str]] = defaultdict(list)
    for key, members in rest.items():
        if all(a.detail.get("leftover") == "trash" for a in members):
            reclaim += members  # ExecuTorch's own trash: already replaced
            links.update({a.path: link("in ExecuTorch's trash folder (replaced assets)", {"unit": key},
                                       folder="tmp/executorchcoreml") for a in members})
        else:
            groups[_identity(members, fp)].append(key)
    for digest, keys in groups.items():
        if digest not in persistent and (digest.startswith("unique:") or len(keys) < 2):
            continue  # the only copy of a model: kept
        keep = None if digest in persistent else max(keys, key=lambda k: _newest_time(rest[k]))
        same = persistent[digest] if keep is None else (_bundle(rest[keep]) or rest[keep][0]).path
        for k in keys:
            if k != keep:
                reclaim += rest[k]
                links.update({a.path: _copy_link(a, digest, same) for a in rest[k]})
    items = [a for m in rest.values() for a in m] + [a for m in torch_sets.values() for a in m]
    if items:
        kept_models = len({_identity(m, fp) for k, m in rest.items() if not any(a in reclaim for a in m)})
        live_sets = [k for k, m in torch_sets.items() if any(a.is_dir for a in m)]
        gone = len(torch_sets) - len(live_sets)
        findings.append(make_finding(
            "tmp-compile-leftover", items, reclaim,
            f"{len(items)} compile input(s) or output(s) left in tmp/"
            + (f"; the last copy of {kept_models} model(s) is kept" if kept_models else "")
            + (f"; {len(live_sets)} PyTorch cache set(s) in use are kept whole" if live_sets else "")
            + (f"; {gone} PyTorch set(s) without their .mlmodelc are reported, 0 B" if gone else ""),
            {"items": len(items), "kept": kept_models, "pytorch_sets": len(torch_sets),
             "pytorch_sets_without_bundle": gone,
             "producers": sorted({a.producer for a in items if a.producer})},
            explanation="Apple's contract for on-device compiles: the compiled model lands in a temporary "
                        "location and the app must move it to a permanent one. Files left in tmp/ are "
                        "deleted by the system only while the app is not running, and are recompiled next time. "
                        "A framework's files go together: a TFLite spec with its bundle; PyTorch's "
                        "<sha256>, <sha256>.mlmodelc and <sha256>.version are its cache, reused while present.",
            remedy=remedies_for(a.producer for a in items), links=links))
    return findings, copies


def _identity(members: list[Artifact], fp: Fingerprints) -> str:
    """A unit's model: its bundle's content (a spec or a .version file proves nothing of the model:
    two models' .version files hold the same OS version string), else its one member's."""
    b = _bundle(members)
    if b is not None:
        return fp.content.get(b.path, "unique:" + b.path)
    if len(members) == 1:
        return fp.content.get(members[0].path, "unique:" + members[0].path)
    return "unique:" + members[0].path


def _bundle(members: list[Artifact]) -> Artifact | None:
    return next((a for a in members if a.is_dir), None)


def _newest_time(members: list[Artifact]) -> tuple:
    return max(((a.newest_mtime or 0), a.path) for a in members)


def _copy_link(a: Artifact, digest: str, same_as: str) -> dict:
    """A copy's evidence: its unit's model is byte-identical to the one that stays."""
    about = {"unit": unit_of(a).key}
    if a.is_dir:
        about["model"] = digest
    return link("byte-identical to the copy that stays (full xxh3-128 of every file)", about,
                same_model_as=same_as, model=digest)


def _most_common(values) -> str | None:
    counts: dict[str, int] = defaultdict(int)
    for v in values:
        if v:
            counts[v] += 1
    return max(counts, key=lambda k: (counts[k], k)) if counts else None
