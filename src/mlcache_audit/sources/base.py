"""The read-only view every source presents: entries (path, type, size, times) and file contents."""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Protocol

from mlcache_audit.vocab import LIVE_FORMS, Form, StoreKind

FILE, DIR, SYMLINK, OTHER = "file", "dir", "symlink", "other"


def kind_of(mode: int) -> str:
    """An lstat mode's entry type: what the scan records and apply's re-check reads again."""
    return DIR if stat.S_ISDIR(mode) else FILE if stat.S_ISREG(mode) else SYMLINK if stat.S_ISLNK(mode) else OTHER


# Where apps run against their containers: a folder whose real root lies below one of these is live,
# whatever path named it (`xcrun simctl get_app_container booted <id> data` prints the first kind).
_LIVE_RUNS = (
    (("Devices", None, "data", "Containers"), "it lies in a simulator device's data/Containers"),
    (("Library", "Containers"), "it lies in a home's Library/Containers"),
    (("Library", "Group Containers"), "it lies in a home's Library/Group Containers"),
    (("Library", "Caches"), "it lies in a home's Library/Caches"),
)


def temp_folders() -> tuple[str, ...]:
    """The real temp folders non-sandboxed apps write to on this machine: $TMPDIR and the per-user
    temp folders below /private/var/folders on macOS (on Linux, no app container lives in /tmp)."""
    import os
    import sys

    if sys.platform != "darwin":
        return ()
    places = {"/private/var/folders"}
    if os.environ.get("TMPDIR"):
        places.add(os.path.realpath(os.environ["TMPDIR"]))
    return tuple(sorted(places))


def live_place(real_root: str, temp: tuple[str, ...] | None = None) -> str | None:
    """Why the folder at the real, absolute `real_root` is one an app may be running against (it
    lies below a simulator device's data/Containers, a home's Library/Containers, Group Containers
    or Caches, or the temp folder), or None. Pure: `temp` defaults to `temp_folders()`."""
    parts = [p for p in real_root.split("/") if p]
    for run, why in _LIVE_RUNS:
        for i in range(len(parts) - len(run)):  # strictly below the run: the run's last folder is not a container
            if all(want is None or parts[i + j] == want for j, want in enumerate(run)):
                return why
    for t in temp_folders() if temp is None else temp:
        if real_root == t or real_root.startswith(t.rstrip("/") + "/"):
            return "it lies in the temp folder"
    return None


@dataclass(slots=True)
class Entry:
    """One thing in a container. `path` is relative to the container root, `/`-separated."""

    path: str
    type: str
    size: int = 0
    mtime: float | None = None
    inode: int | None = None
    dev: int | None = None
    nlink: int = 1
    mtime_ns: int | None = None
    target: str | None = None  # symlink target, as stored
    ctime_ns: int | None = None  # status change: an in-place edit that kept mtime still changes it
    base: str | None = None  # the last path component, when the walk already had it
    disk: int | None = None  # allocated bytes (st_blocks x 512) of a file; None where a store has no blocks

    @property
    def name(self) -> str:
        return self.base if self.base is not None else self.path.rpartition("/")[2]


class Store(Protocol):
    """Raw, read-only access to the bytes a path holds: a folder, or the members of an archive."""

    label: str
    kind: str  # "folder" | "zip" | "tar"

    def list_dir(self, rel: str) -> dict[str, bool] | None:
        """Names in a directory mapped to is-a-directory (symlinks are not directories); None if absent."""

    def read(self, rel: str, limit: int = 1 << 20) -> bytes | None:
        """Up to `limit` bytes of a regular file, or None if it is absent or unreadable."""

    def walk(self, rel: str, notes: list[str]) -> Iterator[Entry]:
        """Every entry below `rel`, paths relative to it; problems are appended to `notes`."""

    def stream(self, rels: list[str]) -> Iterator[tuple[str, BinaryIO | None]]:
        """Open files for reading, in the order cheapest for the store (archive order for a tar)."""

    def hash_key(self, entry: Entry) -> tuple | None:
        """A key under which a content hash of this file may be cached across runs, or None."""

    def hash_keys(self, entries: list[Entry]) -> list[tuple] | None:
        """`hash_key` of every entry, in order; None when any has none."""


