"""The quarantine folder's format: a manifest of JSON lines and one folder per container.

    <quarantine>/manifest.jsonl                 one record per moved entry, written *before* the move
    <quarantine>/<store>/container.json         the container this store was made for
    <quarantine>/<store>/items/<token>          the moved entries, under short unique names

`<store>` is the first 12 hex digits of the SHA-1 of the container root's bytes, so a store can only
ever belong to one container; its container.json (`mlcache.quarantine/2`) records that container's
identity (identity.py: device and inode of the real root, and the client). Restore validates every
record before it moves any (`validate`): a damaged line, a store that does not match its records or
a container that is not the one the store was made from means nothing is moved. The one exception
is a torn last line without its newline: the run died writing it, before the move it announced.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from mlcache_audit import fsio
from mlcache_audit.docfields import Fields, load_json, read_document
from mlcache_audit.errors import DocumentInvalid, PathNotFound, PlanInvalid
from mlcache_audit.identity import ContainerKey, key_of
from mlcache_audit.safety import may_act_on

MANIFEST = "manifest.jsonl"
STORE_INFO = "container.json"
STORE_SCHEMA = "mlcache.quarantine/2"
STORE_SCHEMAS = ("mlcache.quarantine/1", STORE_SCHEMA)  # /1 stores (no identity) are still read
MAX_MANIFEST_BYTES = 256 * 1024**2  # a record is ~400 bytes: room for 600,000 moved entries
MAX_STORE_INFO_BYTES = 1 << 20
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
               scope: tuple[str, ...] = (), identity: ContainerKey | None = None) -> dict:
    return {"schema": STORE_SCHEMA, **fsio.path_fields(root, "root"), "bundle_id": bundle_id, "form": form,
            "client": client, "scope": list(scope), "identity": identity.to_dict() if identity else None}


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
    lines = raw.split(b"\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = load_json(line, "manifest line")
        except DocumentInvalid as exc:
            if n == len(lines):  # a torn last line (no newline): the move it announced never began
                continue
            damaged.append((n, exc.message.removeprefix("manifest line ")))
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
        fd = fsio.open_under(directory, [store])
        try:
            doc = load_json(fsio.read_regular(STORE_INFO, MAX_STORE_INFO_BYTES + 1, dir_fd=fd), "container.json",
                            MAX_STORE_INFO_BYTES)
        finally:
            os.close(fd)
        f = Fields("container.json")
        d = f.obj(doc, "the file")
        if d.get("schema") not in STORE_SCHEMAS:
            return None
        ident = d.get("identity")
        if ident is not None:
            i = f.obj(ident, "identity")
            ident = ContainerKey(f.integer(i, "dev", "identity", high=1 << 64), f.integer(i, "ino", "identity", high=1 << 64),
                                 f.text(i, "client", "identity", optional=True))
        return {"root": fsio.path_from(d, "root"), "bundle_id": f.text(d, "bundle_id", "the file", optional=True),
                "form": f.text(d, "form", "the file"), "client": f.text(d, "client", "the file", optional=True),
                "scope": [s for s in f.texts(d, "scope", "the file") if may_act_on(s)], "identity": ident}
    except (OSError, ValueError, UnicodeDecodeError, DocumentInvalid):
        return None


@dataclass(frozen=True)
class Checked:
    """A record that passed validation, with the store it lies in and the container key it goes back to."""

    record: Record
    info: dict
    key: ContainerKey


def validate(directory: str, records: list[Record], damaged: list[tuple[int, str]],
             container_of: Callable[[str], tuple | None]) -> list[Checked]:
    """Every record checked before any is moved; PlanInvalid (exit 2, nothing moved) names the first
    that fails. A record passes when its line is whole, its store's container.json matches it, its
    path lies in the client's scope (a per-process client), and the container at its root is the one
    the store was made from: the same identity (device and inode of the real root, reached without a
    symlink) for a /2 store, and in any store the same bundle id found there by detection
    (`container_of(root)`), or for a client's scope a real `Library/Caches` folder."""
    def refuse(line: int, why: str) -> PlanInvalid:
        return PlanInvalid(f"{MANIFEST} line {line}: {why}; nothing was restored",
                           hint="restore only quarantines made by mlcache, into the container they came from")

    if damaged:
        n, reason = damaged[0]
        raise refuse(n, f"damaged ({reason})")
    stores: dict[str, dict | None] = {}
    keys: dict[tuple, ContainerKey | None] = {}
    out = []
    for rec in records:
        if rec.store not in stores:
            stores[rec.store] = read_store_info(directory, rec.store)
        info = stores[rec.store]
        if info is None:
            raise refuse(rec.line, f"its store {rec.store}/{STORE_INFO} is missing or damaged")
        if info["root"] != rec.root or info["bundle_id"] != rec.bundle_id or info["client"] != rec.client:
            raise refuse(rec.line, "it does not match the container its quarantine store was made for")
        if info["scope"] and not any(rec.path == s or rec.path.startswith(s + "/") for s in info["scope"]):
            raise refuse(rec.line, "its path is not inside the client's caches it was taken from")
        where = (rec.root, rec.client if info["scope"] else None)
        if where not in keys:
            keys[where] = key_of(*where)
        key = keys[where]
        if key is None:
            raise refuse(rec.line, f"{fsio.readable(rec.root)} is gone, or is reached through a symlink")
        if info["identity"] is not None and info["identity"] != key:
            raise refuse(rec.line, f"{fsio.readable(rec.root)} is not the container this was taken from "
                                   "(another folder is there now)")
        if info["scope"]:
            if not rec.root.endswith(f"{os.sep}Library{os.sep}Caches"):
                raise refuse(rec.line, f"{fsio.readable(rec.root)} is not a Library/Caches folder")
        else:
            found = container_of(rec.root)
            if found is None or found[0] != info["bundle_id"]:
                raise refuse(rec.line, f"{fsio.readable(rec.root)} no longer holds the container this was taken "
                                       f"from ({info['bundle_id'] or 'unknown bundle id'})")
        out.append(Checked(rec, info, key))
    return out


