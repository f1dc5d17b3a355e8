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
    link,
    make_finding,
)
from mlcache_audit.rules.units import client_of, entry_shapes, model_shapes
from mlcache_audit.scan import Artifact


def respecialization_findings(artifacts: list[Artifact], copies: list[list[Artifact]], ev: Evidence,
                              client: str | None = None) -> list[Finding]:
    """Entries alike in layout and size are one model's re-specializations only with evidence about
    that model: `mlcache watch` saw them appear in different launches, or the cluster pairs with the
    repeated compile copies of one model (`copies`: one list per model) when all of these hold:
    the input shape matches where either side records one (a missing shape folder is no mismatch),
    the counts are one-to-one (every load made the same number of entries, one load per copy), and
    each load falls in its copy's load window (after the copy, within ten minutes, before the next
    copy). A copy of model A proves nothing about model B: otherwise possible-respecialization,
    0 bytes. Entries within two minutes of each other are one load: distinct models (an 80-chunk LLM
    makes 480 alike entries in one load)."""
    entries = [a for a in artifacts if a.kind == SPECIALIZATION and E5_CACHE in a.path]
    if not entries:
        return []
    current = max((a.detail["build"] for a in entries), key=build_order)
    groups: dict[tuple, list[Artifact]] = defaultdict(list)
    for a in entries:
        if a.detail["build"] == current and a.detail.get("contents") == "bundle":
            groups[(cache_of(a), tuple(a.detail.get("layout", ())))].append(a)
    proven: list[tuple[list[list[Artifact]], dict]] = []  # per cluster: its loads (oldest first), and its proof
    unproven: list[list[Artifact]] = []
    for group in groups.values():
        for cluster in _size_clusters(group):
            if len(cluster) < 2:
                continue
            # A watch saw which launch made each entry: that decides, however close in time they are.
            watched = _by_launch([cluster], ev.launches)
            if len(watched) >= 2:
                proven.append((watched, {"basis": "watch history", "launches": len(watched)}))
                continue
            bursts = _bursts(cluster)
            if len(bursts) < 2:
                continue  # one load made them all: distinct models, nothing to report
            paired = _pair_with_one_model(cluster, bursts, copies)
            if paired is not None:
                proven.append((bursts, paired))
            else:
                unproven.append(cluster)
    findings = []
    if proven:
        reclaim = [a for bursts, _ in proven for b in bursts[:-1] for a in b]
        concerned = [a for bursts, _ in proven for b in bursts for a in b]
        links = {}
        for bursts, proof in proven:
            shapes = entry_shapes(bursts[-1][0])
            for i, b in enumerate(bursts[:-1]):
                for a in b:
                    about = {"client": client_of(a, client), "build": current}
                    if shapes:
                        about["shape"] = sorted(shapes)[0]
                    refs = {"load": i + 1, "loads": len(bursts), "newest_load_kept": sorted(x.path for x in bursts[-1])}
                    if proof["basis"] == "watch history":
                        links[a.path] = link("appeared in a different launch of a `mlcache watch`", about, **refs)
                    else:
                        links[a.path] = link(
                            "written in the load of a recompiled copy of one model", about, **refs,
                            copy=proof["copies"][i], model_name=proof["model"], copies=len(proof["copies"]))
        basis = sorted({p["basis"] for _, p in proven})
        findings.append(make_finding(
            "redundant-specialization", concerned, reclaim,
            f"{len(concerned)} specializations of {len(proven)} model configuration(s) were made in "
            f"{sum(len(b) for b, _ in proven)} different loads; only the newest load's are needed",
            {"groups": len(proven), "redundant": len(reclaim), "loads": sum(len(b) for b, _ in proven),
             "basis": " and ".join(basis)},
            explanation=WHY_RESPECIALIZE + " Each of these entries was written in the load of a recompiled copy "
                        "of one model in tmp/ (one copy per load, matching input shape), or in a launch "
                        "`mlcache watch` saw, so they are one model specialized again on every load. The E5RT "
                        "cache may be purged by the OS under storage pressure, but not before the disk is nearly "
                        "full, and the leak refills it on the next launches.",
            remedy=remedy_of("Core ML (e5rt)"), links=links))
    if unproven:
        n = sum(len(c) for c in unproven)
        findings.append(make_finding(
            "possible-respecialization", [a for c in unproven for a in c], [],
            f"{n} specializations in {len(unproven)} group(s) look alike (layout and size) and were made in "
            "different loads, but nothing proves they are one model; 0 bytes reclaimable",
            {"groups": len(unproven), "entries": n,
             "missing": "no one model's repeated compile copies pair with them one-to-one (input shape, one copy "
                        "per load, each load in its copy's window), and no `mlcache watch` history"},
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


def _pair_with_one_model(cluster: list[Artifact], bursts: list[list[Artifact]],
                         copies: list[list[Artifact]]) -> dict | None:
    """The proof that every load of this cluster is a load of one model's recompiled copy, or None."""
    per_load = {len(b) for b in bursts}
    if len(per_load) != 1 or sum(len(b) for b in bursts) != len(cluster):
        return None  # loads made different numbers of entries: not one model loaded again and again
    shapes = entry_shapes(cluster[0])
    for model in copies:
        dated = sorted((c for c in model if c.newest_mtime is not None), key=lambda c: c.newest_mtime)
        if len(dated) != len(bursts):
            continue  # one-to-one: a copy per load, a load per copy
        own = frozenset().union(*(model_shapes(c) for c in dated))
        if shapes and own and not shapes & own:
            continue  # another model's input shape
        if all(_in_window(b, c, nxt) for b, c, nxt in zip(bursts, dated, [*dated[1:], None], strict=True)):
            return {"basis": "paired with repeated compiles", "copies": [c.path for c in dated],
                    "model": next((c.model.get("class_name") for c in dated if c.model.get("class_name")), None)
                    or dated[0].path.rsplit("/", 1)[-1]}
    return None


def _in_window(burst: list[Artifact], copy: Artifact, following: Artifact | None) -> bool:
    """A load's entries are written after its compile copy, within minutes, and before the next copy."""
    start = burst[0].newest_mtime
    return copy.newest_mtime <= start <= copy.newest_mtime + PAIR_SECONDS and \
        (following is None or start < following.newest_mtime)


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
