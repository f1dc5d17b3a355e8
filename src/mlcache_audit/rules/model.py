"""What every rule family shares: the evidence gathered before the rules run, a finding, a diagnosis."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlcache_audit.domain import (
    E5_CACHE,
    RULE,
    remedy_of,
)
from mlcache_audit.safety import is_protected
from mlcache_audit.scan import Artifact

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


def make_finding(rule: str, concerned: list[Artifact], reclaim: list[Artifact], summary: str,
             evidence: dict | None = None, explanation: str = "", remedy: str = "") -> Finding:
    r = RULE[rule]
    reclaim_by_path = {a.path: a for a in reclaim if not is_protected(a.path)}  # each artifact once
    return Finding(rule, r.severity, r.title, summary, sorted({a.path for a in concerned}), sorted(reclaim_by_path),
                   sum(a.bytes for a in reclaim_by_path.values()), r.opt_in, evidence or {}, explanation, remedy)


def newest(group: list[Artifact]) -> Artifact:
    return max(group, key=lambda a: (a.newest_mtime or 0, a.path))


WHY_RESPECIALIZE = (
    "Core ML tells models apart by path and file metadata, not content: every recompiled copy is a new model "
    "to it, so each copy also gets its own specialization in Library/Caches/<bundle-id>/"
    "com.apple.e5rt.e5bundlecache, and the old ones are never removed.")


def cache_of(a: Artifact) -> str:
    parts = a.path.split("/")
    return "/".join(parts[: parts.index(E5_CACHE) + 1])


def remedies_for(producers) -> str:
    """One remedy per producer that left something behind, each named."""
    names = sorted({p for p in producers if p})
    if not names:
        return remedy_of(None)
    if len(names) == 1:
        return remedy_of(names[0])
    return " ".join(f"[{n}] {remedy_of(n)}" for n in names)
