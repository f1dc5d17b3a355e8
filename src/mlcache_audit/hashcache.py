"""A persistent cache of content hashes for live folders, keyed by (device, inode, size, mtime_ns, ctime_ns).

Two tables are keyed by an artifact's identity instead (`scan.artifact_identity`: each of its
files' name and key): a compiled bundle's summary and a model artifact's content digest, so an
unchanged copy costs one look-up, not one per file.

ctime is in the key because an in-place edit can keep mtime (`touch -r`, tools that restore it) but
always changes the status-change time.

It lives in the user's cache folder (`~/Library/Caches/mlcache` on macOS, `$XDG_CACHE_HOME/mlcache`
or `~/.cache/mlcache` elsewhere; `MLCACHE_CACHE_DIR` overrides it) and never inside a container.
`--no-hash-cache` turns it off. Any failure to open or write it only turns it off for the run.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

CACHE_FILE = "hashes-v2.sqlite3"  # v2 adds ctime_ns to the key


def default_cache_dir() -> Path:
    """The cache folder of this run (places.py)."""
    from mlcache_audit.places import current

    return current().cache


class HashCache:
    """Full-content digests of files seen before; a hit means the file is not read again."""

    def __init__(self, directory: Path | None = None):
        self.path = (directory or default_cache_dir()) / CACHE_FILE
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple] = []
        self._new_bundles: dict[str, str] = {}
        self._new_artifacts: dict[str, str] = {}
        self.disabled_reason: str | None = None

    def _open(self) -> sqlite3.Connection | None:
        if self._conn is None and self.disabled_reason is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, timeout=2)
                self._conn.execute("CREATE TABLE IF NOT EXISTS hashes (dev INTEGER, ino INTEGER, size INTEGER, "
                                   "mtime_ns INTEGER, ctime_ns INTEGER, digest TEXT, PRIMARY KEY (dev, ino))")
                # What coremltools said of a source model, so a second scan never imports it again.
                self._conn.execute("CREATE TABLE IF NOT EXISTS models (dev INTEGER, ino INTEGER, size INTEGER, "
                                   "mtime_ns INTEGER, ctime_ns INTEGER, summary TEXT, PRIMARY KEY (dev, ino))")
                # A compiled bundle's summary, keyed by the identities of the files it was read from.
                self._conn.execute("CREATE TABLE IF NOT EXISTS bundles (key TEXT PRIMARY KEY, summary TEXT)")
                # A model artifact's content digest (fingerprint._artifact_digest), keyed by its identity.
                self._conn.execute("CREATE TABLE IF NOT EXISTS artifacts (identity TEXT PRIMARY KEY, digest TEXT)")
            except (OSError, sqlite3.Error) as exc:
                self.disabled_reason = f"hash cache off: {exc}"
                self._conn = None
        return self._conn

    def get_many(self, keys: list[tuple]) -> dict[tuple, str]:
        """Cached digests of the files `keys` name (dev, ino, size, mtime_ns, ctime_ns), when unchanged."""
        conn = self._open()
        if conn is None or not keys:
            return {}
        by_dev: dict[int, dict[int, tuple]] = {}
        for k in keys:
            by_dev.setdefault(k[0], {})[k[1]] = k
        found: dict[tuple, str] = {}
        try:
            for dev, wanted in by_dev.items():
                inos = list(wanted)
                for i in range(0, len(inos), 900):
                    chunk = inos[i:i + 900]
                    for ino, size, mtime_ns, ctime_ns, digest in conn.execute(
                            "SELECT ino, size, mtime_ns, ctime_ns, digest FROM hashes "
                            f"WHERE dev=? AND ino IN ({','.join('?' * len(chunk))})", [dev, *chunk]):
                        key = wanted.get(ino)
                        if key is not None and (size, mtime_ns, ctime_ns) == key[2:5]:
                            found[key] = digest
        except sqlite3.Error as exc:
            self.disabled_reason = f"hash cache off: {exc}"
            return {}
        return found

    def get_model(self, key: tuple) -> tuple[dict, list[str]] | None:
        """(summary, notes) of the source model file `key` names, if it was read unchanged before."""
        import json

        conn = self._open()
        if conn is None:
            return None
        try:
            row = conn.execute("SELECT size, mtime_ns, ctime_ns, summary FROM models WHERE dev=? AND ino=?",
                               key[:2]).fetchone()
        except sqlite3.Error:
            return None
        if row is None or tuple(row[:3]) != tuple(key[2:5]):
            return None
        return _summary_doc(json.loads, row[3])

    def put_model(self, key: tuple, summary: dict, notes: list[str]) -> None:
        import json

        conn = self._open()
        if conn is None:
            return
        try:
            with conn:
                conn.execute("INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, ?)",
                             (*key[:5], json.dumps({"summary": summary, "notes": notes})))
        except sqlite3.Error as exc:
            self.disabled_reason = f"hash cache not saved: {exc}"

    def get_bundles(self, keys: list[str]) -> dict[str, tuple[dict, list[str]]]:
        """(summary, notes) of every compiled bundle whose files' key was seen before, in few queries."""
        import json

        conn = self._open()
        if conn is None or not keys:
            return {}
        found: dict[str, tuple[dict, list[str]]] = {}
        read: dict[str, tuple[dict, list[str]] | None] = {}  # copies of one bundle share one text: parsed once
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                rows = conn.execute(f"SELECT key, summary FROM bundles WHERE key IN ({','.join('?' * len(chunk))})",
                                    chunk).fetchall()
                for key, text in rows:
                    if text in read:  # parsed already: each artifact still gets its own dict and list
                        doc = read[text]
                        if doc is not None:
                            found[key] = dict(doc[0]), list(doc[1])
                    elif (doc := read.setdefault(text, _summary_doc(json.loads, text))) is not None:
                        found[key] = doc
        except sqlite3.Error:
            return {}
        return found

    def put_bundle(self, key: str, summary: dict, notes: list[str]) -> None:
        import json

        self._new_bundles[key] = json.dumps({"summary": summary, "notes": notes})

    def get_artifacts(self, identities: list[str]) -> dict[str, str]:
        """Content digests of the artifacts whose identity (scan.artifact_identity) was seen before."""
        conn = self._open()
        if conn is None or not identities:
            return {}
        found: dict[str, str] = {}
        try:
            for i in range(0, len(identities), 900):
                chunk = identities[i:i + 900]
                found.update(conn.execute("SELECT identity, digest FROM artifacts "
                                          f"WHERE identity IN ({','.join('?' * len(chunk))})", chunk).fetchall())
        except sqlite3.Error as exc:
            self.disabled_reason = f"hash cache off: {exc}"
            return {}
        return found

    def put_artifact(self, identity: str, digest: str) -> None:
        self._new_artifacts[identity] = digest

    def put(self, key: tuple, digest: str) -> None:
        self._pending.append((*key, digest))

    def flush(self) -> None:
        conn = self._open()
        if conn is None or not (self._pending or self._new_bundles or self._new_artifacts):
            return
        try:
            with conn:
                conn.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?)", self._pending)
                conn.executemany("INSERT OR REPLACE INTO bundles VALUES (?, ?)", list(self._new_bundles.items()))
                conn.executemany("INSERT OR REPLACE INTO artifacts VALUES (?, ?)", list(self._new_artifacts.items()))
        except sqlite3.Error as exc:
            self.disabled_reason = f"hash cache not saved: {exc}"
        self._pending.clear()
        self._new_bundles.clear()
        self._new_artifacts.clear()

    def close(self) -> None:
        self.flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _summary_doc(loads, text: str) -> tuple[dict, list[str]] | None:
    """(summary, notes) of a cached model or bundle row, or None when the row is not one."""
    from mlcache_audit.docfields import check_depth
    from mlcache_audit.errors import DocumentInvalid

    try:
        doc = loads(text)
        check_depth(doc, "a cached summary")  # the cache is a file anyone may have edited
        summary, notes = doc["summary"], doc["notes"]
    except (ValueError, KeyError, TypeError, RecursionError, DocumentInvalid):
        return None
    if not isinstance(summary, dict) or not isinstance(notes, list):
        return None
    return summary, [n for n in notes if isinstance(n, str)]
