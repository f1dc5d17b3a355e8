"""Device backups (Finder, iTunes, idevicebackup2, pymobiledevice3): one container per app domain.

Format: Manifest.db is SQLite with `Files(fileID, domain, relativePath, flags, file)`; `file` is an
NSKeyedArchiver plist of an `MBFile`; payloads live at `<fileID[:2]>/<fileID>`. The database is opened
read-only and immutable so that no `-wal`/`-shm` file ever appears beside a customer's backup.
"""

from __future__ import annotations

import os
import posixpath
import re
import sqlite3
import urllib.parse
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from mlcache_audit.docfields import MAX_BYTES, posix_time
from mlcache_audit.errors import CorruptInput, EncryptedBackup
from mlcache_audit.sources.base import (
    DIR,
    FILE,
    SYMLINK,
    Container,
    Entry,
    display_path,
    join_rel,
    read_plist,
)
from mlcache_audit.vocab import OBSERVABLE_AREAS, Form, StoreKind

APP_DOMAIN_PREFIXES = ("AppDomain-", "AppDomainGroup-", "AppDomainPlugin-")
_FILE_ID = re.compile(r"^[0-9a-f]{40}$")
_MAX_MANIFEST_BYTES = 4 * 1024**3
BACKUP_NOT_OBSERVABLE = list(OBSERVABLE_AREAS)  # tmp/ and Library/Caches/ are never backed up (Apple)


@dataclass(slots=True)
class _Row:
    file_id: str
    path: str
    flags: int
    meta: dict


def open_backup(store, rel: str, bundle_id: str | None) -> list[Container]:
    """One container per app domain of the backup at `rel` in `store` (optionally only one app)."""
    base = store.label if not rel else f"{store.label}!{rel}" if store.kind != StoreKind.FOLDER else posixpath.join(store.label, rel)
    header_notes: list[str] = []

    def read(name: str, limit: int = 1 << 20) -> bytes | None:
        if store.kind == StoreKind.FOLDER:
            return store.read(join_rel(rel, name), limit, header_notes)
        return store.read(join_rel(rel, name), limit)

    manifest_plist = read_plist(read("Manifest.plist"))
    if manifest_plist.get("IsEncrypted"):
        raise EncryptedBackup(f"{base} is an encrypted backup: its Manifest.db cannot be read without the password",
                              hint="make an unencrypted backup, or decrypt it first")
    info_plist = read_plist(read("Info.plist"))
    rows = _read_manifest(store, rel, base)
    domains: dict[str, list[_Row]] = defaultdict(list)
    notes: dict[str, list[str]] = defaultdict(list)  # per domain: a bad row concerns its own app only
    for file_id, domain, rel_path, flags, blob in rows:
        if not isinstance(domain, str) or not domain.startswith(APP_DOMAIN_PREFIXES):
            continue
        if not isinstance(file_id, str) or not _FILE_ID.match(file_id):
            notes[domain].append(f"backup row skipped (fileID is not 40 hex digits): {display_path(str(file_id))}")
            continue
        if rel_path is not None and not isinstance(rel_path, str):
            notes[domain].append(f"backup row skipped (relativePath is not text): {file_id}")
            continue
        if isinstance(flags, bool) or not isinstance(flags, int | None) or (flags or 0) not in (0, 1, 2, 4):
            notes[domain].append(f"backup row skipped (flags is not 1, 2 or 4): {file_id}")
            continue
        path = rel_path or ""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if path.startswith("/") or ".." in parts:
            notes[domain].append(f"backup row skipped (relativePath leaves the domain): {display_path(path)}")
            continue
        if not parts:
            continue
        meta, problems = _mbfile(blob)
        notes[domain].extend(f"backup record of {display_path(path)}: {p}" for p in problems)
        domains[domain].append(_Row(file_id, "/".join(parts), int(flags or 0), meta))
    device = {
        "device_name": info_plist.get("Device Name"),
        "product_type": info_plist.get("Product Type"),
        "ios_version": info_plist.get("Product Version"),
        "ios_build": info_plist.get("Build Version"),
        "backup_date": _iso(info_plist.get("Last Backup Date")),
    }
    containers = []
    for domain in sorted(set(domains) | set(notes)):
        app_id = domain.split("-", 1)[1]
        if bundle_id and app_id != bundle_id:
            continue
        containers.append(BackupContainer(
            store=store, root=rel, form=Form.BACKUP, bundle_id=app_id, label=f"{base} [{domain}]",
            not_observable=list(BACKUP_NOT_OBSERVABLE), notes=header_notes + notes[domain],
            info={"domain": domain, **{k: v for k, v in device.items() if v is not None}},
            rows=domains[domain]))
    return containers


