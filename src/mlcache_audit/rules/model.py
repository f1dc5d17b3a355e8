"""What every rule family shares: the evidence gathered before the rules run, a finding, a diagnosis."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from mlcache_audit.domain import (
    E5_CACHE,
    RULE,
    remedy_of,
)
from mlcache_audit.safety import is_protected
from mlcache_audit.scan import Artifact, disk_freed

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
    links: dict[str, dict] = field(default_factory=dict)  # reclaimable path -> the evidence that names it
    repair_bytes: int = 0  # a repair rule's: broken entries deleting repairs, never reclaimable bytes
    reclaimable_disk_bytes: int = 0  # what removing its reclaimable paths gives back on disk (scan.disk_freed)


@dataclass
class Diagnosis:
    findings: list[Finding]
    reclaimable_bytes: int  # default rules, each byte once
    reclaimable_opt_in_bytes: int  # what the opt-in rules would add
    repair_bytes: int = 0  # broken entries deleting repairs (poisoned-entry): never reclaimable bytes
    reclaimable_disk_bytes: int = 0  # what the default rules give back on disk (allocated blocks)


def make_finding(rule: str, concerned: list[Artifact], reclaim: list[Artifact], summary: str,
                 evidence: dict | None = None, explanation: str = "", remedy: str = "",
                 links: dict[str, dict] | None = None) -> Finding:
    """A finding; every path it reclaims needs its own evidence link (`links`, made by `link`): a rule
    that cannot say what proves a target safe cannot reclaim it (a bug, caught by the tests)."""
    r = RULE[rule]
    reclaim_by_path = {a.path: a for a in reclaim if not is_protected(a.path)}  # each artifact once
    links = links or {}
    unlinked = sorted(set(reclaim_by_path) - set(links))
    if unlinked:
        raise ValueError(f"rule {rule} reclaims {unlinked[0]} without an evidence link")
    size = sum(a.bytes for a in reclaim_by_path.values())
    return Finding(rule, r.severity, r.title, summary, sorted({a.path for a in concerned}), sorted(reclaim_by_path),
                   0 if r.repair else size, r.opt_in, evidence or {}, explanation, remedy,
                   {p: links[p] for p in sorted(reclaim_by_path)}, size if r.repair else 0,
                   0 if r.repair else disk_freed(reclaim_by_path.values()))


def link(basis: str, about: dict, **refs) -> dict:
    """One target's evidence: what it rests on (`basis`, a phrase), what it is about (`about`: the facts
    it asserts of the target itself, from TARGET_FACTS; the planner compares each with the target's own
    and refuses the action on any mismatch), and what it refers to (`refs`: the kept copy, the paired
    compile copy, the newer build, the index read)."""
    bad = set(about) - set(TARGET_FACTS)
    if bad or not about:
        raise ValueError(f"an evidence link must be about the target's own facts, not {sorted(bad) or 'nothing'}")
    return {"basis": sys.intern(basis), "about": dict(about), **refs}  # one string for 15,000 alike


# The facts a link may assert of its target; plan.target_facts reads each from the target itself.
TARGET_FACTS = ("unit", "model", "pid", "asset_id", "store", "build", "client", "shape")


def newest(group: list[Artifact]) -> Artifact:
    return max(group, key=lambda a: (a.newest_mtime or 0, a.path))


WHY_RESPECIALIZE = (
    "Core ML tells models apart by path and file metadata, not content: every recompiled copy is a new model "
    "to it, so each copy also gets its own specialization in Library/Caches/<bundle-id>/"
    "com.apple.e5rt.e5bundlecache, and the old ones are never removed.")


def cache_of(a: Artifact) -> str:
    """The path of the E5RT cache `a` lies in (up to its first path component named so)."""
    cut = f"/{a.path}/".find(f"/{E5_CACHE}/")
    if cut < 0:
        raise ValueError(f"not in a {E5_CACHE}: {a.path}")
    return a.path[:cut + len(E5_CACHE)]


def remedies_for(producers) -> str:
    """One remedy per producer that left something behind, each named."""
    names = sorted({p for p in producers if p})
    if not names:
        return remedy_of(None)
    if len(names) == 1:
        return remedy_of(names[0])
    return " ".join(f"[{n}] {remedy_of(n)}" for n in names)
