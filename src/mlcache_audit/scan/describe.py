"""What recognition reads: each artifact described from the few files that say what it is
(metadata.json, manifests, the head of model.mil, source specs), and the ExecuTorch index."""

from __future__ import annotations

import os

from mlcache_audit import models
from mlcache_audit.domain import (
    COMPILE_LEFTOVER,
    COMPILED_MODEL,
    COREAI_SPECIALIZATION,
    EXECUTORCH_ASSET,
    SOURCE_MODEL,
    SPECIALIZATION,
    SPECIALIZATION_PARTIAL,
)
from mlcache_audit.scan.classify import HEX64
from mlcache_audit.scan.identity import artifact_identity
from mlcache_audit.scan.model import NO_LAYOUT, Artifact, layout_memo
from mlcache_audit.sources.base import Container

# Files of an E5RT pointer entry (no bundle of its own): FIELD-EVIDENCE.md, "Entry contents vary".
_POINTER_FILES = ("model.milhash", "model.anehash", "universal.bundle")


def _is_bundle(a: Artifact, names: set[str]) -> bool:
    return a.is_dir and a.kind in (COMPILED_MODEL, COMPILE_LEFTOVER, EXECUTORCH_ASSET) and \
        (a.path.endswith(".mlmodelc") or "coremldata.bin" in names)


def bundle_key(container: Container, a: Artifact, names: set[str]) -> str | None:
    """The hash-cache key of a compiled bundle's summary (None: not a bundle, or no key in this store):
    its identity, so the summary is read again when any of its files changed."""
    if not _is_bundle(a, names):
        return None
    return artifact_identity(container, a)


def describe(container: Container, a: Artifact, names: set[str], key: str | None, known: dict,
              progress=None, model_cache=None) -> None:
    """Read what recognition needs to say what a bundle or source model is. `names`: the artifact's
    files, relative to it; `key`: its bundle key, and `known` the summaries cached under such keys."""
    if _is_bundle(a, names):
        if "coremldata.bin" not in names:
            a.notes.append("no coremldata.bin at the top: not a complete compiled bundle")
        cached = known.get(key) if key else None
        if cached is not None:  # the files read below are unchanged since they were last read
            summary, notes = cached
        else:
            summary, notes = _bundle_summary(container, a, names)
            if key:
                model_cache.put_bundle(key, summary, notes)
        a.notes.extend(notes)
        a.model = summary
        a.detail["bundle"] = True
    elif a.kind == SOURCE_MODEL and a.detail.get("format") == "aimodel":
        # main.hash is the SHA-256 of main.mlirb; Core AI's cache names the model's folder by it.
        if "main.hash" in names:
            a.detail["main_hash"] = _hash_text(container.read(f"{a.path}/main.hash", 1024))
        else:
            a.notes.append("main.hash missing: the package is incomplete")
        if "main.mlirb" not in names:
            a.notes.append("main.mlirb missing: the package is incomplete")
    elif a.kind == SOURCE_MODEL:
        # Only real source models are inspected (coremltools costs ~1 s to import); compile inputs in
        # tmp/ are grouped by content, which needs no parse.
        spec_path = a.path
        if a.is_dir:
            root, notes = models.mlpackage_root_model(
                container.read(f"{a.path}/Manifest.json") if "Manifest.json" in names else None)
            a.notes.extend(notes)
            spec_path = f"{a.path}/{root}" if root and root in names else None
        size = next((e.size for e in a.members if e.path == spec_path), 0) if spec_path else 0
        if spec_path and size > models.MAX_SPEC_BYTES:
            a.notes.append("source model not inspected: larger than 256 MB")
        elif spec_path:
            spec = next(e for e in a.members if e.path == spec_path)
            key = container.hash_key(spec) if model_cache is not None else None
            cached = model_cache.get_model(key) if key else None
            if cached is not None:  # read before, unchanged: coremltools is not imported at all
                a.model, notes = cached
                a.notes.extend(notes)
                return
            if progress and not models.coremltools_loaded():
                progress("loading coremltools to read a source model", 0)
            data = container.read(spec_path, models.MAX_SPEC_BYTES)
            if data is not None:
                a.model, notes = models.inspect_source_spec(data)
                a.notes.extend(notes)
                if key:
                    model_cache.put_model(key, a.model, notes)
    elif a.kind in (SPECIALIZATION, SPECIALIZATION_PARTIAL, COREAI_SPECIALIZATION):
        # The inner names carry the function, input shape and compute path (main_480x272/main_ane).
        layout, contents = _layout_of(frozenset(a.layout))
        a.detail["layout"] = layout
        if a.kind == SPECIALIZATION:
            a.detail["contents"] = contents if a.layout or not a.detail.get("interrupted_writes") else "interrupted"
            if a.detail["contents"] == "empty":
                a.notes.append("no bytes: folders emptied by a purge (APFS keeps them); not corruption")
        a.layout = NO_LAYOUT  # its names are in detail["layout"] now: the set goes


