"""What a framework treats as one thing: the registry of units (FIELD-EVIDENCE.md, "Units a framework
treats as one thing"). A unit goes whole or not at all: no rule, default or opt-in, may plan part of
one, and the planner (plan.make_plan) refuses every member of a unit that a plan would take partly.

- a bundle or package (`.mlmodelc`, `.mlpackage`, `.aimodel`, an extensionless package holding
  `Manifest.json`): one artifact, already whole;
- the TensorFlow Lite delegate's spec `tmp/<GUS>` with its bundle `tmp/<GUS>.mlmodelc` (both removed
  only in ~CoreMlDelegateKernel: coreml_executor.mm, coreml_delegate_kernel.mm);
- ONNX Runtime's per-session `tmp/onnxruntime-<GUS>*` outputs;
- PyTorch's legacy `_coreml` set `<sha256>`, `<sha256>.mlmodelc`, `<sha256>.version` (PTMCoreMLCompiler.mm);
- an ONNX Runtime ModelCacheDirectory `<key>/` folder (model.txt and its partitions; PR #23065);
- a WhisperKit-style variant folder: the bundles of one model set (WhisperKit.swift, Models.swift);
- an ExecuTorch asset: `models/<id>.mlmodelc` (an `<id>.accessed` clock beside it, no artifact, makes it the
  model cache's, never acted on); a Core AI backend key:
  its bookmark and its staging (executorch backends/apple/coreai/runtime);
- a Core AI entry `<main.hash>/<options>/`, an E5RT entry (an interrupted write inside it is a unit of
  its own: Core ML renames it into place or abandons it).

A unit whose `root` is a folder that is not itself an artifact (an ONNX Runtime key, a model set) holds
files no artifact accounts for, so no plan can take it whole this round: its members are never acted on.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from dataclasses import dataclass

from mlcache_audit.domain import (
    COMPILE_LEFTOVER,
    COMPILED_MODEL,
    COREAI_SPECIALIZATION,
    E5_CACHE,
    EXECUTORCH_ASSET,
    ORT_MODEL_CACHE,
)
from mlcache_audit.scan import Artifact

_ORT_TMP = re.compile(r"^onnxruntime-[0-9A-Fa-f-]{36}-\d+-[0-9A-Fa-f]{16}")


# WhisperKit's components, every one needed to load a variant (argmaxinc/WhisperKit Models.swift).
WHISPERKIT_PARTS = frozenset(("MelSpectrogram", "AudioEncoder", "TextDecoder", "TextDecoderContextPrefill"))


@dataclass(frozen=True, slots=True)
class Unit:
    key: str  # what names the unit: "<framework>:<path>"
    framework: str
    root: str | None = None  # a folder that is the unit but no artifact (never an action this round)


def unit_of(a: Artifact, model_sets: frozenset[str] = frozenset()) -> Unit:
    """The unit an artifact belongs to (`model_sets`: the folders units_of found holding a model set)."""
    folder, name = posixpath.split(a.path)
    d = a.detail
    if a.kind == COMPILE_LEFTOVER:
        if a.producer == "TensorFlow Lite Core ML delegate":
            return Unit(f"tflite:{posixpath.join(folder, name.removesuffix('.mlmodelc'))}", "TensorFlow Lite")
        if a.producer == "PyTorch Core ML backend (legacy)":
            return Unit(f"pytorch:{posixpath.join(folder, d['spec_sha256'])}", "PyTorch _coreml")
        if m := _ORT_TMP.match(name):
            return Unit(f"onnxruntime-tmp:{posixpath.join(folder, m.group(0))}", "ONNX Runtime")
    if a.kind == ORT_MODEL_CACHE:
        return Unit(f"onnxruntime-cache:{folder}", "ONNX Runtime model cache", root=folder)
    if a.kind == EXECUTORCH_ASSET:
        if d.get("backend") == "coreml":
            return Unit(f"executorch:{posixpath.join(folder, d['asset_id'])}", "ExecuTorch")
        return Unit(f"executorch-coreai:{d.get('key', a.path)}", "ExecuTorch Core AI backend")
    if a.kind == COMPILED_MODEL and folder in model_sets:
        return Unit(f"model-set:{folder}", "a model set (WhisperKit-style variant)", root=folder)
    return Unit(f"artifact:{a.path}", a.producer or a.kind)


def model_set_folders(artifacts: list[Artifact]) -> frozenset[str]:
    """Folders holding two or more of WhisperKit's components side by side: one variant, one unit."""
    parts: dict[str, set[str]] = {}
    for a in artifacts:
        if a.kind == COMPILED_MODEL:
            folder, name = posixpath.split(a.path)
            stem = name.removesuffix(".mlmodelc")
            if stem in WHISPERKIT_PARTS:
                parts.setdefault(folder, set()).add(stem)
    return frozenset(f for f, names in parts.items() if len(names) >= 2)


