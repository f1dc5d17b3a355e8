"""Other on-device runtimes' caches and weights: ML bytes, reported, never reclaimed this round."""

from __future__ import annotations

import posixpath
from collections import defaultdict

from mlcache_audit.domain import (
    MODEL_WEIGHTS,
    ORT_MODEL_CACHE,
    XNNPACK_CACHE,
    remedy_of,
)
from mlcache_audit.fingerprint import Fingerprints
from mlcache_audit.rules.model import Finding, make_finding, remedies_for
from mlcache_audit.scan import Artifact


def runtime_findings(artifacts: list[Artifact], fp: Fingerprints) -> list[Finding]:
    findings = []
    items = [a for a in artifacts if a.kind in (XNNPACK_CACHE, ORT_MODEL_CACHE, MODEL_WEIGHTS)]
    if items:
        kinds = defaultdict(int)
        for a in items:
            kinds[a.kind] += 1
        findings.append(make_finding(
            "model-runtime-cache", items, [],
            f"{len(items)} cache or weight file(s) of other on-device runtimes "
            f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); 0 bytes reclaimable",
            {"items": len(items), "by_kind": dict(sorted(kinds.items())),
             "missing": "nothing in a container proves the model they belong to is gone from the app"},
            explanation="MediaPipe / LiteRT-LM keep an XNNPACK weight cache about the model's size (2.2 GB for a "
                        "3.6 GB model) in the folder they are given, tmp/ on iOS; ONNX Runtime keeps compiled "
                        "partitions in its ModelCacheDirectory; other runtimes keep safetensors, GGUF or MLX "
                        "weights. They are ML bytes, counted here; nothing proves the model left the app bundle.",
            remedy=remedies_for(a.producer for a in items if a.producer != "model weights")
            if any(a.producer != "model weights" for a in items) else remedy_of("model weights")))
    # One model cached under several ONNX Runtime keys: every partition of two keys byte-identical.
    keys: dict[str, list[Artifact]] = defaultdict(list)
    for a in artifacts:
        if a.kind == ORT_MODEL_CACHE:
            keys[posixpath.dirname(a.path)].append(a)
    by_model: dict[tuple, list[str]] = defaultdict(list)
    for key, parts in keys.items():
        contents = tuple(sorted(fp.content.get(p.path, "unique:" + p.path) for p in parts))
        if not any(c.startswith("unique:") for c in contents):
            by_model[contents].append(key)
    dup = [sorted(ks) for ks in by_model.values() if len(ks) >= 2]
    if dup:
        concerned = [p for ks in dup for k in ks for p in keys[k]]
        findings.append(make_finding(
            "ort-cache-keys", concerned, [],
            f"{sum(len(ks) for ks in dup)} ONNX Runtime cache keys hold {len(dup)} model(s) byte for byte; "
            "0 bytes reclaimable",
            {"models": len(dup), "keys": [[posixpath.basename(k) for k in ks] for ks in dup],
             "missing": "which key the next session opens: ONNX Runtime names a key by COREML_CACHE_KEY, else by "
                        "a hash of the model's path"},
            explanation="ONNX Runtime's ModelCacheDirectory names each entry by the model's COREML_CACHE_KEY "
                        "metadata, else by a hash of the model's path: an app update on iOS moves the path, so "
                        "the same model is cached again under a new key and the old key is never read. ONNX "
                        "Runtime checks only that a key's folder exists: a partly removed key fails every "
                        "session, so a key goes whole or not at all.",
            remedy=remedy_of("ONNX Runtime model cache")))
    return findings