def _bundle_summary(container: Container, a: Artifact, names: set[str]) -> tuple[dict, list[str]]:
    summary, notes = models.summarize_metadata(
        container.read(f"{a.path}/metadata.json") if "metadata.json" in names else None)
    if "analytics/coremldata.bin" in names and (h := models.net_hash(container.read(f"{a.path}/analytics/coremldata.bin"))):
        summary["net_hash"] = h
    if "model.mil" in names:
        summary.update(models.mil_build_info(container.read(f"{a.path}/model.mil", 4096)))
        summary.setdefault("type", "mlprogram")
    elif "model.espresso.net" in names:
        summary.setdefault("type", "neuralnetwork")
    if any(n.startswith("model0/") for n in names):
        summary.setdefault("type", "pipeline")
    return summary, notes


@layout_memo
def _layout_of(names: frozenset[str]) -> tuple[tuple[str, ...], str]:
    """An entry's layout names in order (one shared tuple per layout), and what it holds."""
    return tuple(sorted(names)), _entry_contents(names)


def _entry_contents(names: frozenset[str]) -> str:
    """bundle (a specialization of its own), pointer (model.milhash, .e5, model.anehash,
    universal.bundle: it points at one held elsewhere), or empty (emptied by a purge); an entry
    holding only an interrupted write is `interrupted` (set by the caller)."""
    if not names:
        return "empty"
    tops = {n.split("/", 1)[0] for n in names}
    if all(t in _POINTER_FILES or t.endswith(".e5") for t in tops):
        return "pointer"
    return "bundle"


def _hash_text(data: bytes | None) -> str | None:
    """main.hash as lowercase hex: 32 raw bytes, or 64 hex digits as text."""
    if not data:
        return None
    text = data.strip()
    if len(text) == 64 and HEX64.match(text.decode("ascii", "replace")):
        return text.decode("ascii").lower()
    return data.hex() if len(data) == 32 else None


_ASSETS_DB = "Library/Application Support/executorchcoreml/assets.db"
_SQLITE_BUDGET = 20_000  # x 1,000 virtual-machine steps: about a second, far more than any real index needs


def read_indexes(container: Container, artifacts: list[Artifact], notes: list[str]) -> dict:
    """Keys of the ExecuTorch asset store's index (`MODEL_ASSETS_STORE` in assets.db), if present:
    {"executorch": keys or None (unreadable), "executorch_db": whether assets.db is there}.

    A real assets.db is in WAL mode: rows still in `assets.db-wal` are part of it, and a reader of the
    main file alone would call live assets orphans. Both files are copied into a private folder and
    opened there, as SQLite would open them (it replays the WAL); nothing is ever written beside the
    container's own files. A WAL-mode database whose -wal is missing or unreadable gives no keys."""
    if not any(a.kind == EXECUTORCH_ASSET and a.detail.get("backend") == "coreml" for a in artifacts):
        return {}
    import sqlite3
    import tempfile

    data = container.read(_ASSETS_DB, 256 * 1024**2)
    if not data or not data.startswith(b"SQLite format 3\x00") or len(data) < 100:
        notes.append("ExecuTorch assets.db missing or unreadable: orphaned assets cannot be told")
        return {"executorch": None, "executorch_db": bool(data)}
    wal_mode = data[18] == 2 or data[19] == 2  # the header's file format versions: 2 means WAL
    wal = container.read(_ASSETS_DB + "-wal", 256 * 1024**2) if wal_mode else None
    if wal_mode and not wal:
        notes.append("ExecuTorch assets.db is in WAL mode and its assets.db-wal is missing or unreadable: rows "
                     "may be missing from the main file, so no asset is called an orphan")
        return {"executorch": None, "executorch_db": True}
    with tempfile.TemporaryDirectory(prefix="mlcache-assets-") as private:
        db = os.path.join(private, "assets.db")
        with open(db, "wb") as out:
            out.write(data)
        if wal:
            with open(db + "-wal", "wb") as out:
                out.write(wal)
        conn = None
        try:
            conn = sqlite3.connect(db)
            # A container's file is hostile input: a view (a recursive one never ends), a trigger or a
            # huge table must not hang the scan. Only a real table is read, with a bounded budget.
            steps = [0]

            def budget() -> int:
                steps[0] += 1
                return 1 if steps[0] > _SQLITE_BUDGET else 0

            conn.set_progress_handler(budget, 1000)
            kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'MODEL_ASSETS_STORE'").fetchone()
            if kind is None or kind[0] != "table":
                raise sqlite3.DatabaseError("not a table")
            keys = {row[0] for row in conn.execute("SELECT ENTRY_KEY FROM MODEL_ASSETS_STORE")}
        except sqlite3.DatabaseError:
            notes.append("ExecuTorch assets.db has no readable MODEL_ASSETS_STORE table: orphaned assets cannot be told")
            return {"executorch": None, "executorch_db": True}
        finally:
            if conn is not None:
                conn.close()
    return {"executorch": {str(k) for k in keys}, "executorch_db": True}