@dataclass
class Container:
    """One app's data container as found in some source: its entries and how to read them."""

    store: Store
    root: str  # path of the container root inside the store ("" for the store's top)
    form: str  # raw | xcappdata | device-hub | simulator | macos-container | backup
    bundle_id: str | None
    label: str  # what the user sees as the root: an absolute path, or archive!inner/path
    not_observable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    client_name: str | None = None  # a per-process cache's client (process or bundle id, as the folder spells it)
    # When set, only these folders below the root belong to the container (a per-process client's
    # caches inside the shared ~/Library/Caches): only they are walked, planned and acted on.
    scope: tuple[str, ...] = ()
    home: str | None = None  # the home-shaped folder it was discovered in (acting on it needs --all-clients)
    _entries: list[Entry] | None = None

    @property
    def client(self) -> str | None:
        """Whose caches these are: the cache folder's client name, else the bundle id."""
        return self.client_name or self.bundle_id

    @property
    def real_root(self) -> str:
        """The root as an absolute path on disk for a folder's container (its store was opened at a
        real path), else what the user sees (`archive!inner/path`)."""
        return self.store.real(self.root) if self.store.kind == StoreKind.FOLDER else self.label

    @property
    def plan_key(self) -> str:
        """How a plan names this container (ContainerPlan.key): its root, and its client when several
        clients share the root. Its identity on disk is identity.key_of(real_root, client)."""
        return f"{self.real_root}\0{self.client_name}" if self.scope else self.real_root

    @property
    def source(self) -> str:
        return Form.BACKUP if self.form == Form.BACKUP else self.store.kind

    @property
    def cleanable_in_place(self) -> bool:
        """Only folder copies can be cleaned; backups and archives are read-only evidence."""
        return self.store.kind == StoreKind.FOLDER and self.form != Form.BACKUP

    live_place: str | None = None  # why where its real root lies makes it live (live_place()), else None

    @property
    def live_why(self) -> str | None:
        """Why an app may be running against this container right now, or None for an offline copy.
        Where the container lives decides, not the path that named it (`live_place`)."""
        if self.store.kind != StoreKind.FOLDER or self.form == Form.BACKUP:
            return None
        if self.form in LIVE_FORMS:
            return f"a {self.form} container on this machine"
        return self.live_place

    @property
    def live(self) -> bool:
        """A container an app may be running against right now (simulator, a Mac's own folders)."""
        return self.live_why is not None

    def entries(self, progress: Callable[[int], None] | None = None) -> list[Entry]:
        """Every entry, walked once and kept; later calls return the same list."""
        if self._entries is None:
            self._entries = list(self.iter_entries(progress))
        return self._entries

    def iter_entries(self, progress: Callable[[int], None] | None = None,
                     notes: list[str] | None = None) -> Iterator[Entry]:
        """Every entry in tree order (a folder, then its subtree), streamed from the walk when the
        store walks in that order, so a scan need not keep a record per file. `progress(n)` hears of
        every 1,000 entries walked, for a live display on long walks."""
        if self._entries is not None:
            return iter(self._entries)
        sink = self.notes if notes is None else notes  # what the walk cannot read: the caller's notes
        walked = self._walk(sink) if progress is None else _counted(self._walk(sink), progress)
        if self._walk_is_in_tree_order():
            return walked
        return iter(sorted(walked, key=lambda e: tree_key(e.path)))

    def _walk(self, notes: list[str]) -> Iterator[Entry]:
        if not self.scope:
            return self.store.walk(self.root, notes)
        return self._walk_scope(notes)

    def _walk_scope(self, notes: list[str]) -> Iterator[Entry]:
        """The folders of the scope (and the folders on the way to them), each walked as the store walks."""
        made: set[str] = set()
        for sub in sorted(self.scope, key=tree_key):
            parts = sub.split("/")
            for i in range(1, len(parts) + 1):
                folder = "/".join(parts[:i])
                if folder not in made:
                    made.add(folder)
                    yield Entry(folder, DIR)
            for e in self.store.walk(self._store_path(sub), notes):
                yield replace(e, path=f"{sub}/{e.path}")

    def in_scope(self, path: str) -> bool:
        return not self.scope or any(path == s or path.startswith(s + "/") for s in self.scope)

    def _walk_is_in_tree_order(self) -> bool:
        return not self.scope and getattr(self.store, "sorted_walk", False)

    @property
    def is_whole_folder(self) -> bool:
        """The container is a folder on disk walked whole, as it lies (not a backup's rows, not a
        scoped client, not an archive): the folder walk and the split walk may read it directly."""
        return self.store.kind == StoreKind.FOLDER and self._walk_is_in_tree_order()

    def _store_path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if self.root else rel

    def read(self, rel: str, limit: int = 1 << 20) -> bytes | None:
        return self.store.read(self._store_path(rel), limit)

    def stream(self, rels: list[str]) -> Iterator[tuple[str, BinaryIO | None]]:
        mapping = {self._store_path(r): r for r in rels}
        for store_rel, fh in self.store.stream(list(mapping)):
            yield mapping[store_rel], fh

    def passed_digest(self, rel: str, kind: str = "xxh3") -> tuple[str, int] | None:
        """(hex, size) of a file the store hashed as its one pass went by it (xxh3-128, or SHA-256
        for what Core AI's main.hash names), else None."""
        passed = getattr(self.store, "passed_digest", None)
        return passed(self._store_path(rel), kind) if passed is not None else None

    def hash_key(self, entry: Entry) -> tuple | None:
        return self.store.hash_key(entry)

    def hash_keys(self, entries: list[Entry]) -> list[tuple] | None:
        return self.store.hash_keys(entries)


def _counted(entries: Iterator[Entry], progress: Callable[[int], None], every: int = 1000) -> Iterator[Entry]:
    n = 0
    for e in entries:
        n += 1
        if n == every:
            progress(n)
            n = 0
        yield e
    if n:
        progress(n)


def tree_key(path: str) -> str:
    """A sort key for tree order (a folder, then its subtree; siblings by code point), as
    `path.split("/")` orders but one string, not a list of them: "/" becomes the lowest character,
    and the two lowest, should a name hold them, are escaped above it."""
    if "\0" in path or "\1" in path:
        path = path.replace("\1", "\1\2").replace("\0", "\1\1")
    return path.replace("/", "\0")


def join_rel(rel: str, name: str) -> str:
    """`rel/name`, or `name` at the top ("" is the store's top folder)."""
    return posixpath.join(rel, name) if rel else name


def read_plist(data: bytes | None) -> dict:
    """A plist's top dictionary, or {} when it is missing, damaged or not a dictionary."""
    if not data:
        return {}
    try:
        import plistlib

        value = plistlib.loads(data)
    except Exception:  # noqa: BLE001 - plistlib raises several unrelated types on bad input
        return {}
    return value if isinstance(value, dict) else {}


def display_path(path: str) -> str:
    """A path safe to print on one line: undecodable bytes and control characters escaped."""
    from mlcache_audit.fsio import printable

    return printable(path)
