"""Re-specializations of one model: proven only by compile copies paired with entries, or by the
launch history `mlcache watch` keeps; alike entries without that proof are reported at 0 B."""

from __future__ import annotations

from collections import defaultdict

from mlcache_audit.domain import (
    E5_CACHE,
    SPECIALIZATION,
    build_order,
    remedy_of,
)
from mlcache_audit.rules.model import (
    BURST_SECONDS,
    PAIR_SECONDS,
    SIZE_TOLERANCE,
    WHY_RESPECIALIZE,
    Evidence,
    Finding,
    cache_of,
    make_finding,
)
from mlcache_audit.scan import Artifact


def respecialization_findings(artifacts: list[Artifact], copies: list[Artifact], ev: Evidence) -> list[Finding]:
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
            groups[(cache_of(a), tuple(a.detail.get("layout", ())))].append(a)
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
        findings.append(make_finding(
            "redundant-specialization", concerned, reclaim,
            f"{len(concerned)} specializations of {len(proven)} model configuration(s) were made in "
            f"{sum(len(b) for b in proven)} different loads; only the newest load's are needed",
            {"groups": len(proven), "redundant": len(reclaim), "loads": sum(len(b) for b in proven), "basis": basis},
            explanation=WHY_RESPECIALIZE + " Each of these entries was written right after a recompiled copy "
                        "appeared in tmp/ (or in a launch `mlcache watch` saw), so they are one model specialized "
                        "again on every load.",
            remedy=remedy_of("Core ML (e5rt)")))
    if unproven:
        n = sum(len(c) for c in unproven)
        findings.append(make_finding(
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
