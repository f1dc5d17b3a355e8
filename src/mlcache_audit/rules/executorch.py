"""ExecuTorch's Core ML asset store: assets its assets.db no longer lists."""

from __future__ import annotations

from mlcache_audit.domain import (
    EXECUTORCH_ASSET,
    EXECUTORCH_SCRATCH,
    remedy_of,
)
from mlcache_audit.rules.model import (
    Finding,
    link,
    make_finding,
    remedies_for,
)
from mlcache_audit.rules.units import unit_of
from mlcache_audit.scan import ScanResult


def executorch_findings(scan: ScanResult) -> list[Finding]:
    findings = []
    assets = [a for a in scan.artifacts if a.kind == EXECUTORCH_ASSET and a.detail.get("backend") == "coreml"]
    keys = scan.index_keys.get("executorch")
    # Only the asset store indexes its assets in assets.db; the model cache never writes it, so an asset
    # with its own .accessed clock is live, never an orphan (ETCoreMLModelCache.mm). version.txt says
    # nothing: ExecuTorch writes it on every load since April 2026, whichever store is in use.
    if assets and keys is not None:
        orphans = [a for a in assets if a.detail.get("store") == "asset_store" and a.detail["asset_id"] not in keys]
        if orphans:
            findings.append(make_finding(
                "executorch-orphan", orphans, orphans,
                f"{len(orphans)} ExecuTorch asset(s) on disk that assets.db no longer lists",
                {"orphans": len(orphans), "indexed": len(keys)},
                explanation="ExecuTorch's Core ML asset store tracks compiled assets in MODEL_ASSETS_STORE "
                            "(Library/Application Support/executorchcoreml/assets.db, read with its WAL); an asset "
                            "the index does not list is never loaded again. Assets of the model cache (an "
                            "<id>.accessed beside them) are never orphans. assets.db itself is never removed.",
                remedy=remedy_of("ExecuTorch"),
                links={a.path: link("not listed in assets.db (MODEL_ASSETS_STORE, WAL replayed)",
                                    {"asset_id": a.detail["asset_id"], "store": "asset_store"},
                                    index="Library/Application Support/executorchcoreml/assets.db",
                                    indexed=len(keys)) for a in orphans}))
    scratch = [a for a in scan.artifacts if a.kind == EXECUTORCH_SCRATCH]
    if scratch:
        roles = sorted({a.detail.get("role", "") for a in scratch})
        findings.append(make_finding(
            "executorch-scratch", scratch, scratch,
            f"{len(scratch)} ExecuTorch staging or temporary item(s) ({', '.join(roles)})",
            {"items": len(scratch), "roles": roles},
            explanation="ExecuTorch stages compiles in staging/ and temp/ (removed after 24 hours by the model "
                        "cache itself) and publishes files through .tmp-* names; what is left there belongs to "
                        "no asset. Bookmarks and keyed staging of the Core AI backend are never removed alone.",
            remedy=remedies_for(a.producer for a in scratch),
            links={a.path: link(f"ExecuTorch's own {a.detail.get('role')} scratch", {"unit": unit_of(a).key},
                                role=a.detail.get("role")) for a in scratch}))
    return findings
