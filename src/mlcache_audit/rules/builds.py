"""Specializations of OS builds older than the newest present, judged per container."""

from __future__ import annotations

from mlcache_audit.domain import (
    COREAI_SPECIALIZATION,
    SPECIALIZATION,
    SPECIALIZATION_PARTIAL,
    build_order,
    is_build,
    remedy_of,
)
from mlcache_audit.rules.model import (
    Evidence,
    Finding,
    link,
    make_finding,
)
from mlcache_audit.rules.units import client_of
from mlcache_audit.scan import Artifact


def build_findings(artifacts: list[Artifact], ev: Evidence, client: str | None = None) -> list[Finding]:
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
    # Where the current build was seen: one of this container's own entries (a container is one client's:
    # a home is split into one container per client before any build is compared).
    newest_in = None if ev.current_build and is_build(ev.current_build) else \
        min(a.path for a in entries if a.detail.get("build") == current)
    old_builds = sorted({a.detail["build"] for a in stale}, key=build_order)
    caches = sorted({"Core AI" if a.kind == COREAI_SPECIALIZATION else "Core ML (E5RT)" for a in stale})
    return [make_finding(
        "stale-os-build", stale, stale,
        f"{len(stale)} cache entr{'y' if len(stale) == 1 else 'ies'} ({', '.join(caches)}) for OS build(s) "
        f"{', '.join(old_builds)}; the current build is {current}",
        {"old_builds": old_builds, "current_build": current,
         "current_from": "the running OS" if ev.current_build else "the newest build present",
         "entries": len(stale)},
        explanation="Core ML's specialization cache and Core AI's cache keep one folder per OS build. After an OS "
                    "update everything is specialized again under the new build, and the old build's folder is "
                    "never read again (Core AI's cache has kept 22 GB of old builds after an update). Both caches "
                    "may be purged by the OS under storage pressure, but nothing says when: an old build's folder "
                    "does not go by itself.",
        remedy="Nothing to change in the app; old build folders can go (they are rebuilt on demand). For Core AI, "
               + remedy_of("Core AI"),
        links={a.path: link(f"cache of OS build {a.detail['build']}, older than this container's current build",
                            {"build": a.detail["build"], "client": client_of(a, client)},
                            current_build=current, current_from=newest_in or "the running OS build")
               for a in stale})]
