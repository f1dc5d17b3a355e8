"""Entries that make every load fail: deleting them repairs the app (repair bytes, never reclaimable)."""

from __future__ import annotations

from collections import defaultdict

from mlcache_audit.domain import COREAI_SPECIALIZATION, SOURCE_MODEL, SPECIALIZATION, remedy_of
from mlcache_audit.rules.model import Finding, cache_of, link, make_finding
from mlcache_audit.scan import Artifact
from mlcache_audit.scan.model import layout_memo


@layout_memo
def _without_resources(layout: tuple[str, ...]) -> tuple[frozenset[str], bool]:
    """The layout's names other than resources.bin files, and whether it had any."""
    rest = frozenset(n for n in layout if not n.endswith("resources.bin"))
    return rest, len(rest) < len(set(layout))


def poisoned_findings(artifacts: list[Artifact]) -> list[Finding]:
    """A full-bundle E5RT entry missing resources.bin where an entry of the same cache and build has
    the very same layout plus resources.bin (after a full disk, apple/coremltools#2507); pointer
    entries and purge-emptied entries are normal, never poisoned. A Core AI entry whose source
    .aimodel in this container has a main.hash that is not the SHA-256 of its main.mlirb (a
    half-copied package, i62808600309)."""
    poisoned: list[Artifact] = []
    links: dict[str, dict] = {}
    by_cache: dict[tuple, list[Artifact]] = defaultdict(list)
    for a in artifacts:
        if a.kind == SPECIALIZATION and a.detail.get("contents") == "bundle":
            by_cache[(cache_of(a), a.detail.get("build"))].append(a)
    for group in by_cache.values():
        complete = {}
        sides = [(a, *_without_resources(tuple(a.detail.get("layout", ())))) for a in group]
        for a, rest, has_resources in sides:
            if has_resources:
                complete.setdefault(rest, a)
        for a, rest, has_resources in sides:
            whole = None if has_resources else complete.get(rest)
            if whole is not None:
                poisoned.append(a)
                links[a.path] = link("its resources.bin is missing; an entry of the same layout has one",
                                     {"unit": f"artifact:{a.path}", "build": a.detail.get("build")},
                                     complete_entry=whole.path)
    sources = {a.detail["main_hash"]: a for a in artifacts if a.kind == SOURCE_MODEL and a.detail.get("main_hash")}
    for a in artifacts:
        src = sources.get(a.detail.get("main_hash")) if a.kind == COREAI_SPECIALIZATION else None
        if src is not None and src.detail.get("main_hash_ok") is False:
            poisoned.append(a)
            links[a.path] = link("made from a half-copied .aimodel: its main.hash is not the SHA-256 of main.mlirb",
                                 {"unit": f"artifact:{a.path}", "client": a.detail.get("client")}, source=src.path)
    if not poisoned:
        return []
    return [make_finding(
        "poisoned-entry", poisoned, poisoned,
        f"{len(poisoned)} cache entr{'y' if len(poisoned) == 1 else 'ies'} that make every load of their model "
        "fail: delete to repair",
        {"entries": len(poisoned)},
        explanation="After a full disk Core ML can leave an entry without its resources.bin, and Core AI an entry "
                    "made from a half-copied .aimodel; every later load fails until the entry is deleted. This is "
                    "a repair, not dead weight: removed only with --only poisoned-entry, and the model is "
                    "specialized again on its next load.",
        remedy="Delete to repair: `mlcache clean PATH --only poisoned-entry --apply` while the app is not running. "
               + remedy_of("Core AI"), links=links)]
