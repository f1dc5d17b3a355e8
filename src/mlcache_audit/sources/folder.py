"""A folder on disk as a read-only store: one iterative lstat walk, symlinks recorded and never followed."""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import BinaryIO

from mlcache_audit import fsio
from mlcache_audit.sources.base import FILE, OTHER, SYMLINK, Entry, display_path, kind_of

_KEY_FIELDS = attrgetter("dev", "inode", "size", "mtime_ns", "ctime_ns")


class FolderStore:
    """Files under `base`; every path handed in or out is relative to it and `/`-separated."""

    kind = "folder"
    _handles: fsio.FolderHandles | None = None  # within handles_kept() only

    def __init__(self, base: Path):
        self.base = base
        self.label = str(base)
        self.unreadable: dict[str, str] = {}  # what list_dir could not read (rel -> why), for detection

    def real(self, rel: str) -> str:
        return os.path.join(self.base, *rel.split("/")) if rel else str(self.base)

    @contextmanager
    def handles_kept(self, size: int = 32) -> Iterator[None]:
        """Within: each folder is opened from the nearest one opened before (kept, no-follow), not
        along the whole chain from the base: the container search lists the folders of the same
        chains again and again (a simulator tree's app folders lie 8 levels down). At most `size` are kept
        (a search nested in another keeps its own: well under macOS's 256 fds). Closed on exit."""
        if self._handles is not None:
            yield
            return
        try:
            root = os.open(str(self.base), fsio.DIRFLAGS)
        except OSError:  # each listing then fails as it would, and says so
            yield
            return
        self._handles, self._handles_thread = fsio.FolderHandles(root, size), threading.get_ident()
        try:
            yield
        finally:
            handles, self._handles = self._handles, None
            handles.close()

    def _open_dir(self, rel: str) -> int:
        parts = rel.split("/") if rel else []
        if self._handles is not None and threading.get_ident() == self._handles_thread:  # not thread-safe: its own only
            return os.dup(self._handles.get(parts))
        return fsio.open_dir_chain(str(self.base), parts)

    def list_dir(self, rel: str) -> dict[str, bool] | None:
        try:
            fd = self._open_dir(rel)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                self.unreadable[rel] = exc.strerror or str(exc)
            return None
        try:
            out = {}
            for name in os.listdir(fd):
                try:
                    out[name] = stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
                except OSError as exc:
                    out[name] = False
                    self.unreadable[posixpath.join(rel, name) if rel else name] = exc.strerror or str(exc)
            return out
        except OSError as exc:
            self.unreadable[rel] = exc.strerror or str(exc)
            return None
        finally:
            os.close(fd)

    def read(self, rel: str, limit: int = 1 << 20, notes: list[str] | None = None) -> bytes | None:
        """A regular file's first `limit` bytes; None (with a note when `notes` is given) for anything
        else: a symlink, a FIFO, a socket or a device is never opened for reading."""
        parent, _, name = rel.rpartition("/")
        try:
            fd = self._open_dir(parent)
        except OSError:
            return None
        try:
            return fsio.read_regular(name, limit, dir_fd=fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if notes is not None:
                notes.append(f"not read: {display_path(rel)} ({exc.strerror or exc})")
            return None
        finally:
            os.close(fd)

    # Entries come out in tree order (a folder, then its subtree, siblings by name), so the
    # container need not sort 40,000 paths again.
    sorted_walk = True

    def walk(self, rel: str, notes: list[str], prefix: str = "") -> Iterator[Entry]:
        """Every entry below `rel`, paths relative to it (or starting with `prefix/`)."""
        top_fd = self.open_top(rel, notes)
        if top_fd is None:
            return
        try:
            yield from fsio.walk_at(top_fd, walk_notes(notes), self.entry_maker(rel, prefix, notes), prefix)
        finally:
            os.close(top_fd)

    def open_top(self, rel: str, notes: list[str]) -> int | None:
        """The fd a walk of `rel` starts from (None, with a note, when it cannot be opened)."""
        fsio.raise_open_file_limit()
        try:
            return self._open_dir(rel)
        except OSError as exc:
            notes.append(f"unreadable folder, not scanned: {display_path(rel or '.')} ({exc.strerror})")
            return None

    def entry_maker(self, rel: str, prefix: str, notes: list[str]):
        """`make(path, name, lstat, target)`: the Entry a walk of `rel` records for a name, noting
        what is odd about it (a symlink and where it points, a special file, a name that is not
        plain text) into `notes`."""
        top_real = []  # the walk's top as a real path, worked out at its first symlink (most walks have none)

        def make(path: str, name: str, st: os.stat_result, target: str | None) -> Entry:
            mode = st.st_mode
            if stat.S_ISREG(mode):  # the common case first, built in place: the walk is the hot loop
                e = Entry(path, FILE, st.st_size, st.st_mtime, st.st_ino, st.st_dev, st.st_nlink,
                          st.st_mtime_ns, None, st.st_ctime_ns, name, st.st_blocks * 512)
            else:
                e = entry_from_stat(path, st, target)
                e.base = name
                if e.type == SYMLINK:
                    inside = path[len(prefix) + 1:] if prefix else path
                    if not top_real:
                        top_real.append(os.path.realpath(self.real(rel)))
                    _note_symlink(self.real(posixpath.join(rel, inside) if rel else inside), path, target, top_real[0],
                                  notes)
                elif e.type == OTHER:
                    notes.append(f"special file skipped ({fsio.file_type(mode)}): {display_path(path)}")
            if not (name.isascii() and name.isprintable()):
                _note_odd_name(name, path, notes)
            return e

        return make

    def stream(self, rels: list[str]) -> Iterator[tuple[str, BinaryIO | None]]:
        for rel in rels:
            parent, _, name = rel.rpartition("/")
            try:
                dfd = self._open_dir(parent)
            except OSError:
                yield rel, None
                continue
            try:
                fd = fsio.open_regular(name, dir_fd=dfd)
            except OSError:
                yield rel, None
                continue
            finally:
                os.close(dfd)
            with os.fdopen(fd, "rb") as fh:
                yield rel, fh

    def hash_key(self, entry: Entry) -> tuple | None:
        if entry.inode is None or entry.mtime_ns is None:
            return None
        return (entry.dev, entry.inode, entry.size, entry.mtime_ns, entry.ctime_ns or 0)

    def hash_keys(self, entries: list[Entry]) -> list[tuple] | None:
        keys = list(map(_KEY_FIELDS, entries))  # the same tuples as hash_key's, built in C
        if None in chain.from_iterable(keys):  # never for a walk's entries (all from lstat): the slow way
            keys = [self.hash_key(e) for e in entries]
            return None if None in keys else keys
        return keys


def walk_notes(notes: list[str]):
    """`on_error(path, what, detail)` for fsio's walks: each becomes one line in `notes`."""

    def on_error(path: str, what: str, detail: str | None) -> None:
        notes.append(f"{what}: {display_path(path or '.')}" + (f" ({detail.lower()})" if detail else ""))

    return on_error


def entry_from_stat(path: str, st: os.stat_result, target: str | None = None) -> Entry:
    """The one way an lstat result becomes an Entry: the scan and apply's re-check must agree."""
    kind = kind_of(st.st_mode)
    return Entry(path, kind, st.st_size if kind == FILE else 0, st.st_mtime, st.st_ino, st.st_dev, st.st_nlink,
                 st.st_mtime_ns, target if kind == SYMLINK else None, st.st_ctime_ns,
                 disk=st.st_blocks * 512 if kind == FILE else 0)


def _note_odd_name(name: str, path: str, notes: list[str]) -> None:
    if not fsio.is_exact_text(name):
        notes.append(f"name is not valid UTF-8: {display_path(path)}")
    if "\n" in name or "\r" in name:
        notes.append(f"name contains a line break: {display_path(path)}")


def _note_symlink(real_path: str, path: str, target: str | None, top_real: str, notes: list[str]) -> None:
    """Record where a symlink points; it is never followed, only reported."""
    if target is None:
        notes.append(f"unreadable symlink: {display_path(path)}")
        return
    resolved = os.path.realpath(posixpath.join(os.path.dirname(real_path), target))
    if not (resolved == top_real or resolved.startswith(top_real + os.sep)):
        notes.append(f"symlink points outside the container, not followed: {display_path(path)} -> {display_path(target)}")
    elif not os.path.lexists(resolved) or not os.path.exists(resolved):
        notes.append(f"broken symlink: {display_path(path)} -> {display_path(target)}")
