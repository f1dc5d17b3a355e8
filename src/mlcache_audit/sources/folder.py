"""A folder on disk as a read-only store: one lstat walk, symlinks recorded and never followed."""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mlcache_audit.sources.base import DIR, FILE, OTHER, SYMLINK, Entry, display_path


class FolderStore:
    """Files under `base`; every path handed in or out is relative to it and `/`-separated."""

    kind = "folder"

    def __init__(self, base: Path):
        self.base = base
        self.label = str(base)

    def real(self, rel: str) -> str:
        return os.path.join(self.base, *rel.split("/")) if rel else str(self.base)

    def list_dir(self, rel: str) -> dict[str, bool] | None:
        try:
            with os.scandir(self.real(rel)) as it:
                return {e.name: e.is_dir(follow_symlinks=False) for e in it}
        except OSError:
            return None

    def read(self, rel: str, limit: int = 1 << 20) -> bytes | None:
        path = self.real(rel)
        try:
            # O_NOFOLLOW: a symlink named like metadata.json is not read through.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read(limit)
        except OSError:
            return None
        finally:
            os.close(fd)

    # Entries come out in tree order (a folder, then its subtree, siblings by name), so the
    # container need not sort 40,000 paths again.
    sorted_walk = True

    def walk(self, rel: str, notes: list[str]) -> Iterator[Entry]:
        top = self.real(rel)
        top_real = os.path.realpath(top)
        stack = [iter(self._children("", top, notes))]
        while stack:
            d = next(stack[-1], None)
            if d is None:
                stack.pop()
                continue
            prefix, entry = d
            path = f"{prefix}/{entry.name}" if prefix else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                notes.append(f"cannot stat {display_path(path)} ({exc.strerror})")
                continue
            if not (entry.name.isascii() and entry.name.isprintable()):
                _note_odd_name(entry.name, path, notes)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                yield Entry(path, DIR, 0, st.st_mtime, st.st_ino, st.st_dev, st.st_nlink, st.st_mtime_ns)
                stack.append(iter(self._children(path, entry.path, notes)))
            elif stat.S_ISREG(mode):
                yield Entry(path, FILE, st.st_size, st.st_mtime, st.st_ino, st.st_dev, st.st_nlink, st.st_mtime_ns)
            elif stat.S_ISLNK(mode):
                target = _readlink(entry.path)
                _note_symlink(entry.path, path, target, top_real, notes)
                yield Entry(path, SYMLINK, 0, st.st_mtime, st.st_ino, st.st_dev, st.st_nlink, st.st_mtime_ns, target)
            else:
                notes.append(f"special file skipped: {display_path(path)}")
                yield Entry(path, OTHER, 0, st.st_mtime, st.st_ino, st.st_dev, st.st_nlink, st.st_mtime_ns)

    @staticmethod
    def _children(prefix: str, directory: str, notes: list[str]) -> list[tuple[str, os.DirEntry]]:
        try:
            with os.scandir(directory) as it:
                children = sorted(it, key=lambda d: d.name)
        except PermissionError:
            notes.append(f"unreadable folder, not scanned: {display_path(prefix or '.')} (permission denied)")
            return []
        except OSError as exc:
            notes.append(f"unreadable folder, not scanned: {display_path(prefix or '.')} ({exc.strerror})")
            return []
        return [(prefix, d) for d in children]

    def stream(self, rels: list[str]) -> Iterator[tuple[str, BinaryIO | None]]:
        for rel in rels:
            try:
                fd = os.open(self.real(rel), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError:
                yield rel, None
                continue
            with os.fdopen(fd, "rb") as fh:
                yield rel, fh

    def hash_key(self, rel: str, entry: Entry) -> tuple | None:
        if entry.inode is None or entry.mtime_ns is None:
            return None
        return (entry.dev, entry.inode, entry.size, entry.mtime_ns)


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _note_odd_name(name: str, path: str, notes: list[str]) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
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
