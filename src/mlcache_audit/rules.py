"""Turn artifacts and fingerprints into findings: what grew, why, what can go, and how to stop it.

Every rule keeps at least one copy of every model, never reclaims anything in Documents/, and names
its reclaimable paths; a container's reclaimable bytes count the union of those paths once.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from dataclasses import dataclass, field

from mlcache_audit.fingerprint import Fingerprints
from mlcache_audit.safety import is_protected
from mlcache_audit.scan import (
    COMPILE_LEFTOVER,
    COMPILED_MODEL,
    E5_CACHE,
    EXECUTORCH_ASSET,
    SOURCE_MODEL,
    SPECIALIZATION,
    SPECIALIZATION_PARTIAL,
    UNRECOGNISED,
    Artifact,
    ScanResult,
)
from mlcache_audit.units import iso_utc

DAY = 86400.0
SIZE_TOLERANCE = 0.10  # re-specializations of one model have near-equal, not equal, sizes [I]

# rule id -> (severity, opt_in, title). Opt-in rules are only acted on when asked (--include-persistent).
RULES: dict[str, tuple[str, bool, str]] = {
    "repeated-compile": ("high", False, "The same model is compiled again and again"),
    "tmp-compile-leftover": ("medium", False, "On-device compile output left in tmp/"),
    "stale-os-build": ("medium", False, "Specializations for an older OS build"),
    "redundant-specialization": ("medium", False, "Several specializations of one model and configuration"),
    "interrupted-specialization": ("medium", False, "Interrupted specialization writes"),
    "executorch-orphan": ("medium", False, "ExecuTorch assets its index no longer knows"),
    "duplicate-persistent-model": ("low", True, "The same model stored at several persistent paths"),
    "old-model-version": ("low", True, "Older versions of a model kept beside the current one"),
    "unrecognised-cache-layout": ("info", False, "Unrecognised layout inside a Core ML cache"),
}
DEFAULT_RULES = tuple(r for r, (_, opt_in, _) in RULES.items() if not opt_in)


@dataclass
class Finding:
    rule: str
    severity: str
    title: str
    summary: str
    paths: list[str]
    reclaimable_paths: list[str]
    reclaimable_bytes: int
    opt_in: bool
    evidence: dict = field(default_factory=dict)
    explanation: str = ""
    remedy: str = ""


@dataclass
class Diagnosis:
    findings: list[Finding]
    reclaimable_bytes: int  # default rules, each byte once
    reclaimable_opt_in_bytes: int  # what the opt-in rules would add


def diagnose(scan: ScanResult, fp: Fingerprints) -> Diagnosis:
    """All findings for one container, largest reclaimable first."""
    by_path = {a.path: a for a in scan.artifacts}
    findings: list[Finding] = []
    findings += _compile_rules(scan.artifacts, fp)
    findings += _specialization_rules(scan.artifacts)
    findings += _executorch_rule(scan)
    findings += _persistent_rules(scan.artifacts, fp)
    unknown = [a for a in scan.artifacts if a.kind == UNRECOGNISED]
    if unknown:
        findings.append(_finding("unrecognised-cache-layout", unknown, [],
                                 f"{len(unknown)} item(s) inside a Core ML cache do not match any known layout",
                                 explanation="mlcache only removes layouts it recognises; these are listed, never removed.",
                                 remedy="Nothing to do; report the layout to the mlcache developers if it keeps growing."))
    findings.sort(key=lambda f: (-f.reclaimable_bytes, f.rule, f.paths[:1]))
    default = {p for f in findings if not f.opt_in for p in f.reclaimable_paths}
    opt_in = {p for f in findings if f.opt_in for p in f.reclaimable_paths} - default
    return Diagnosis(findings, sum(by_path[p].bytes for p in default), sum(by_path[p].bytes for p in opt_in))


def _finding(rule: str, concerned: list[Artifact], reclaim: list[Artifact], summary: str,
             evidence: dict | None = None, explanation: str = "", remedy: str = "") -> Finding:
    severity, opt_in, title = RULES[rule]
    reclaim_by_path = {a.path: a for a in reclaim if not _protected(a.path)}  # each artifact once
    return Finding(rule, severity, title, summary, sorted({a.path for a in concerned}), sorted(reclaim_by_path),
                   sum(a.bytes for a in reclaim_by_path.values()), opt_in, evidence or {}, explanation, remedy)


def _protected(path: str) -> bool:
    return is_protected(path)


def _newest(group: list[Artifact]) -> Artifact:
    return max(group, key=lambda a: (a.newest_mtime or 0, a.path))


# -- on-device compiles -------------------------------------------------------------------------
_REMEDIES = {
    "TensorFlow Lite Core ML delegate": (
        "The TensorFlow Lite Core ML delegate converts and compiles the model every time an interpreter is "
        "created, under a new tmp/<GUS>.mlmodelc name, and deletes it only in the delegate's destructor. "
        "Create the interpreter once and reuse it, and make sure it is destroyed (a leaked or killed "
        "interpreter leaves both files). Better: convert the model ahead of time with coremltools and ship "
        "or cache the compiled .mlmodelc in Application Support."),
    "ONNX Runtime Core ML EP": (
        "ONNX Runtime's Core ML provider recompiles on every session. Set the provider option "
        "ModelCacheDirectory (ONNX Runtime 1.21 and later) to a folder in Application Support so the "
        "compiled model is reused across launches."),
    "ExecuTorch": (
        "ExecuTorch moves replaced assets to tmp/executorchcoreml before deleting them; leftovers there mean "
        "an interrupted clean-up. Update ExecuTorch and keep model identifiers stable between launches."),
    "MLModel.compileModel(at:)": (
        "MLModel.compileModel(at:) returns a bundle in a temporary location. Move it once to Application "
        "Support (FileManager.replaceItemAt), load it from there on later launches, and only compile again "
        "when the source model changes."),
    "PyTorch Core ML backend (legacy)": (
        "The legacy PyTorch Core ML backend compiles into the temp folder per process. Reuse the module "
        "within the process, and clean model_<pid>_* bundles whose process is gone."),
}
_WHY_RESPECIALIZE = (
    "Core ML tells models apart by path and file metadata, not content: every recompiled copy is a new model "
    "to it, so each copy also gets its own specialization in Library/Caches/<bundle-id>/"
    "com.apple.e5rt.e5bundlecache, and the old ones are never removed.")


def _compile_rules(artifacts: list[Artifact], fp: Fingerprints) -> list[Finding]:
    findings = []
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
        keep = None if digest in persistent_contents else _newest(leftovers)
        reclaim = [a for a in leftovers if a is not keep]
        handled.update(a.path for a in leftovers)
        producer = _most_common(a.producer for a in leftovers) or "an on-device compile"
        first = min(a.oldest_mtime or 0 for a in leftovers)
        last = max(a.newest_mtime or 0 for a in leftovers)
        span_days = (last - first) / DAY
        total = sum(a.bytes for a in leftovers)
        pids = {a.detail["pid"] for a in leftovers if "pid" in a.detail}
        during = [s for s in specializations if s.newest_mtime and first - 3600 <= s.newest_mtime <= last + 3600]
        evidence = {
            "copies": len(leftovers), "producer": producer, "model": leftovers[0].model.get("class_name"),
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
        findings.append(_finding(
            "repeated-compile", leftovers + during, reclaim,
            f"{producer} compiled one model {len(leftovers)} times{days}{launches}; "
            f"{len(during)} specializations were made in the same span",
            evidence, explanation=_WHY_RESPECIALIZE, remedy=_REMEDIES.get(producer, _REMEDIES["MLModel.compileModel(at:)"])))
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
            keep = None if digest in persistent_contents else _newest(group)
            reclaim.extend(a for a in group if a is not keep)
        kept = len(rest) - len(reclaim)
        findings.append(_finding(
            "tmp-compile-leftover", rest, reclaim,
            f"{len(rest)} compile input(s) or output(s) left in tmp/"
            + (f"; the last copy of {kept} model(s) is kept" if kept else ""),
            {"items": len(rest), "kept": kept,
             "producers": sorted({a.producer for a in rest if a.producer})},
            explanation="Apple's contract for on-device compiles: the compiled model lands in a temporary "
                        "location and the app must move it to a permanent one. Files left in tmp/ are "
                        "deleted by the system only while the app is not running, and are recompiled next time.",
            remedy=_remedies_for(a.producer for a in rest)))
    return findings


def _remedies_for(producers) -> str:
    """One remedy per producer that left something behind, each named."""
    names = sorted({p for p in producers if p in _REMEDIES})
    if not names:
        return _REMEDIES["MLModel.compileModel(at:)"]
    if len(names) == 1:
        return _REMEDIES[names[0]]
    return " ".join(f"[{n}] {_REMEDIES[n]}" for n in names)


def _most_common(values) -> str | None:
    counts: dict[str, int] = defaultdict(int)
    for v in values:
        if v:
            counts[v] += 1
    return max(counts, key=lambda k: (counts[k], k)) if counts else None


# -- specialization cache -----------------------------------------------------------------------
_BUILD = re.compile(r"^(\d{2})([A-Z])(\d+)([a-z]?)$")


def build_order(build: str) -> tuple:
    """Sort key of an Apple OS build string: 22G90 < 23A5297i (a beta) < 23A344 < 24G517."""
    m = _BUILD.match(build)
    if not m:
        return (-1, "", -1, 0)
    major, train, number, beta = m.groups()
    # Betas carry a 4-digit number and a letter suffix; a release of the same train is newer.
    return (int(major), train, 0 if beta else 1, int(number))


def _cache_of(a: Artifact) -> str:
    parts = a.path.split("/")
    return "/".join(parts[: parts.index(E5_CACHE) + 1])


def _specialization_rules(artifacts: list[Artifact]) -> list[Finding]:
    entries = [a for a in artifacts if a.kind in (SPECIALIZATION, SPECIALIZATION_PARTIAL) and E5_CACHE in a.path]
    findings = []
    caches: dict[str, list[Artifact]] = defaultdict(list)
    for a in entries:
        caches[_cache_of(a)].append(a)
    stale: list[Artifact] = []
    redundant: list[Artifact] = []
    redundant_concerned: list[Artifact] = []
    groups_seen = 0
    builds_seen: dict[str, list[str]] = {}
    for cache, items in caches.items():
        builds = sorted({a.detail["build"] for a in items}, key=build_order)
        newest = builds[-1]
        builds_seen[cache] = builds
        stale += [a for a in items if a.detail["build"] != newest]
        groups: dict[tuple, list[Artifact]] = defaultdict(list)
        for a in items:
            if a.kind == SPECIALIZATION and a.detail["build"] == newest:
                groups[(tuple(a.detail.get("layout", ())),)].append(a)
        for group in groups.values():
            for cluster in _size_clusters(group):
                if len(cluster) < 2:
                    continue
                groups_seen += 1
                keep = _newest(cluster)
                redundant += [a for a in cluster if a is not keep]
                redundant_concerned += cluster
    if stale:
        old_builds = sorted({a.detail["build"] for a in stale}, key=build_order)
        current = sorted({b[-1] for b in builds_seen.values()})
        findings.append(_finding(
            "stale-os-build", stale, stale,
            f"{len(stale)} specialization(s) for OS build(s) {', '.join(old_builds)}; the newest present is "
            f"{', '.join(current)}",
            {"old_builds": old_builds, "current_builds": current, "entries": len(stale)},
            explanation="The specialization cache keeps one folder per OS build. After an OS update Core ML "
                        "specializes again under the new build, and the old build's folder is never read again.",
            remedy="Nothing to change in the app; the old build folders can go (Core ML rebuilds what it needs)."))
    if redundant:
        findings.append(_finding(
            "redundant-specialization", redundant_concerned, redundant,
            f"{len(redundant) + groups_seen} specializations of {groups_seen} model configuration(s) in one OS build;"
            f" only the newest of each is needed",
            {"groups": groups_seen, "redundant": len(redundant)},
            explanation=_WHY_RESPECIALIZE + " Entries with the same inner layout (function, input shape, compute "
                        "path) and near-equal sizes are re-specializations of one model and configuration.",
            remedy="Stop the recompiles (see the repeated-compile finding) and load the model from one stable "
                   "path; then Core ML reuses a single specialization."))
    partial = [a for a in entries if a.kind == SPECIALIZATION_PARTIAL]
    if partial:
        findings.append(_finding(
            "interrupted-specialization", partial, partial,
            f"{len(partial)} interrupted specialization write(s) (*.tmp.<n>.bundle)",
            {"entries": len(partial)},
            explanation="A specialization is written to a .tmp.<n>.bundle folder and renamed when complete; a "
                        "crash or kill during the write leaves the temporary folder behind for good.",
            remedy="Nothing to change in the app; these can go."))
    return findings


def _size_clusters(group: list[Artifact]) -> list[list[Artifact]]:
    clusters: list[list[Artifact]] = []
    for a in sorted(group, key=lambda x: x.bytes):
        if clusters and a.bytes <= clusters[-1][0].bytes * (1 + SIZE_TOLERANCE):
            clusters[-1].append(a)
        else:
            clusters.append([a])
    return clusters


# -- ExecuTorch ---------------------------------------------------------------------------------
def _executorch_rule(scan: ScanResult) -> list[Finding]:
    keys = scan.index_keys.get("executorch")
    assets = [a for a in scan.artifacts if a.kind == EXECUTORCH_ASSET]
    if keys is None or not assets:
        return []
    orphans = [a for a in assets if a.detail.get("asset_id") not in keys]
    if not orphans:
        return []
    return [_finding(
        "executorch-orphan", orphans, orphans,
        f"{len(orphans)} ExecuTorch asset(s) on disk that assets.db no longer lists",
        {"orphans": len(orphans), "indexed": len(keys)},
        explanation="ExecuTorch's Core ML backend tracks compiled assets in MODEL_ASSETS_STORE "
                    "(Library/Application Support/executorchcoreml/assets.db); an asset the index does not list "
                    "is never loaded again.",
        remedy="Nothing to change in the app; these can go. Keep ExecuTorch up to date.")]


# -- persistent copies --------------------------------------------------------------------------
def _persistent_rules(artifacts: list[Artifact], fp: Fingerprints) -> list[Finding]:
    persistent = [a for a in artifacts if a.kind in (COMPILED_MODEL, SOURCE_MODEL)]
    findings = []
    by_content: dict[str, list[Artifact]] = defaultdict(list)
    for a in persistent:
        if a.path in fp.content:
            by_content[fp.content[a.path]].append(a)
    dup_concerned, dup_reclaim, groups = [], [], 0
    for group in by_content.values():
        if len(group) < 2:
            continue
        groups += 1
        outside = [a for a in group if not _protected(a.path)]
        keep = _newest(outside) if outside else None
        dup_concerned += group
        dup_reclaim += [a for a in outside if a is not keep]
    if dup_concerned:
        findings.append(_finding(
            "duplicate-persistent-model", dup_concerned, dup_reclaim,
            f"{groups} model(s) stored byte-for-byte at {len(dup_concerned)} persistent paths",
            {"groups": groups, "copies": len(dup_concerned)},
            explanation="Identical bundles at several paths cost their full size each; Core ML also specializes "
                        "each path separately. Copies in Documents/ are the user's and are never removed.",
            remedy="Keep one copy in Application Support and load it from there; removed only with "
                   "--include-persistent (the newest copy outside Documents/ stays)."))
    # Old versions: same file name and model, different bytes, in sibling (versioned) folders.
    by_name: dict[tuple, list[Artifact]] = defaultdict(list)
    for a in persistent:
        if a.path in fp.model_key:
            by_name[(posixpath.basename(a.path), fp.model_key[a.path])].append(a)
    old, concerned = [], []
    for group in by_name.values():
        contents = {fp.content.get(a.path, "unique:" + a.path) for a in group}
        if len(group) < 2 or len(contents) < 2:
            continue
        versions: dict[str, list[Artifact]] = defaultdict(list)
        for a in group:
            versions[fp.content.get(a.path, "unique:" + a.path)].append(a)
        newest_version = max(versions.values(), key=lambda g: max(a.newest_mtime or 0 for a in g))
        concerned += group
        old += [a for g in versions.values() if g is not newest_version for a in g]
    if old:
        findings.append(_finding(
            "old-model-version", concerned, old,
            f"{len(old)} older version(s) of a model kept beside the newest",
            {"old_versions": len(old)},
            explanation="The same model (same name, type, inputs and outputs) is stored with different bytes at "
                        "several paths, such as versioned folders or old Hugging Face snapshots.",
            remedy="Delete old versions when a new one is installed; removed only with --include-persistent, "
                   "keeping the newest version."))
    return findings
