"""The state of an entry and of everything below it: what a plan records and apply checks again.

One accumulator serves both: the scan feeds it every entry below an artifact as the walk passes
(so no per-file record is kept for it), and apply feeds it a fresh walk of the target right before
acting. Both walk in tree order (a folder, then its subtree; siblings by name), so any change in
between shows in the fingerprint.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import xxhash

from mlcache_audit import fsio
from mlcache_audit.sources.base import DIR, FILE, SYMLINK, Entry, kind_of, tree_key


@dataclass(frozen=True)
class Seen:
    """What a target was when planned; apply re-checks all of it right before acting."""

    type: str
    size: int
    files: int
    mtime_ns: int | None
    inode: int | None
    fingerprint: str


class StateHasher:
    """Folds entries below a target, in tree order, into its Seen state and the bytes it would free."""

    __slots__ = ("_h", "size", "files", "newest", "freed", "_seen")

    def __init__(self, top_mtime_ns: int | None):
        self._h = xxhash.xxh3_64()
        self.size = self.files = self.freed = 0
        self.newest = top_mtime_ns
        self._seen: Seen | None = None

    def close(self, top: Entry) -> None:
        """Nothing more comes below `top`: keep its Seen state, let the running hash go."""
        if self._seen is None:
            self._seen = self.seen(top)
            self._h = None

    def add(self, rel: str, kind: str, size: int, mtime_ns: int | None, target: str | None, nlink: int) -> None:
        self._h.update(f"{rel}\0{kind}\0{size}\0{mtime_ns}\0{target}\n".encode("utf-8", "surrogateescape"))
        if kind == FILE:
            self.size += size
            self.files += 1
            if nlink <= 1:  # a hardlinked file frees nothing while another link keeps it
                self.freed += size
        if mtime_ns is not None and (self.newest is None or mtime_ns > self.newest):
            self.newest = mtime_ns

    def seen(self, top: Entry) -> Seen:
        """`top`'s state from what was added (once closed, the state it was closed with: the same top)."""
        if self._seen is not None:
            return self._seen
        if top.type == FILE:
            h = self._h.copy()
            h.update(f"\0{top.size}\0{top.mtime_ns}".encode())
            return Seen(top.type, top.size, 1, self.newest, top.inode, h.hexdigest())
        return Seen(top.type, self.size, self.files, self.newest, top.inode, self._h.hexdigest())


def target_state(top: Entry, below: list[Entry]) -> Seen:
    """The Seen state of `top` from entries below it (paths relative to it), taken in tree order."""
    acc = StateHasher(top.mtime_ns)
    for e in sorted(below, key=lambda x: tree_key(x.path)):
        acc.add(e.path, e.type, e.size, e.mtime_ns, e.target, e.nlink)
    return acc.seen(top)


def fresh_state(parent_fd: int, name: str, st: os.stat_result) -> tuple[Seen, int, int]:
    """The target's state now, read through the parent's handle that the action will use, and the
    bytes its removal frees, as sizes and as allocated blocks (a file with another link frees
    nothing; a symlink frees nothing)."""
    from mlcache_audit.sources.folder import entry_from_stat

    target = os.readlink(name, dir_fd=parent_fd) if stat.S_ISLNK(st.st_mode) else None
    top = entry_from_stat(name, st, target)
    if top.type != DIR:
        own = top.type == FILE and top.nlink <= 1
        return target_state(top, []), (top.size if own else 0), (top.disk or 0 if own else 0)
    fd = os.open(name, fsio.DIRFLAGS, dir_fd=parent_fd)
    acc = StateHasher(top.mtime_ns)
    freed = freed_disk = 0
    try:
        if os.fstat(fd).st_ino != st.st_ino:
            return Seen(top.type, -1, -1, None, st.st_ino, "swapped while being checked"), 0, 0
        problems: list[str] = []
        # walk_at comes in tree order, as target_state sorts: each entry is folded in as it comes
        # (what entry_from_stat would record), with no record kept of it.
        for rel, est, tgt in fsio.walk_at(fd, lambda rel, what, detail: problems.append(what)):
            kind = kind_of(est.st_mode)
            if kind == FILE:
                acc.add(rel, FILE, est.st_size, est.st_mtime_ns, None, est.st_nlink)
                if est.st_nlink <= 1:
                    freed += est.st_size
                    freed_disk += est.st_blocks * 512
            else:
                acc.add(rel, kind, 0, est.st_mtime_ns, tgt if kind == SYMLINK else None, est.st_nlink)
    finally:
        os.close(fd)
    if problems:
        # Something below could not be read: the state cannot be confirmed, so it is not the plan's.
        return Seen(top.type, -1, -1, None, st.st_ino, "unreadable: " + problems[0]), 0, 0
    return acc.seen(top), freed, freed_disk
