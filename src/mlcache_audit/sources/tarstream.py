"""A tar's bytes as streams: which compression, inflating ahead on a thread, a member's window.

The reading side of sources/tarpass.py: the index pass reads `open_stream(..., ahead=True)`; a
later read of a member not kept from that pass opens a stream again and moves forwards to it.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import BinaryIO

from mlcache_audit import fsio
from mlcache_audit.sources.tarpass import CHUNK, Damaged


def compression_of(path: Path) -> str | None:
    """gz, bz2, xz (what tarfile's "r:*" reads) by the file's first bytes, or None for a plain tar."""
    with fsio.open_regular_file(str(path)) as fh:
        head = fh.read(6)
    if head.startswith(b"\x1f\x8b"):
        return "gz"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return None


class _Closing:
    """A decompressing stream that also closes the file under it."""

    def __init__(self, stream, raw):
        self._stream, self._raw = stream, raw
        self.read, self.readinto = stream.read, stream.readinto

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stream.close()
        self._raw.close()


def open_stream(path: Path, compression: str | None, *, ahead: bool = False) -> BinaryIO:
    """A tar's uncompressed bytes from its first, as a stream that closes the file under it.
    `ahead`: inflate on a thread of its own while the caller parses (for the index pass)."""
    raw = fsio.open_regular_file(str(path))  # closed with the decompressor that wraps it
    if compression is None:
        return raw
    import bz2
    import gzip
    import lzma

    opener = {"gz": lambda f: gzip.GzipFile(fileobj=f), "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}
    stream = opener[compression](raw)
    if ahead:
        return _Ahead(stream, raw, (OSError, EOFError, zlib.error, lzma.LZMAError))  # type: ignore[return-value]
    return _Closing(stream, raw)  # type: ignore[return-value]


class _Ahead(_Closing):
    """A decompressing stream read on a thread of its own, at most DEPTH chunks ahead of its reader
    (4 MiB): zlib, bz2 and lzma let go of the GIL while they inflate, so on two CPUs inflating and
    parsing overlap (inflating is about a fifth of indexing a .tar.gz, measured). What inflating
    raises is raised to the reader as `Damaged`, in order; closing stops and joins the thread."""

    DEPTH = 4

    def __init__(self, stream, raw, errors: tuple):  # (not _Closing's: reads come from the queue)
        import queue
        import threading

        self._stream, self._raw, self._errors = stream, raw, errors
        self._queue: queue.Queue = queue.Queue(self.DEPTH)
        self._full = queue.Full
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="mlcache-inflate", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._stream.read(CHUNK)
                self._put(chunk)
                if not chunk:
                    return
        except self._errors as exc:
            self._put(Damaged(f"the archive cannot be inflated past here ({exc})"))
        except BaseException as exc:  # noqa: BLE001 - handed to the reader's thread, raised there
            self._put(exc)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except self._full:
                continue

    def read(self, n: int = -1) -> bytes:
        """The next chunk inflated (at most CHUNK bytes, whatever `n` asks: its one reader,
        TarPass, asks for at least that much and takes what comes)."""
        if self._ended:
            return b""
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        if not item:
            self._ended = True
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        super().close()


class Window:
    """`size` bytes of `stream` from where it stands: read/readinto for the hashing and reading code."""

    def __init__(self, stream: BinaryIO, size: int):
        self._f = stream
        self._left = size

    @property
    def left(self) -> int:
        return self._left

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self._left:
            n = self._left
        data = self._f.read(n) if n else b""
        if n and len(data) < n:
            raise EOFError("the archive ends inside a member")
        self._left -= len(data)
        return data

    def readinto(self, buf) -> int:
        n = min(len(buf), self._left)
        if n == 0:
            return 0
        with memoryview(buf)[:n] as view:
            got = self._f.readinto(view)
        if not got:
            raise EOFError("the archive ends inside a member")
        self._left -= got
        return got


def skip_forward(stream: BinaryIO, n: int, seekable: bool) -> None:
    """Move a stream n bytes on: a seek in a plain file, a read in a decompressed one."""
    if seekable:
        stream.seek(n, 1)
        return
    while n > 0:
        got = len(stream.read(min(n, CHUNK)))
        if not got:
            raise EOFError("the archive ends before a member")
        n -= got
