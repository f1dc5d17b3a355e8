"""Reading real folders safely: no read blocks, no symlink is followed, no walk recurses.

Every file a container names is opened with O_NONBLOCK and O_NOFOLLOW and type-checked on the open
handle (a FIFO, socket or device in place of `metadata.json` is reported, never read). Folders are
walked iteratively, each one opened relative to its parent's handle with O_NOFOLLOW, so a chain of
folders deeper than PATH_MAX (or than Python's recursion limit) is walked like any other, and a
folder swapped for a symlink during the walk is never entered.

Paths are `str` as the OS hands them out (`os.fsdecode`: undecodable bytes become lone surrogates),
which is lossless: `os.fsencode` gives back the exact bytes. `readable` and `exact_b64` turn such a
path into what the JSON documents carry (see docs/schema.md).
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import re
import stat
from collections.abc import Iterator
from typing import BinaryIO

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
DIRFLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | NOFOLLOW
FILEFLAGS = os.O_RDONLY | NOFOLLOW | NONBLOCK | getattr(os, "O_NOCTTY", 0)


class NotRegularFile(OSError):
    """What was opened as a file is a FIFO, socket, device or folder."""


def open_regular(path: str | bytes, *, dir_fd: int | None = None) -> int:
    """An fd of a regular file, opened without blocking and without following a final symlink.

    Raises OSError (ELOOP for a symlink) or NotRegularFile. The fd is switched back to blocking, so
    reads of a regular file behave as usual.
    """
    fd = os.open(path, FILEFLAGS, dir_fd=dir_fd)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"not a regular file ({file_type(mode)})")
        if NONBLOCK:
            os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_regular_file(path: str | bytes) -> BinaryIO:
    """`open_regular`'s fd as a binary file object (closed with it)."""
    return os.fdopen(open_regular(path), "rb")