class BackupContainer(Container):
    """An app domain of a backup; entries come from Manifest.db rows, contents from payload files."""

    def __init__(self, *, rows: list[_Row], **kwargs):
        super().__init__(**kwargs)
        self._rows = {r.path: r for r in rows}

    def _walk(self, notes: list[str]) -> Iterator[Entry]:
        present: dict[str, set[str]] = {}
        for row in self._rows.values():
            m = row.meta
            mtime = m.get("LastModified")
            if row.flags == 2:
                yield Entry(row.path, DIR, 0, mtime, m.get("InodeNumber"))
            elif row.flags == 4:
                yield Entry(row.path, SYMLINK, 0, mtime, m.get("InodeNumber"), target=m.get("Target"))
            elif row.flags == 1:
                bucket = row.file_id[:2]
                if bucket not in present:
                    present[bucket] = set(self.store.list_dir(join_rel(self.root, bucket)) or ())
                if row.file_id not in present[bucket]:
                    notes.append(f"payload missing from the backup: {display_path(row.path)} ({row.file_id})")
                yield Entry(row.path, FILE, int(m.get("Size") or 0), mtime, m.get("InodeNumber"))

    def _walk_is_in_tree_order(self) -> bool:
        return False  # Manifest.db rows come in fileID order

    def _store_path(self, rel: str) -> str:
        row = self._rows.get(rel)
        file_id = row.file_id if row else "0" * 40
        return join_rel(self.root, f"{file_id[:2]}/{file_id}")

    def hash_key(self, entry: Entry) -> tuple | None:
        return None

    def hash_keys(self, entries: list[Entry]) -> list[tuple] | None:
        return None


def _read_manifest(store, rel: str, base: str) -> list[tuple]:
    db_rel = join_rel(rel, "Manifest.db")
    try:
        if store.kind == StoreKind.FOLDER:
            head = store.read(db_rel, 16) or b""
            _check_header(head, base)
            # quote() of the exact bytes: a backup folder's name need not be UTF-8.
            uri = "file:" + urllib.parse.quote(os.fsencode(store.real(db_rel))) + "?mode=ro&immutable=1"
            conn = sqlite3.connect(uri, uri=True)
        else:
            data = store.read(db_rel, _MAX_MANIFEST_BYTES) or b""
            _check_header(data[:16], base)
            conn = sqlite3.connect(":memory:")
            conn.deserialize(data)  # kept in memory: nothing is written anywhere
        try:
            return conn.execute("SELECT fileID, domain, relativePath, flags, file FROM Files").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise CorruptInput(f"{base}: Manifest.db cannot be read ({exc})",
                           hint="the backup may be truncated or still being written") from None


def _check_header(head: bytes, base: str) -> None:
    if not head.startswith(b"SQLite format 3\x00"):
        raise CorruptInput(f"{base}: Manifest.db is not an SQLite database (truncated, or encrypted)",
                           hint="if the backup is encrypted, make an unencrypted one")


def _mbfile(blob) -> tuple[dict, list[str]]:
    """Size, LastModified, InodeNumber, Mode, Target of an NSKeyedArchiver `MBFile` record, each
    type- and range-checked; (fields, problems) where a problem names a field that was dropped."""
    if blob is not None and not isinstance(blob, bytes):
        return {}, ["the file record is not a binary plist"]
    import plistlib  # read_plist has imported it

    archive = read_plist(blob)
    objects = archive.get("$objects")
    top = archive.get("$top", {}).get("root") if isinstance(archive.get("$top"), dict) else None
    if not isinstance(objects, list) or not isinstance(top, plistlib.UID) or top.data >= len(objects):
        return {}, ([] if blob is None else ["the file record is not an MBFile archive"])
    record = objects[top.data]
    if not isinstance(record, dict):
        return {}, ["the file record is not an MBFile archive"]
    out: dict = {}
    problems = []
    for key, high in (("Size", MAX_BYTES), ("InodeNumber", 1 << 64), ("Mode", 0o177777)):
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high:
            out[key] = value
        else:
            problems.append(f"{key} {value!r} is not a valid value; ignored")
    modified = record.get("LastModified")
    if isinstance(modified, datetime):
        modified = modified.timestamp()
    if modified is not None:
        if (t := posix_time(modified)) is not None:
            out["LastModified"] = t
        else:
            problems.append(f"LastModified {modified!r} is not a valid time; ignored")
    target = record.get("Target")
    if isinstance(target, plistlib.UID) and target.data < len(objects) and isinstance(objects[target.data], str):
        out["Target"] = objects[target.data]
    return out, problems


def _iso(value) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None
