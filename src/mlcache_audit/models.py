"""What a model is: summaries of a compiled bundle's metadata.json and of a source model's spec.

coremltools is imported only inside `inspect_source_spec`, the one place a source model is read,
and its import-time warnings and log lines are kept off the user's screen.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
import warnings

from mlcache_audit.docfields import load_json
from mlcache_audit.errors import DocumentInvalid

MAX_SPEC_BYTES = 256 * 1024**2  # larger .mlmodel files are listed but not parsed
_NET_HASH = re.compile(rb"nnModelNetHash.{0,8}?([A-Za-z0-9+/]{43}=)", re.S)


def summarize_metadata(data: bytes | None) -> tuple[dict, list[str]]:
    """(summary, notes) from a compiled bundle's `metadata.json` (a JSON array of one object)."""
    if data is None:
        return {}, ["metadata.json missing"]
    try:
        doc = load_json(data, "metadata.json")
    except DocumentInvalid as exc:
        return {}, [exc.message]
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        doc = doc[0]
    if not isinstance(doc, dict):
        return {}, ["metadata.json has an unexpected shape"]
    model_type = doc.get("modelType", {})
    type_name = model_type.get("name") if isinstance(model_type, dict) else None
    udm = doc.get("userDefinedMetadata") if isinstance(doc.get("userDefinedMetadata"), dict) else {}
    summary = {
        "type": _model_type(type_name),
        "type_name": type_name,
        "spec_version": doc.get("specificationVersion"),
        "inputs": _schema(doc.get("inputSchema")),
        "outputs": _schema(doc.get("outputSchema")),
        "coremltools_version": udm.get("com.github.apple.coremltools.version"),
        "source": udm.get("com.github.apple.coremltools.source"),
        "class_name": doc.get("generatedClassName"),
        "compute_precision": doc.get("computePrecision"),
        "functions": [f.get("name") for f in doc["functions"] if isinstance(f, dict)]
        if isinstance(doc.get("functions"), list) else None,
    }
    return {k: v for k, v in summary.items() if v not in (None, [], "")}, []


def net_hash(analytics: bytes | None) -> str | None:
    """The base64 SHA-256 of the network that `analytics/coremldata.bin` carries, if present."""
    if not analytics:
        return None
    match = _NET_HASH.search(analytics)
    if not match:
        return None
    try:
        base64.b64decode(match.group(1), validate=True)
    except ValueError:
        return None
    return match.group(1).decode()


def mil_build_info(head: bytes | None) -> dict:
    """`program(1.x)` version and coremlc/coremltools versions from the first lines of `model.mil`."""
    if not head:
        return {}
    text = head[:4096].decode("utf-8", "replace")
    out = {}
    if m := re.search(r"program\((\d+(?:\.\d+)?)\)", text):
        out["mil_version"] = m.group(1)
    for key in ("coremlc-version", "coremltools-version"):
        if m := re.search(r'"?' + re.escape(key) + r'"?\s*,\s*"([^"]+)"', text):
            out[key.replace("-", "_")] = m.group(1)
    return out


def mlpackage_root_model(manifest: bytes | None) -> tuple[str | None, list[str]]:
    """Path (inside the package) of the root model spec named by `Manifest.json`."""
    if manifest is None:
        return None, ["Manifest.json missing"]
    try:
        doc = load_json(manifest, "Manifest.json")
        root = doc["rootModelIdentifier"]
        entry = doc["itemInfoEntries"][root]
        return "Data/" + entry["path"], []
    except DocumentInvalid as exc:
        return None, [exc.message]
    except (KeyError, TypeError, IndexError):
        return None, ["Manifest.json does not name a root model"]


def inspect_source_spec(data: bytes) -> tuple[dict, list[str]]:
    """(summary, notes) of a `CoreML.Specification.Model` protobuf, read with coremltools."""
    try:
        model_pb2 = _coremltools_proto()
    except Exception as exc:  # noqa: BLE001 - any import failure means "cannot inspect", not a crash
        return {}, [f"source model not inspected: coremltools unavailable ({type(exc).__name__})"]
    spec = model_pb2.Model()
    try:
        spec.ParseFromString(data)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
        return {}, ["source model cannot be parsed as a Core ML spec"]
    kind = spec.WhichOneof("Type")
    desc = spec.description
    summary = {
        "type": _model_type(kind),
        "type_name": kind,
        "spec_version": spec.specificationVersion,
        "inputs": [i.name for i in desc.input],
        "outputs": [o.name for o in desc.output],
        "coremltools_version": desc.metadata.userDefined.get("com.github.apple.coremltools.version"),
        "source": desc.metadata.userDefined.get("com.github.apple.coremltools.source"),
    }
    return {k: v for k, v in summary.items() if v not in (None, [], "")}, []


def coremltools_loaded() -> bool:
    import sys

    return "coremltools.proto.Model_pb2" in sys.modules


def _coremltools_proto():
    import logging

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from coremltools.proto import Model_pb2  # heavy: only here
    return Model_pb2


def _model_type(name: str | None) -> str | None:
    if not name:
        return None
    low = name.lower()
    for key, label in (("mlprogram", "mlprogram"), ("pipeline", "pipeline"), ("neuralnetwork", "neuralnetwork")):
        if key in low.replace("_", ""):
            return label
    return name.removeprefix("MLModelType_")


def _schema(items) -> list[str] | None:
    if not isinstance(items, list):
        return None
    out = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            shape = item.get("shape") or item.get("formattedType") or ""
            out.append(f"{item['name']} {shape}".strip())
    return out
