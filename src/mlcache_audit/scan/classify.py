"""What an entry is: pure classification, an entry and the artifact it lies in, in; a new artifact or None out.

Layout facts come from shared/domain/COREML-ON-DISK.md and FIELD-EVIDENCE.md; anything under a Core ML
cache whose layout is not known is `unrecognised`, never guessed into a delete.
"""

from __future__ import annotations

import re

from mlcache_audit.domain import (
    COMPILE_LEFTOVER,
    COMPILED_MODEL,
    COREAI_CACHE,
    COREAI_SPECIALIZATION,
    E5_CACHE,
    EXECUTORCH_ASSET,
    EXECUTORCH_COREAI,
    EXECUTORCH_COREML,
    EXECUTORCH_SCRATCH,
    METAL_CACHE,
    MODEL_WEIGHTS,
    MPSGRAPH_SCRATCH,
    MPSGRAPH_SCRATCH_KIND,
    ORT_MODEL_CACHE,
    SOURCE_MODEL,
    SPECIALIZATION,
    SPECIALIZATION_PARTIAL,
    UNRECOGNISED,
    XNNPACK_CACHE,
    is_build,
)
from mlcache_audit.scan.model import Artifact, area_of
from mlcache_audit.sources.base import DIR, FILE, Entry

_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"


# NSProcessInfo.globallyUniqueString: <UUID>-<pid>-<16 hex>, as the TFLite Core ML delegate names files.
GUS = re.compile(rf"^({_UUID})-(\d+)-([0-9A-Fa-f]{{16}})$")


_ORT = re.compile(rf"^onnxruntime-{_UUID}-(\d+)-[0-9A-Fa-f]{{16}}")


_STEM_UUID = re.compile(rf"^(.+)_({_UUID})\.mlmodelc$")


_LEGACY_PID = re.compile(r"^model_(\d+)_.*\.mlmodelc$")


HEX64 = re.compile(r"^[0-9A-Fa-f]{64}$")


# An interrupted E5RT write: <64 hex>.tmp.<pid>_<n>.bundle, or .tmp.<pid>.bundle (FIELD-EVIDENCE.md).
_TMP_BUNDLE = re.compile(r"\.tmp\.(\d+)(?:_(\d+))?\.bundle$")


HEX_ANY = re.compile(r"[0-9A-Fa-f]{64}")


_MPSGRAPH = re.compile(r"^mpsgraph-(\d+)-(.+)$")


_TORCH_LEGACY = re.compile(r"^([0-9a-f]{64})(\.mlmodelc|\.version)?$")  # PTMCoreMLCompiler.mm: sha256 of the spec


_COMPUTE_UNITS = re.compile(r"_(all|cpu_only|cpu_and_gpu|cpu_and_ne)$")


# ONNX Runtime's ModelCacheDirectory: <dir>/<key>/<n>_{static,dynamic}_mlprogram/model/... (PR #23065).
ORT_PARTITION = re.compile(r"^(\d+)_(static|dynamic)_mlprogram$")


# MediaPipe / LiteRT-LM in their cache folder: <model>.xnnpack_cache[_<id>], <model>_<id>_mldrift_program_cache.bin.
_XNNPACK = re.compile(r"\.xnnpack_cache(?:_[^/]*)?$|_mldrift_program_cache\.bin$")


# Weights of other on-device runtimes, as files (MLX and Hugging Face models use safetensors, llama.cpp GGUF).
_WEIGHT_SUFFIXES = (".safetensors", ".gguf")


_MAY_START_ENDINGS = (".mlmodel", *_WEIGHT_SUFFIXES, "_mldrift_program_cache.bin")
_MAY_START_INSIDE = ".xnnpack_cache"


def file_may_start(name: str) -> bool:
    """Can a regular file of this name start an artifact in a quiet folder (see quiet_folder)?"""
    return name.endswith(_MAY_START_ENDINGS) or _MAY_START_INSIDE in name


def any_may_start(names: str) -> bool:
    """Can any file of a folder start an artifact (`names`: its names joined by "/")? False means
    file_may_start is False for every one: each of its cases needs one of these marks in the name."""
    return any(mark in names for mark in (*_MAY_START_ENDINGS, _MAY_START_INSIDE))


def nests(parent: Artifact, name: str) -> bool:
    """Can a folder of this name start an artifact inside `parent`? The one nesting allowed: an
    interrupted write inside a specialization entry."""
    return parent.kind == SPECIALIZATION and _TMP_BUNDLE.search(name) is not None