def units_of(artifacts: list[Artifact]) -> dict[str, Unit]:
    """Every artifact's unit, by path."""
    sets = model_set_folders(artifacts)
    return {a.path: unit_of(a, sets) for a in artifacts}


def partial_units(chosen: set[str], units: dict[str, Unit]) -> dict[str, str]:
    """The chosen paths that would take part of a unit, each with why: every member of a unit must be
    chosen, and a unit whose root is no artifact is never chosen at all."""
    # Counted, not collected: a set of members per unit was 3.5 MB at 15,000 targets. Only the
    # units some member of which would stay get their members listed.
    size = Counter(u.key for u in units.values())
    picked = Counter(units[p].key for p in chosen if p in units)
    short = {key for key, n in picked.items() if n < size[key]}
    stay: dict[str, str] = {}
    for path, u in units.items():
        if u.key in short and path not in chosen and (u.key not in stay or path < stay[u.key]):
            stay[u.key] = path  # the first member by code point, as sorted() gives
    out: dict[str, str] = {}
    for path in chosen:
        u = units.get(path)
        if u is None:
            continue
        if u.root is not None:
            out[path] = f"part of {u.framework} unit {u.root}/, which goes whole or not at all"
        elif u.key in short:
            out[path] = f"part of {u.framework} unit {u.key.split(':', 1)[1]}; {stay[u.key]} would stay"
    return out


_SHAPE = re.compile(r"(?:^|/)([A-Za-z_][A-Za-z0-9_]*?)_(\d+(?:x\d+)+)(?=/|$)")


def entry_shapes(a: Artifact) -> frozenset[str]:
    """Input shapes an E5RT entry's inner folders record (`H16G.bundle/main_1x3x128x128/...`; not
    documented, seen in the field): empty when it records none."""
    return frozenset(m.group(2) for name in a.detail.get("layout", ()) for m in _SHAPE.finditer(name))


def model_shapes(a: Artifact) -> frozenset[str]:
    """Input shapes a compiled bundle's metadata.json records (`input_1 [1, 128, 128, 1]` -> 1x128x128x1)."""
    out = set()
    for item in a.model.get("inputs") or ():
        if "[" in item and (dims := re.findall(r"-?\d+", item[item.rindex("["):])):
            out.add("x".join(dims))
    return frozenset(out)


def client_of(a: Artifact, container_client: str | None) -> str | None:
    """Whose cache an artifact is: the folder that holds an E5RT cache, a Core AI entry's client folder,
    else the container's client."""
    if a.kind == COREAI_SPECIALIZATION:
        return a.detail.get("client")
    parts = a.path.split("/")
    if E5_CACHE in parts:
        i = parts.index(E5_CACHE)
        return parts[i - 1] if i >= 1 and parts[i - 1] != "Caches" else container_client
    return container_client


def target_facts(a: Artifact, unit: Unit, content: str | None, container_client: str | None,
                 asserted: dict) -> dict:
    """What a target says of itself, for the planner to compare with what its evidence link asserts
    (`asserted`); its input shapes are read from every layout name, so only a link about a shape
    pays for them."""
    d = a.detail
    return {"unit": unit.key, "model": content, "pid": d.get("pid"), "asset_id": d.get("asset_id"),
            "store": d.get("store"), "build": d.get("build"), "client": client_of(a, container_client),
            "shape": entry_shapes(a) if "shape" in asserted else None}


def link_mismatch(about: dict, facts: dict) -> str | None:
    """Why a link's assertions do not name this target (None: every one holds). A shape holds when
    the target records none (a missing shape folder is no mismatch)."""
    for key, value in about.items():
        own = facts.get(key)
        if key == "shape":
            if own and value not in own:
                return f"its evidence is about input shape {value}, the target records {', '.join(sorted(own))}"
        elif own != value:
            return f"its evidence names {key} {value!r}, the target's own is {own!r}"
    return None