def read_regular(path: str | bytes, limit: int = 1 << 20, *, dir_fd: int | None = None) -> bytes:
    """Up to `limit` bytes of a regular file (see `open_regular` for what is refused)."""
    fd = open_regular(path, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(limit)


def file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def open_real_root(root: str) -> int:
    """An fd of the absolute folder `root`, opened from `/` one component at a time with O_NOFOLLOW:
    a symlink anywhere in `root` itself (not only below it) fails the open with ELOOP or ENOTDIR.
    This is how a root that was resolved once (realpath) is re-checked right before it is acted on:
    a folder swapped for a symlink since then is refused, never followed."""
    if not os.path.isabs(root):
        raise OSError(errno.EINVAL, "not an absolute path", root)
    return open_chain_at(os.open("/", DIRFLAGS), [p for p in root.split(os.sep) if p])


def open_chain_at(fd: int, parts: list[str], *, create: bool = False) -> int:
    """An fd of `parts...` below the folder `fd` (which this takes over: it is closed or returned),
    each level opened relative to the last with O_NOFOLLOW. With `create`, missing folders are made."""
    try:
        for part in parts:
            if part in ("", ".", ".."):
                raise OSError(errno.EINVAL, "not a plain folder name", part)
            try:
                nfd = os.open(part, DIRFLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, DIRFLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_under(root: str, parts: list[str], *, create: bool = False) -> int:
    """`open_chain_at` below `open_real_root(root)`: no symlink in the root or on the way is crossed."""
    return open_chain_at(open_real_root(root), parts, create=create)


def lies_inside(named_root: str, path: str) -> bool:
    """True when the absolute `path` is `named_root` or below it and is reached from `named_root`
    through real folders only (the same no-follow handles apply uses); both are real paths."""
    named = named_root.rstrip(os.sep) or os.sep
    if path != named and not path.startswith(named.rstrip(os.sep) + os.sep):
        return False
    rest = [p for p in path[len(named):].split(os.sep) if p]
    try:
        os.close(open_under(named, rest))
        return True
    except OSError:
        return False


class FolderHandles:
    """Folders below one root handle, each opened no-follow from the nearest folder kept (or the
    root) and kept while it is used: siblings share their parent's handle instead of re-opening the
    chain from the root for each (a plan's actions come sorted, so siblings are next to each other),
    and a folder below one kept is opened from it. The `size` most recently used are kept. A
    handle names the folder it was opened on, so reusing it never crosses a symlink swapped in since."""

    def __init__(self, root_fd: int, size: int = 1):
        self.root_fd, self.size = root_fd, size
        self._kept: dict[tuple[str, ...], int] = {}  # least recently used first
        self.opened = 0  # folders opened: what the reuse saves is measured in tests

    def get(self, parts: list[str]) -> int:
        """The handle of `parts` below the root (borrowed: the caller does not close it, and it stays
        valid until the next call). OSError as open_chain_at raises it (ELOOP or ENOTDIR for a
        symlink on the way, ENOENT for a gone folder)."""
        key = tuple(parts)
        fd = self._kept.pop(key, None)
        if fd is None:
            n = len(key) - 1
            while n > 0 and key[:n] not in self._kept:
                n -= 1
            if n <= 0:
                n, start = 0, self.root_fd
            else:
                start = self._kept[key[:n]]
            fd = open_chain_at(os.dup(start), list(key[n:]))
            self.opened += len(key) - n
            while len(self._kept) >= self.size:
                os.close(self._kept.pop(next(iter(self._kept))))
        self._kept[key] = fd
        return fd

    def close(self) -> None:
        while self._kept:
            os.close(self._kept.popitem()[1])
        os.close(self.root_fd)


def exists_at(root: str, parents: list[str], name: str) -> bool:
    """Is `name` in the folder `root/parents...`, reached without following symlinks?"""
    try:
        fd = open_under(root, parents)
    except OSError:
        return False
    try:
        return exists_in(fd, name)
    except OSError:
        return False
    finally:
        os.close(fd)


def exists_in(fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def why(exc: OSError) -> str:
    """`Read-only file system (EROFS)`: the error as a person and a search engine read it."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{text} ({name})" if name else text


def open_dir_chain(root: str, parts: list[str], *, create: bool = False) -> int:
    """An fd of `root/parts...`, each level opened relative to the last with O_NOFOLLOW, so a symlink
    anywhere on the way fails the open (ELOOP or ENOTDIR). With `create`, missing folders are made.
    `root` itself is opened as given (a store's base, resolved when the store was made); code that
    acts uses `open_under`, which re-checks the root too."""
    return open_chain_at(os.open(root, DIRFLAGS), parts, create=create)


def walk_at(top_fd: int, on_error, make=None, prefix: str = "") -> Iterator:
    """(relative path, lstat, symlink target or None) of everything below the folder `top_fd`, or
    `make(rel, name, lstat, target)` of it when given (the walk's hot loop builds records in place),
    in tree order (a folder,
    then its subtree; siblings by name). Iterative; every folder is opened relative to its parent's
    fd with O_NOFOLLOW and closed when its subtree is done, so the open fds equal the depth.
    `on_error(rel, what, detail)` hears of what could not be read; the rest is still walked.
    Paths start with `prefix/` when a prefix is given (a part of a larger walk).
    The caller keeps `top_fd` open and closes it."""
    names = sorted_names(top_fd, prefix, on_error)
    stack: list[tuple[int, str, Iterator[str]]] = [(top_fd, prefix, iter(names))]
    try:
        while stack:
            fd, prefix, it = stack[-1]
            name = next(it, None)
            if name is None:
                stack.pop()
                if fd != top_fd:
                    os.close(fd)
                continue
            rel = f"{prefix}/{name}" if prefix else name
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                on_error(rel, "cannot stat", exc.strerror)
                continue
            target = None
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(name, dir_fd=fd)
                except OSError:
                    target = None
            yield make(rel, name, st, target) if make is not None else (rel, st, target)
            if stat.S_ISDIR(st.st_mode):
                child = open_subfolder(fd, name, st, rel, on_error)
                if child is not None:
                    stack.append((child, rel, iter(sorted_names(child, rel, on_error))))
    finally:
        for fd, _, _ in stack:
            if fd != top_fd:
                os.close(fd)


def open_subfolder(fd: int, name: str, st: os.stat_result, rel: str, on_error) -> int | None:
    """An fd of the folder `name` in `fd`, which `st` (an lstat of it) saw: opened with O_NOFOLLOW and
    checked to be that same folder. None, told to `on_error(rel, ...)`, when it cannot be opened or
    was swapped (for a symlink, say) between the stat and the open."""
    try:
        child = os.open(name, DIRFLAGS, dir_fd=fd)
    except OSError as exc:
        on_error(rel, "unreadable folder, not scanned", exc.strerror)
        return None
    if os.fstat(child).st_ino != st.st_ino:
        os.close(child)
        on_error(rel, "folder changed during the walk, not scanned", None)
        return None
    return child


def sorted_names(fd: int, rel: str, on_error) -> list[str]:
    """The names in the folder `fd` by code point (tree order), or [] told to `on_error`."""
    try:
        names = os.listdir(fd)
    except OSError as exc:
        on_error(rel, "unreadable folder, not scanned", exc.strerror)
        return []
    names.sort()
    return names


def raise_open_file_limit() -> None:
    """Let a walk hold one fd per level of a deep tree (macOS starts processes at 256)."""
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to raise
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 10240 if hard == resource.RLIM_INFINITY else min(hard, 10240)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass


# -- paths in documents ---------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` safe to print on one line of a terminal, a log or Markdown: bytes that are not UTF-8
    written as `\\xNN`, control characters (newline, carriage return, ESC, C1, line separators)
    escaped, and a leading `::` broken, so no printed line can start a GitHub workflow command (the
    runner reads them from stdout and stderr alike) or move the cursor."""
    if not is_exact_text(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                                  else f"\\u{ord(m.group()):04x}"), text)
    return "\\x3a" + text[1:] if text.startswith("::") else text


def _each_string(value, fn):
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _each_string(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_each_string(v, fn) for v in value]
    return value


def readable_document(value):
    """A document with every string in it `readable` (fit for JSON: undecodable names become text)."""
    return _each_string(value, readable)


def printable_document(value):
    """A document with every string in it made `printable` (what every text, Markdown and HTML
    renderer reads, so no name from a container reaches a screen raw)."""
    return _each_string(value, printable)


def is_exact_text(path: str) -> bool:
    """True when the path's bytes are valid UTF-8 (no lone surrogates from `os.fsdecode`)."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def readable(path: str) -> str:
    """The path as valid UTF-8 text, each byte that is not UTF-8 written as `\\xNN`."""
    if is_exact_text(path):
        return path
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def exact_b64(path: str) -> str | None:
    """Base64 of the path's exact bytes when it is not valid UTF-8 (else None: `path` is exact)."""
    if is_exact_text(path):
        return None
    return base64.b64encode(path.encode("utf-8", "surrogateescape")).decode("ascii")


def path_fields(path: str, key: str = "path") -> dict:
    """`{key: readable}` plus `{key_b64: exact bytes}` when the name is not valid UTF-8."""
    b64 = exact_b64(path)
    return {key: readable(path)} if b64 is None else {key: readable(path), f"{key}_b64": b64}


def path_from(doc: dict, key: str = "path") -> str:
    """The exact path a document's `key` (and `key_b64`, when present) names. Raises ValueError."""
    b64 = doc.get(f"{key}_b64")
    if b64 is not None:
        if not isinstance(b64, str):
            raise ValueError(f"{key}_b64 is not a string")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{key}_b64 is not base64") from None
        return raw.decode("utf-8", "surrogateescape")
    value = doc.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value
