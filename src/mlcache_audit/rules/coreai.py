"""Core AI's coreai-cache: what it holds, and builds older than the newest present."""

from __future__ import annotations

from mlcache_audit.domain import (
    COREAI_SPECIALIZATION,
    SOURCE_MODEL,
    SPECIALIZATION,
    SPECIALIZATION_PARTIAL,
    build_order,
    is_build,
    remedy_of,
)
from mlcache_audit.rules.model import (
    Evidence,
    Finding,
    make_finding,
)
from mlcache_audit.scan import Artifact


def coreai_findings(artifacts: list[Artifact], ev: Evidence) -> list[Finding]:
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
    return [make_finding(
        "coreai-cache", live, [],
        f"{len(live)} Core AI cache entr{'y' if len(live) == 1 else 'ies'} of the current build; {len(linked)} "
        f"linked to a source .aimodel in this container by main.hash, {len(live) - len(linked)} whose source is "
        "not here (usually in the app bundle)",
        {"entries": len(live), "linked": [{"entry": p, "source": s} for p, s in sorted(linked.items())],
         "unlinked": len(live) - len(linked), "not_build_folders": not_builds},
        explanation="Core AI keys entries by the model's content (main.hash) and options, so they do not leak by "
                    "path. Deleting one costs a re-specialization (minutes for large models), and a missing "
                    "source proves nothing (it usually lives in the app bundle), so they are reported, never "
                    "reclaimed. Entries made with Policy.default may be purged by the OS under storage pressure "
                    "(.persistent ones stay until an OS update); no file on disk tells one entry's policy." + (f" Folders that are not OS builds ({', '.join(not_builds)}) are never "
                                    "called old." if not_builds else ""),
        remedy=remedy_of("Core AI"))]