def classify_entry(e: Entry, parent: Artifact | None) -> Artifact | None:
    """Does this entry start an artifact? Only directories and regular files can."""
    if e.type not in (FILE, DIR):
        return None
    is_dir = e.type == DIR
    name = e.name
    if parent is not None:
        if is_dir and nests(parent, name):
            return Artifact(SPECIALIZATION_PARTIAL, e.path, True, "Core ML (e5rt)",
                            detail={**parent.detail, **_pid_detail(_TMP_BUNDLE.search(name))})
        return None
    parts = e.path.split("/")
    if E5_CACHE in parts[:-1]:
        return _classify_e5(e, parts, is_dir)
    in_caches = parts[:2] == ["Library", "Caches"]
    # coreai-cache sits in a container's Library/Caches, or at the top of a per-process client rooted there.
    if COREAI_CACHE in parts[:-1] and (in_caches or parts[0] == COREAI_CACHE):
        return _classify_coreai(e, parts, is_dir)
    if in_caches and len(parts) >= 4 and parts[2] == EXECUTORCH_COREML:
        return _classify_executorch(e, parts, is_dir)
    if in_caches and len(parts) >= 4 and parts[2] == EXECUTORCH_COREAI:
        return _classify_executorch_coreai(e, parts, is_dir)
    if is_dir and name in ("com.apple.metal", "com.apple.metalfe") and in_caches:
        return Artifact(METAL_CACHE, e.path, True, "Metal")
    if parts[0] == MPSGRAPH_SCRATCH:  # the top of a temp folder ($TMPDIR on a Mac)
        return _classify_tmp(e, ["tmp", *parts], is_dir)
    if parts[0] == "tmp":
        leftover = _classify_tmp(e, parts, is_dir)
        if leftover is not None:
            return leftover
    if is_dir and name.endswith(".mlmodelc"):
        if _hub_download_metadata(parts):
            return None  # swift-transformers' download bookkeeping: *.metadata files, not a bundle
        return Artifact(COMPILED_MODEL, e.path, True, _bundle_producer(parts))
    if is_dir and (m := ORT_PARTITION.match(name)) and len(parts) >= 3:
        # The unit is the partition's <key>/ folder (rules/units.py): only the whole key may ever go.
        return Artifact(ORT_MODEL_CACHE, e.path, True, "ONNX Runtime model cache",
                        detail={"key": parts[-2], "partition": int(m.group(1)), "shapes": m.group(2)})
    if not is_dir and _XNNPACK.search(name):
        return Artifact(XNNPACK_CACHE, e.path, False, "MediaPipe / LiteRT",
                        detail={"model_file": _XNNPACK.sub("", name)})
    if not is_dir and (name.endswith(_WEIGHT_SUFFIXES) or _is_hub_blob(parts)):
        hub = next((p for p in parts if p.startswith("models--")), None)
        return Artifact(MODEL_WEIGHTS, e.path, False, "Hugging Face hub" if hub else "model weights",
                        detail={"format": "blob" if _is_hub_blob(parts) else name.rsplit(".", 1)[-1],
                                **({"hub_repo": hub.removeprefix("models--").replace("--", "/")} if hub else {})})
    if is_dir and name.endswith(".aimodelc"):
        return Artifact(COMPILED_MODEL, e.path, True, "Core AI", detail={"format": "aimodelc"})
    if is_dir and name.endswith(".aimodel"):
        return Artifact(SOURCE_MODEL, e.path, True, "Core AI", detail={"format": "aimodel"})
    if (is_dir and name.endswith(".mlpackage")) or (not is_dir and name.endswith(".mlmodel")):
        return Artifact(SOURCE_MODEL, e.path, is_dir, detail={"format": "mlpackage" if is_dir else "mlmodel"})
    return None


def _bundle_producer(parts: list[str]) -> str | None:
    """Who wrote a compiled bundle outside the caches, when its path says: a Hugging Face hub cache
    (models--<org>--<name>/snapshots/...), WhisperKit's model folders (argmaxinc/whisperkit-coreml/<variant>,
    downloaded by swift-transformers' HubApi into Documents/huggingface/models by default), another
    swift-transformers download."""
    if any(p.startswith("models--") for p in parts):
        return "Hugging Face hub"
    if any("whisperkit" in p.lower() for p in parts[:-1]):
        return "WhisperKit"
    return "Hugging Face hub" if "huggingface" in parts else None


def _hub_download_metadata(parts: list[str]) -> bool:
    """swift-transformers keeps <repo>/.cache/huggingface/download/<variant>/<Model>.mlmodelc/*.metadata."""
    return ".cache" in parts and "download" in parts and parts.index("download") > parts.index(".cache")


def _is_hub_blob(parts: list[str]) -> bool:
    """A Hugging Face hub cache blob: models--<org>--<name>/blobs/<hash> (snapshots/ hold symlinks to them)."""
    return len(parts) >= 3 and parts[-2] == "blobs" and parts[-3].startswith("models--")