def append_lines(path, records: list[dict]) -> None:
    """Manifest records, appended in one write and synced once: a group's records before any of
    its moves (apply._begin), so the manifest knows where each entry may be whatever happens next.
    A crash before the sync returns has moved none of them (restore skips a record whose entry
    never arrived, and a torn last line is that crash); one after it finds all of them on disk.
    A write or sync that fails (a full disk) is taken back to the manifest's size before it, so no
    torn line is left for a later run to append after (restore refuses a damaged line that is not
    the last); the manifest is locked while it is appended to, so what is taken back is only ours
    (two runs may quarantine into one folder)."""
    import fcntl

    data = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | fsio.NOFOLLOW | fsio.NONBLOCK, 0o644)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # a FIFO put there would block the run; a device is no manifest
            raise fsio.NotRegularFile(errno.EINVAL, f"the manifest is not a regular file ({fsio.file_type(mode)})")
        os.set_blocking(fd, True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = True
        except OSError:  # a file system without locks: appended all the same, never taken back
            locked = False
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            if locked:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)  # the lock goes with it


class Unannounced(OSError):
    """The manifest could not take a group's records: none of the group is moved."""


def announce(quarantine, root: str, bundle_id: str | None, client: str | None, store: str,
             entries: list[tuple[str, str, int, str]]) -> None:
    """The records of a group of moves about to begin ((path, token, bytes, rule) each), synced
    together before the first of them (append_lines: why that holds)."""
    at = now()
    try:
        append_lines(os.path.join(quarantine, MANIFEST), [
            record_dict(root, bundle_id, path, f"{store}/items/{token}", nbytes, rule, at, client=client)
            for path, token, nbytes, rule in entries])
    except OSError as exc:
        raise Unannounced(exc.errno, exc.strerror) from None


def mark_restored(directory: str, stored: list[str]) -> str | None:
    """The `restored` lines of entries put back, synced once, after their moves (a line lost to a
    crash only makes a later restore pass over an entry that is not there); why not, if not."""
    if not stored:
        return None
    at = now()
    try:
        append_lines(os.path.join(directory, MANIFEST), [{"restored": s, "at": at} for s in stored])
    except OSError as exc:
        return fsio.why(exc)
    return None


def cancel(quarantine, store: str, tokens: list[str]) -> None:
    """The records of entries announced and then not moved, ended (restore passes over them). A
    crash before this leaves them standing: restore finds nothing there and skips them, never moved."""
    if not tokens:
        return
    at = now()
    try:
        append_lines(os.path.join(quarantine, MANIFEST), [{"cancelled": f"{store}/items/{t}", "at": at} for t in tokens])
    except OSError:
        pass  # a full disk: restore still passes over an entry that is not there


def store_items(quarantine, store: str, cp) -> int:
    """The fd of `<quarantine>/<store>/items` for the container of plan `cp`, made with its
    container.json (synced) on first use: a store's records are only ever written after it."""
    store_fd = fsio.open_under(str(quarantine), [store], create=True)
    try:
        try:
            fd = os.open(STORE_INFO, os.O_WRONLY | os.O_CREAT | os.O_EXCL | fsio.NOFOLLOW, 0o644, dir_fd=store_fd)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                identity = key_of(cp.root, cp.client if cp.scope else None)
                fh.write(json.dumps(store_info(cp.root, cp.bundle_id, cp.form, cp.client, cp.scope, identity)) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return fsio.open_under(str(quarantine), [store, "items"], create=True)
    finally:
        os.close(store_fd)


def now() -> str:
    return datetime.now(timezone.utc).isoformat()
