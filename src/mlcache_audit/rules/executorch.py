"""ExecuTorch's Core ML asset store: assets its assets.db no longer lists."""

from __future__ import annotations

from mlcache_audit.domain import (
    EXECUTORCH_ASSET,
    EXECUTORCH_SCRATCH,
    remedy_of,
)
from mlcache_audit.rules.model import (
    Finding,
    make_finding,
    remedies_for,
)
from mlcache_audit.scan import ScanResult


def executorch_findings(scan: ScanResult) -> list[Finding]:
    findings = []
    assets = [a for a in scan.artifacts if a.kind == EXECUTORCH_ASSET and a.detail.get("backend") == "coreml"]
    keys = scan.index_keys.get("executorch")
    # Only the asset store indexes its assets in assets.db; the newer model cache (version.txt) never
    # writes it, so its models are live, never orphans (ETCoreMLModelCache.h).
    if assets and keys is not None and not scan.layout.get("executorch_model_cache"):
        orphans = [a for a in assets if a.detail.get("asset_id") not in keys]
        if orphans:
            findings.append(make_finding(
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
        findings.append(make_finding(
            "executorch-scratch", scratch, scratch,
            f"{len(scratch)} ExecuTorch staging or temporary item(s) ({', '.join(roles)})",
            {"items": len(scratch), "roles": roles},
            explanation="ExecuTorch stages compiles in staging/ and temp/ (removed after 24 hours by the model "
                        "cache itself) and publishes files through .tmp-* names; what is left there belongs to "
                        "no asset. Bookmarks and keyed staging of the Core AI backend are never removed alone.",
            remedy=remedies_for(a.producer for a in scratch)))
    return findings
