"""Turn artifacts and fingerprints into findings: what grew, why, what can go, and how to stop it.

Every rule reclaims only on positive evidence (domain.RULE[...].evidence; docs/rules.md cites the
sources). Where the evidence is missing, a finding is reported with 0 bytes reclaimable and says what
is missing. Every rule keeps at least one copy of every model, never reclaims a protected path, and
names its reclaimable paths; a container's reclaimable bytes count the union of those paths once.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from dataclasses import dataclass, field

from mlcache_audit.domain import (
    COMPILE_LEFTOVER,
    COMPILED_MODEL,
    COREAI_SPECIALIZATION,
    DEFAULT_RULES,
    E5_CACHE,
    EXECUTORCH_ASSET,
    EXECUTORCH_SCRATCH,
    MPSGRAPH_SCRATCH_KIND,
    RULE,
    RULES,
    SOURCE_MODEL,
    SPECIALIZATION,
    SPECIALIZATION_PARTIAL,
    UNRECOGNISED,
    build_order,
    is_build,
    remedy_of,
)
from mlcache_audit.fingerprint import Fingerprints
from mlcache_audit.safety import is_protected
from mlcache_audit.scan import Artifact, ScanResult
from mlcache_audit.units import iso_utc

__all__ = ["DEFAULT_RULES", "RULES", "Diagnosis", "Evidence", "Finding", "build_order", "diagnose"]

DAY = 86400.0
SIZE_TOLERANCE = 0.10  # re-specializations of one model have near-equal, not equal, sizes [I]
BURST_SECONDS = 120.0  # entries this close in time were made by one load (FIELD-EVIDENCE.md: LLM chunks)
PAIR_SECONDS = 600.0  # a load's entries are written within minutes after its compile copy


@dataclass(frozen=True)
class Evidence:
    """What the environment says about a container, gathered before the rules run (they stay pure).

    running_pids: for a live folder, which of the pids named by scratch are running (None: an offline
    copy, where no process can own anything). launches: path -> launch number from `mlcache watch`.
    current_build: the running OS build, for a per-process cache on a live Mac.
    """

    running_pids: frozenset[int] | None = None
    launches: dict[str, int] = field(default_factory=dict)
    current_build: str | None = None


OFFLINE = Evidence()


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


def diagnose(scan: ScanResult, fp: Fingerprints, evidence: Evidence = OFFLINE) -> Diagnosis:
    """All findings for one container, largest reclaimable first."""
    by_path = {a.path: a for a in scan.artifacts}
    findings: list[Finding] = []
    compile_findings, compile_copies = _compile_rules(scan.artifacts, fp)
    findings += compile_findings
    findings += _build_rules(scan.artifacts, evidence)
    findings += _respecialization_rules(scan.artifacts, compile_copies, evidence)
    findings += _pid_scratch_rules(scan.artifacts, evidence)
    findings += _coreai_rule(scan.artifacts, evidence)
    findings += _executorch_rules(scan)
    findings += _persistent_rules(scan.artifacts, fp)
    unknown = [a for a in scan.artifacts if a.kind == UNRECOGNISED]
    if unknown:
        findings.append(_finding("unrecognised-cache-layout", unknown, [],
                                 f"{len(unknown)} item(s) inside a known ML cache do not match any known layout",
                                 explanation="mlcache only removes layouts it recognises; these are listed, never removed.",
                                 remedy="Nothing to do; report the layout to the mlcache developers if it keeps growing."))
    findings.sort(key=lambda f: (-f.reclaimable_bytes, f.rule, f.paths[:1]))
    default = {p for f in findings if not f.opt_in for p in f.reclaimable_paths}
    opt_in = {p for f in findings if f.opt_in for p in f.reclaimable_paths} - default
    return Diagnosis(findings, sum(by_path[p].bytes for p in default), sum(by_path[p].bytes for p in opt_in))


def _finding(rule: str, concerned: list[Artifact], reclaim: list[Artifact], summary: str,
             evidence: dict | None = None, explanation: str = "", remedy: str = "") -> Finding:
    r = RULE[rule]
    reclaim_by_path = {a.path: a for a in reclaim if not is_protected(a.path)}  # each artifact once
    return Finding(rule, r.severity, r.title, summary, sorted({a.path for a in concerned}), sorted(reclaim_by_path),
                   sum(a.bytes for a in reclaim_by_path.values()), r.opt_in, evidence or {}, explanation, remedy)


def _newest(group: list[Artifact]) -> Artifact:
    return max(group, key=lambda a: (a.newest_mtime or 0, a.path))


# -- on-device compiles -------------------------------------------------------------------------
_WHY_RESPECIALIZE = (
    "Core ML tells models apart by path and file metadata, not content: every recompiled copy is a new model "
    "to it, so each copy also gets its own specialization in Library/Caches/<bundle-id>/"
    "com.apple.e5rt.e5bundlecache, and the old ones are never removed.")


def _compile_rules(artifacts: list[Artifact], fp: Fingerprints) -> tuple[list[Finding], list[Artifact]]:
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
        keep = None if digest in persistent_contents else _newest(leftovers)
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
        findings.append(_finding(
            "repeated-compile", leftovers + during, reclaim,
            f"{producer or 'an on-device compile'} compiled one model {len(leftovers)} times{days}{launches}; "
            f"{len(during)} specializations were made in the same span",
            evidence, explanation=_WHY_RESPECIALIZE, remedy=remedy_of(producer)))
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
    return findings, copies


def _remedies_for(producers) -> str:
    """One remedy per producer that left something behind, each named."""
    names = sorted({p for p in producers if p})
    if not names:
        return remedy_of(None)
    if len(names) == 1:
        return remedy_of(names[0])
    return " ".join(f"[{n}] {remedy_of(n)}" for n in names)


def _most_common(values) -> str | None:
    counts: dict[str, int] = defaultdict(int)
    for v in values:
        if v:
            counts[v] += 1
    return max(counts, key=lambda k: (counts[k], k)) if counts else None


# -- OS builds ----------------------------------------------------------------------------------
def _build_rules(artifacts: list[Artifact], ev: Evidence) -> list[Finding]:
    """Every E5RT or Core AI build folder older than the current build goes. The current build is the
    newest present in any Core ML or Core AI cache of this container (a simulator app's caches carry
    its runtime's build, not the Mac's), or the running OS build for a per-process cache."""
    entries = [a for a in artifacts if a.kind in (SPECIALIZATION, SPECIALIZATION_PARTIAL, COREAI_SPECIALIZATION)]
    builds = {a.detail["build"] for a in entries if is_build(a.detail.get("build", ""))}
    if not builds:
        return []
    current = ev.current_build if ev.current_build and is_build(ev.current_build) else \
        max(builds, key=build_order)
    stale = [a for a in entries if is_build(a.detail.get("build", ""))
             and build_order(a.detail["build"]) < build_order(current)]
    if not stale:
        return []
    old_builds = sorted({a.detail["build"] for a in stale}, key=build_order)
    caches = sorted({"Core AI" if a.kind == COREAI_SPECIALIZATION else "Core ML (E5RT)" for a in stale})
    return [_finding(
        "stale-os-build", stale, stale,
        f"{len(stale)} cache entr{'y' if len(stale) == 1 else 'ies'} ({', '.join(caches)}) for OS build(s) "
        f"{', '.join(old_builds)}; the current build is {current}",
        {"old_builds": old_builds, "current_build": current,
         "current_from": "the running OS" if ev.current_build else "the newest build present",
         "entries": len(stale)},
        explanation="Core ML's specialization cache and Core AI's cache keep one folder per OS build. After an OS "
                    "update everything is specialized again under the new build, and the old build's folder is "
                    "never read again (Core AI's cache has kept 22 GB of old builds after an update).",
        remedy="Nothing to change in the app; old build folders can go (they are rebuilt on demand). For Core AI, "
               + remedy_of("Core AI"))]


# -- re-specializations -------------------------------------------------------------------------
def _respecialization_rules(artifacts: list[Artifact], copies: list[Artifact], ev: Evidence) -> list[Finding]:
    """Entries alike in layout and size are copies of one model only with evidence that they came from
    different loads of it: each load burst pairs one-to-one with a repeated compile copy in tmp/ (a
    copy's newest mtime shortly before the burst), or `mlcache watch` saw them appear in different
    launches. Entries within two minutes of each other are one load: distinct models (an 80-chunk LLM
    makes 480 alike entries in one load). Without evidence: possible-respecialization, 0 bytes."""
    entries = [a for a in artifacts if a.kind == SPECIALIZATION and E5_CACHE in a.path]
    if not entries:
        return []
    current = max((a.detail["build"] for a in entries), key=build_order)
    groups: dict[tuple, list[Artifact]] = defaultdict(list)
    for a in entries:
        if a.detail["build"] == current and a.detail.get("contents") == "bundle":
            groups[(_cache_of(a), tuple(a.detail.get("layout", ())))].append(a)
    copy_times = sorted(c.newest_mtime for c in copies if c.newest_mtime is not None)
    proven: list[list[list[Artifact]]] = []  # per group, its bursts with evidence (oldest first)
    unproven: list[list[Artifact]] = []
    for group in groups.values():
        for cluster in _size_clusters(group):
            if len(cluster) < 2:
                continue
            # A watch saw which launch made each entry: that decides, however close in time they are.
            watched = _by_launch([cluster], ev.launches)
            if len(watched) >= 2:
                proven.append(watched)
                continue
            bursts = _bursts(cluster)
            if len(bursts) < 2:
                continue  # one load made them all: distinct models, nothing to report
            with_evidence = _paired(bursts, copy_times)
            if len(with_evidence) >= 2:
                proven.append(with_evidence)
            else:
                unproven.append(cluster)
    findings = []
    if proven:
        reclaim = [a for bursts in proven for b in bursts[:-1] for a in b]
        concerned = [a for bursts in proven for b in bursts for a in b]
        basis = "watch history" if ev.launches and any(a.path in ev.launches for a in concerned) else \
            "paired with repeated compiles"
        findings.append(_finding(
            "redundant-specialization", concerned, reclaim,
            f"{len(concerned)} specializations of {len(proven)} model configuration(s) were made in "
            f"{sum(len(b) for b in proven)} different loads; only the newest load's are needed",
            {"groups": len(proven), "redundant": len(reclaim), "loads": sum(len(b) for b in proven), "basis": basis},
            explanation=_WHY_RESPECIALIZE + " Each of these entries was written right after a recompiled copy "
                        "appeared in tmp/ (or in a launch `mlcache watch` saw), so they are one model specialized "
                        "again on every load.",
            remedy=remedy_of("Core ML (e5rt)")))
    if unproven:
        n = sum(len(c) for c in unproven)
        findings.append(_finding(
            "possible-respecialization", [a for c in unproven for a in c], [],
            f"{n} specializations in {len(unproven)} group(s) look alike (layout and size) and were made in "
            "different loads, but nothing proves they are one model; 0 bytes reclaimable",
            {"groups": len(unproven), "entries": n,
             "missing": "no repeated compile copies in tmp/ pair with them, and no `mlcache watch` history"},
            explanation="Alike layouts and sizes do not prove two entries are one model: distinct models with one "
                        "architecture (chunks of an LLM, variants) look the same. mlcache reclaims re-specializations "
                        "only when they pair with repeated compiles in tmp/ or appear launch after launch in a watch.",
            remedy="Run `mlcache watch PATH --process <app>` over a few launches: entries that reappear on every "
                   "launch are the leak and become reclaimable."))
    return findings


def _cache_of(a: Artifact) -> str:
    parts = a.path.split("/")
    return "/".join(parts[: parts.index(E5_CACHE) + 1])


def _size_clusters(group: list[Artifact]) -> list[list[Artifact]]:
    clusters: list[list[Artifact]] = []
    for a in sorted(group, key=lambda x: x.bytes):
        if clusters and a.bytes <= clusters[-1][0].bytes * (1 + SIZE_TOLERANCE):
            clusters[-1].append(a)
        else:
            clusters.append([a])
    return clusters


def _bursts(cluster: list[Artifact]) -> list[list[Artifact]]:
    """Entries split into load bursts by their newest mtimes (a gap over two minutes starts a new one).
    Entries without a time form no burst: nothing can be said of them."""
    dated = sorted((a for a in cluster if a.newest_mtime is not None), key=lambda a: a.newest_mtime)
    bursts: list[list[Artifact]] = []
    for a in dated:
        if bursts and a.newest_mtime - bursts[-1][-1].newest_mtime <= BURST_SECONDS:
            bursts[-1].append(a)
        else:
            bursts.append([a])
    return bursts


def _paired(bursts: list[list[Artifact]], copy_times: list[float]) -> list[list[Artifact]]:
    """The bursts that pair one-to-one, in time order, with a compile copy made shortly before them."""
    out = []
    i = 0
    for burst in bursts:
        start = burst[0].newest_mtime
        while i < len(copy_times) and copy_times[i] < start - PAIR_SECONDS:
            i += 1
        if i < len(copy_times) and copy_times[i] <= start:
            out.append(burst)
            i += 1  # each copy pairs with one burst only
    return out


def _by_launch(bursts: list[list[Artifact]], launches: dict[str, int]) -> list[list[Artifact]]:
    """Bursts regrouped by the launch `mlcache watch` saw their entries appear in (one burst per launch)."""
    if not launches:
        return []
    per_launch: dict[int, list[Artifact]] = defaultdict(list)
    for b in bursts:
        for a in b:
            if a.path in launches:
                per_launch[launches[a.path]].append(a)
    return [per_launch[k] for k in sorted(per_launch)] if len(per_launch) >= 2 else []


# -- scratch owned by a process ------------------------------------------------------------------
def _pid_scratch_rules(artifacts: list[Artifact], ev: Evidence) -> list[Finding]:
    findings = []
    for rule, kind, what in (("interrupted-specialization", SPECIALIZATION_PARTIAL,
                              "interrupted specialization write(s) (*.tmp.<pid>[_<n>].bundle)"),
                             ("mpsgraph-scratch", MPSGRAPH_SCRATCH_KIND, "MPSGraph scratch folder(s) (mpsgraph-<pid>-*)")):
        items = [a for a in artifacts if a.kind == kind]
        if not items:
            continue
        running = [a for a in items if ev.running_pids is not None and a.detail.get("pid") in ev.running_pids]
        dead = [a for a in items if a not in running]
        basis = "an offline copy: no process can own them" if ev.running_pids is None else \
            "their processes are not running"
        findings.append(_finding(
            rule, items, dead,
            f"{len(items)} {what}; {len(dead)} belong to processes that are gone"
            + (f", {len(running)} to running processes (kept)" if running else ""),
            {"entries": len(items), "reclaimable": len(dead), "basis": basis,
             "running_pids": sorted({a.detail["pid"] for a in running})},
            explanation="Both are written under a process id and abandoned when that process ends before it "
                        "finishes or cleans up; public sweepers remove them exactly when the pid is gone "
                        "(kill(pid, 0) fails with ESRCH).",
            remedy=_INTERRUPTED_REMEDY if kind == SPECIALIZATION_PARTIAL else remedy_of("MPSGraph")))
    return findings


_INTERRUPTED_REMEDY = ("Nothing to change in the app: a specialization write was cut short (a crash, a kill, a "
                       "full disk). The temporary bundle can go once its process is gone; Core ML writes a complete "
                       "one on the next load.")


# -- Core AI --------------------------------------------------------------------------------------
def _coreai_rule(artifacts: list[Artifact], ev: Evidence) -> list[Finding]:
    entries = [a for a in artifacts if a.kind == COREAI_SPECIALIZATION]
    builds = {a.detail["build"] for a in artifacts
              if a.kind in (SPECIALIZATION, SPECIALIZATION_PARTIAL, COREAI_SPECIALIZATION) and is_build(a.detail["build"])}
    current = ev.current_build or (max(builds, key=build_order) if builds else None)
    live = [a for a in entries if not (is_build(a.detail["build"]) and current
                                       and build_order(a.detail["build"]) < build_order(current))]
    if not live:
        return []
    sources = {a.detail["main_hash"]: a.path for a in artifacts
               if a.kind == SOURCE_MODEL and a.detail.get("main_hash")}
    linked = {a.path: sources[a.detail["main_hash"]] for a in live if a.detail["main_hash"] in sources}
    not_builds = sorted({a.detail["build"] for a in live if not is_build(a.detail["build"])})
    return [_finding(
        "coreai-cache", live, [],
        f"{len(live)} Core AI cache entr{'y' if len(live) == 1 else 'ies'} of the current build; {len(linked)} "
        f"linked to a source .aimodel in this container by main.hash, {len(live) - len(linked)} whose source is "
        "not here (usually in the app bundle)",
        {"entries": len(live), "linked": [{"entry": p, "source": s} for p, s in sorted(linked.items())],
         "unlinked": len(live) - len(linked), "not_build_folders": not_builds},
        explanation="Core AI keys entries by the model's content (main.hash) and options, so they do not leak by "
                    "path. Deleting one costs a re-specialization (minutes for large models), and a missing "
                    "source proves nothing (it usually lives in the app bundle), so they are reported, never "
                    "reclaimed." + (f" Folders that are not OS builds ({', '.join(not_builds)}) are never "
                                    "called old." if not_builds else ""),
        remedy=remedy_of("Core AI"))]


# -- ExecuTorch ---------------------------------------------------------------------------------
def _executorch_rules(scan: ScanResult) -> list[Finding]:
    findings = []
    assets = [a for a in scan.artifacts if a.kind == EXECUTORCH_ASSET and a.detail.get("backend") == "coreml"]
    keys = scan.index_keys.get("executorch")
    # Only the asset store indexes its assets in assets.db; the newer model cache (version.txt) never
    # writes it, so its models are live, never orphans (ETCoreMLModelCache.h).
    if assets and keys is not None and not scan.layout.get("executorch_model_cache"):
        orphans = [a for a in assets if a.detail.get("asset_id") not in keys]
        if orphans:
            findings.append(_finding(
                "executorch-orphan", orphans, orphans,
                f"{len(orphans)} ExecuTorch asset(s) on disk that assets.db no longer lists",
                {"orphans": len(orphans), "indexed": len(keys)},
                explanation="ExecuTorch's Core ML asset store tracks compiled assets in MODEL_ASSETS_STORE "
                            "(Library/Application Support/executorchcoreml/assets.db); an asset the index does "
                            "not list is never loaded again. assets.db itself is never removed.",
                remedy=remedy_of("ExecuTorch")))
    scratch = [a for a in scan.artifacts if a.kind == EXECUTORCH_SCRATCH]
    if scratch:
        roles = sorted({a.detail.get("role", "") for a in scratch})
        findings.append(_finding(
            "executorch-scratch", scratch, scratch,
            f"{len(scratch)} ExecuTorch staging or temporary item(s) ({', '.join(roles)})",
            {"items": len(scratch), "roles": roles},
            explanation="ExecuTorch stages compiles in staging/ and temp/ (removed after 24 hours by the model "
                        "cache itself) and publishes files through .tmp-* names; what is left there belongs to "
                        "no asset. Bookmarks and keyed staging of the Core AI backend are never removed alone.",
            remedy=_remedies_for(a.producer for a in scratch)))
    return findings


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
        outside = [a for a in group if not is_protected(a.path)]
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