def quiet_folder(folder: str) -> str | None:
    """The area of the regular files in `folder` (a path from the container root) when, outside
    every artifact, `classify_entry` starts one from a file there only if `file_may_start` says so; None
    for the folders whose files need all of `classify_entry`: the root and Library (a file there may be an
    area of its own), tmp/ and the top-level MPSGraph scratch, and anything in a Core ML, Core AI
    or ExecuTorch cache. The folder walk's fast path; tests/test_folderwalk.py holds it to `classify_entry`."""
    if folder in ("", "Library"):
        return None
    parts = folder.split("/")
    if parts[0] in ("tmp", MPSGRAPH_SCRATCH) or E5_CACHE in parts or COREAI_CACHE in parts:
        return None
    if len(parts) >= 2 and parts[-1] == "blobs" and parts[-2].startswith("models--"):
        return None  # a hub cache's blobs have no extension
    if len(parts) >= 3 and parts[0] == "Library" and parts[1] == "Caches" and parts[2] in (EXECUTORCH_COREML,
                                                                                          EXECUTORCH_COREAI):
        return None
    return area_of(folder + "/")


def _pid_detail(m: re.Match) -> dict:
    return {"pid": int(m.group(1)), **({"write": int(m.group(2))} if m.group(2) else {})}


def _classify_e5(e: Entry, parts: list[str], is_dir: bool) -> Artifact | None:
    """`<cache>/<OS build>/<64 hex>/...`: one artifact per entry; anything else is unrecognised."""
    idx = parts.index(E5_CACHE)
    depth = len(parts) - 1 - idx
    build = parts[idx + 1]
    if is_dir and depth >= 2 and (m := _TMP_BUNDLE.search(e.name)):
        return Artifact(SPECIALIZATION_PARTIAL, e.path, True, "Core ML (e5rt)", detail={"build": build, **_pid_detail(m)})
    if depth == 1:
        if is_dir and is_build(e.name):
            return None  # the build folder itself: its entries are the artifacts
        return Artifact(UNRECOGNISED, e.path, is_dir, detail={"reason": "not an OS build folder"})
    if depth == 2 and is_dir and HEX64.match(e.name) and is_build(build):
        return Artifact(SPECIALIZATION, e.path, True, "Core ML (e5rt)", detail={"build": build, "entry": e.name})
    return Artifact(UNRECOGNISED, e.path, is_dir, detail={"reason": "unknown specialization cache layout"})


def _classify_coreai(e: Entry, parts: list[str], is_dir: bool) -> Artifact | None:
    """`coreai-cache/<OS build>/<client>/<main.hash hex>/<options key>/model.aimodelx/...`: one
    artifact per (model, options) folder. A build folder that is not a build (one beta wrote
    `unknown/`) still holds entries: they are reported and never called old."""
    idx = parts.index(COREAI_CACHE)
    depth = len(parts) - 1 - idx
    if depth <= 2 and is_dir:
        return None  # the build and client folders
    if depth == 3 and is_dir and HEX64.match(e.name):
        return None  # the model's main.hash folder
    if depth == 4 and is_dir:
        build, client, main_hash = parts[idx + 1], parts[idx + 2], parts[idx + 3]
        return Artifact(COREAI_SPECIALIZATION, e.path, True, "Core AI",
                        detail={"build": build, "client": client, "main_hash": main_hash.lower(), "options": e.name})
    return Artifact(UNRECOGNISED, e.path, is_dir, detail={"reason": "unknown Core AI cache layout"})


def _classify_executorch(e: Entry, parts: list[str], is_dir: bool) -> Artifact | None:
    """ExecuTorch's Core ML backend under Library/Caches/executorchcoreml/ (ETCoreMLStrings.mm,
    ETCoreMLModelCache.h): `models/<id>.mlmodelc` assets (the asset store's or the model cache's),
    `models/<id>.accessed` LRU clocks, `staging/<UUID>/` and `temp/<UUID>/` scratch."""
    area, name = parts[3], e.name
    if len(parts) != 5:
        return None
    if area == "models":
        if not is_dir and name.endswith(".accessed"):
            return None  # the model cache's LRU clock (scan.executorch_stores reads which assets have one)
        asset_id = name.removesuffix(".mlmodelc")
        detail = {"backend": "coreml", "asset_id": asset_id}
        if m := _COMPUTE_UNITS.search(asset_id):
            detail["compute_units"] = m.group(1)
        return Artifact(EXECUTORCH_ASSET, e.path, is_dir, "ExecuTorch", detail=detail)
    if area in ("staging", "temp"):
        return Artifact(EXECUTORCH_SCRATCH, e.path, is_dir, "ExecuTorch", detail={"role": area})
    return None


