"""The quarantine folder's format: a manifest of JSON lines and one folder per container.

    <quarantine>/manifest.jsonl                 one record per moved entry, written *before* the move
    <quarantine>/<store>/container.json         the container this store was made for
    <quarantine>/<store>/items/<token>          the moved entries, under short unique names

`<store>` is the first 12 hex digits of the SHA-1 of the container root's bytes, so a store can only
ever belong to one container. Reading the manifest back type-checks every field: a damaged line is
reported and skipped, and the rest is restored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass

from mlcache_audit import fsio
from mlcache_audit.docfields import Fields, read_document
from mlcache_audit.errors import DocumentInvalid, PathNotFound, PlanInvalid
from mlcache_audit.safety import may_act_on

MANIFEST = "manifest.jsonl"
STORE_INFO = "container.json"
STORE_SCHEMA = "mlcache.quarantine/1"
MAX_MANIFEST_BYTES = 256 * 1024**2
_STORED = re.compile(r"^([0-9a-f]{12})/items/([0-9a-f]{24})$")


def store_name(root: str) -> str:
    return hashlib.sha1(root.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def new_token() -> str:
    return os.urandom(12).hex()


@dataclass(frozen=True)
class Record:
    """One moved entry: where it came from and where in the quarantine it is."""

    line: int
    root: str
    client: str | None  # set for a per-process client, which shares its root with others
    bundle_id: str | None
    path: str
    stored: str  # <store>/items/<token>
    bytes: int
    rule: str

    @property
    def store(self) -> str:
        return self.stored.split("/", 1)[0]

    @property
    def token(self) -> str:
        return self.stored.rsplit("/", 1)[1]


def container_key(root: str, client: str | None) -> str:
    """As ContainerPlan.key: the root, and the client when it shares the root."""
    return f"{root}\0{client}" if client else root


def record_dict(root: str, bundle_id: str | None, path: str, stored: str, nbytes: int, rule: str, at: str, *,
                client: str | None = None) -> dict:
    return {**fsio.path_fields(root, "root"), "client": client, "bundle_id": bundle_id, **fsio.path_fields(path),
            "stored": stored, "bytes": nbytes, "rule": rule, "at": at}


def store_info(root: str, bundle_id: str | None, form: str, client: str | None = None,
               scope: tuple[str, ...] = ()) -> dict:
    return {"schema": STORE_SCHEMA, **fsio.path_fields(root, "root"), "bundle_id": bundle_id, "form": form,
            "client": client, "scope": list(scope)}


def read_manifest(directory: str) -> tuple[list[Record], set[str], list[tuple[int, str]]]:
    """(records, stored names already restored or cancelled, damaged lines as (line, why)).

    A manifest that cannot be read at all is the command's input failing: PlanInvalid (exit 2)."""
    try:
        raw = read_document(os.path.join(directory, MANIFEST), "quarantine manifest", MAX_MANIFEST_BYTES)
    except PathNotFound:
        raise PlanInvalid(f"{fsio.readable(directory)} is not an mlcache quarantine folder (no {MANIFEST})") from None
    records: list[Record] = []
    finished: set[str] = set()
    damaged: list[tuple[int, str]] = []
    for n, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            damaged.append((n, "not JSON"))
            continue
        try:
            rec = _record(doc, n)
        except DocumentInvalid as exc:
            damaged.append((n, exc.message))
            continue
        if isinstance(rec, str):
            finished.add(rec)
        else:
            records.append(rec)
    return records, finished, damaged


def _record(doc, n: int) -> Record | str:
    f = Fields(f"manifest line {n}")
    d = f.obj(doc, "the line")
    for marker in ("restored", "cancelled"):
        if marker in d:
            stored = f.text(d, marker, "the line")
            if not _STORED.match(stored):
                raise f.fail(marker, "is not a quarantine item name")
            return stored
    try:
        root = fsio.path_from(d, "root")
        path = fsio.path_from(d, "path")
    except ValueError as exc:
        raise f.fail("the line", str(exc)) from None
    if not os.path.isabs(root):
        raise f.fail("root", "is not an absolute path")
    if not may_act_on(path):
        raise f.fail("path", "is not a path mlcache may act on")
    stored = f.text(d, "stored", "the line")
    m = _STORED.match(stored)
    if not m:
        raise f.fail("stored", "does not lie inside the quarantine folder")
    client = f.text(d, "client", "the line", optional=True)
    if m.group(1) != store_name(container_key(root, client)):
        raise f.fail("stored", "lies in the store of another container than its root")
    return Record(n, root, client, f.text(d, "bundle_id", "the line", optional=True), path, stored,
                  f.integer(d, "bytes", "the line"), f.text(d, "rule", "the line"))


def read_store_info(directory: str, store: str) -> dict | None:
    """The container a store was made for, checked; None when missing or damaged."""
    try:
        doc = json.loads(fsio.read_regular(os.path.join(directory, store, STORE_INFO), 1 << 20))
        f = Fields("container.json")
        d = f.obj(doc, "the file")
        if d.get("schema") != STORE_SCHEMA:
            return None
        return {"root": fsio.path_from(d, "root"), "bundle_id": f.text(d, "bundle_id", "the file", optional=True),
                "form": f.text(d, "form", "the file"), "client": f.text(d, "client", "the file", optional=True),
                "scope": [s for s in f.texts(d, "scope", "the file") if may_act_on(s)]}
    except (OSError, ValueError, UnicodeDecodeError, DocumentInvalid):
        return None