def _classify_executorch_coreai(e: Entry, parts: list[str], is_dir: bool) -> Artifact | None:
    """ExecuTorch's Core AI backend under Library/Caches/executorch_coreai/ (its runtime README):
    `bookmarks/<key>.bookmark`, `staging/<key>/`, `locks/<key>.lock`, `.tmp-<UUID>` publications."""
    name = e.name
    if name.startswith(".tmp-"):
        return Artifact(EXECUTORCH_SCRATCH, e.path, is_dir, "ExecuTorch Core AI backend", detail={"role": "tmp"})
    if len(parts) != 5:
        return None
    area = parts[3]
    if area == "bookmarks" and not is_dir and name.endswith(".bookmark"):
        return Artifact(EXECUTORCH_ASSET, e.path, False, "ExecuTorch Core AI backend",
                        detail={"backend": "coreai", "role": "bookmark", "key": name.removesuffix(".bookmark")})
    if area == "staging" and is_dir:
        # Removed only with its key (the SDK entry, then staging, then the bookmark): never alone.
        return Artifact(EXECUTORCH_ASSET, e.path, True, "ExecuTorch Core AI backend",
                        detail={"backend": "coreai", "role": "staging", "key": name})
    if area == "locks":
        return None
    return Artifact(UNRECOGNISED, e.path, is_dir, detail={"reason": "unknown ExecuTorch Core AI layout"})


def _classify_tmp(e: Entry, parts: list[str], is_dir: bool) -> Artifact | None:
    """On-device compile output and scratch in tmp/ (producer tables in COREML-ON-DISK.md and
    FIELD-EVIDENCE.md)."""
    name = e.name
    if len(parts) >= 2 and parts[1] == "executorchcoreml":
        # Items in the trash folder (or its models/ folder), never the folders ExecuTorch recreates.
        if (len(parts) == 3 and parts[2] != "models") or (len(parts) == 4 and parts[2] == "models"):
            return Artifact(COMPILE_LEFTOVER, e.path, is_dir, "ExecuTorch", detail={"leftover": "trash"})
        return None
    if len(parts) >= 2 and parts[1] == MPSGRAPH_SCRATCH:
        if len(parts) != 3:
            return None
        if is_dir and (m := _MPSGRAPH.match(name)):
            return Artifact(MPSGRAPH_SCRATCH_KIND, e.path, True, "MPSGraph", detail={"pid": int(m.group(1))})
        return Artifact(UNRECOGNISED, e.path, is_dir, detail={"reason": "unknown MPSGraph scratch layout"})
    if len(parts) != 2:
        return None
    stem = name[: -len(".mlmodelc")] if name.endswith(".mlmodelc") else None
    if stem is not None and is_dir and (m := GUS.match(stem)):
        return Artifact(COMPILE_LEFTOVER, e.path, True, "TensorFlow Lite Core ML delegate",
                        detail={"leftover": "bundle", "pid": int(m.group(2))})
    if not is_dir and (m := GUS.match(name)):
        return Artifact(COMPILE_LEFTOVER, e.path, False, "TensorFlow Lite Core ML delegate",
                        detail={"leftover": "spec", "pid": int(m.group(2))})
    if m := _ORT.match(name):
        # onnxruntime-<GUS>.model.mlmodel (NN spec), onnxruntime-<GUS>/ (an ML package), or compiled output.
        leftover = "bundle" if name.endswith(".mlmodelc") else "package" if is_dir else "spec"
        return Artifact(COMPILE_LEFTOVER, e.path, is_dir, "ONNX Runtime Core ML EP",
                        detail={"leftover": leftover, "pid": int(m.group(1))})
    if (m := _TORCH_LEGACY.match(name)) and is_dir == (m.group(2) == ".mlmodelc"):
        leftover = {".mlmodelc": "bundle", ".version": "version"}.get(m.group(2) or "", "spec")
        return Artifact(COMPILE_LEFTOVER, e.path, is_dir, "PyTorch Core ML backend (legacy)",
                        detail={"leftover": leftover, "spec_sha256": m.group(1)})
    if is_dir and (m := _STEM_UUID.match(name)):
        return Artifact(COMPILE_LEFTOVER, e.path, True, "MLModel.compileModel(at:)",
                        detail={"leftover": "bundle", "stem": m.group(1)})
    if is_dir and (m := _LEGACY_PID.match(name)):
        return Artifact(COMPILE_LEFTOVER, e.path, True, "a per-process compile (model_<pid>_*)",
                        detail={"leftover": "bundle", "pid": int(m.group(1))})
    if is_dir and name.endswith(".mlmodelc"):
        return Artifact(COMPILE_LEFTOVER, e.path, True, "MLModel.compileModel(at:)", detail={"leftover": "bundle"})
    return None
