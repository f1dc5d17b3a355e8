"""A tar's bytes as streams: which compression, inflating ahead on a thread, a member's window.

The reading side of sources/tarpass.py: the index pass reads `open_stream(..., ahead=True)` (a
.tar.gz through `Gunzip`, on a thread of its own: `_Ahead`); a later read of a member not kept from
that pass opens a stream again (through GzipFile) and moves forwards to it.
"""

from __future__ import annotations

import sys
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

    if ahead:
        # gzip inflated by zlib in steps of CHUNK (not GzipFile's 8 KiB ones: each step takes the GIL back)
        opener = {"gz": Gunzip, "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}
        return _Ahead(opener[compression](raw), raw,  # type: ignore[return-value]
                      (OSError, EOFError, zlib.error, lzma.LZMAError))
    opener = {"gz": lambda f: gzip.GzipFile(fileobj=f), "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}
    return _Closing(opener[compression](raw), raw)  # type: ignore[return-value]


class Gunzip:
    """A gzip file's bytes, read as GzipFile reads them, inflated by zlib CHUNK bytes a call.

    As GzipFile: members one after another, NUL bytes between them skipped, each member's CRC-32 and
    length checked (zlib does, with the gzip wrapper), anything else after a member an error
    (zlib.error), a file that ends inside a member EOFError. Unlike GzipFile, whose reads inflate
    8 KiB of input at a time, one call inflates up to CHUNK bytes of output: on the index pass's own
    thread each call is one release and one take of the GIL, not dozens (sources/tarstream._Ahead)."""

    RAW = 1 << 20  # compressed bytes read at a time

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._d = zlib.decompressobj(31)  # 16 + 15: the gzip wrapper only
        self._in = b""
        self._started = False  # bytes of the current member have been fed (so an end here is a cut)

    def read(self, n: int = -1) -> bytes:
        """Up to CHUNK inflated bytes (whatever `n` asks), b"" at the end."""
        while True:
            if not self._in:
                self._in = self._raw.read(self.RAW)
                if not self._in:
                    if self._started:
                        raise EOFError("the gzip stream ends inside a member")
                    return b""
            if not self._started:  # between members: NUL padding is skipped, as GzipFile does
                self._in = self._in.lstrip(b"\0")
                if not self._in:
                    continue
                self._started = True
            out = self._d.decompress(self._in, CHUNK)
            self._in = self._d.unconsumed_tail
            if self._d.eof:  # this member is whole and checked: what follows starts the next
                self._in = self._d.unused_data
                self._d = zlib.decompressobj(31)
                self._started = False
            if out:
                return out

    def close(self) -> None:
        self._raw.close()


class _Ahead(_Closing):
    """A decompressing stream read on a thread of its own, at most DEPTH chunks ahead of its reader
    (4 MiB): zlib, bz2 and lzma let go of the GIL while they inflate, so on two CPUs inflating and
    parsing overlap (inflating is about a fifth of indexing a .tar.gz, measured). What inflating
    raises is raised to the reader as `Damaged`, in order; closing stops and joins the thread.

    While it runs, the interpreter's switch interval is at most SWITCH (0.2 ms, not 5): the parsing
    thread holds the GIL almost always, and each time the inflating thread wants it back (after every
    inflate and every read) it waited up to the interval, so the parser ran dry. The interval counts
    only while the other thread asks for the GIL (when the queue is full, it does not). Measured on
    the 40,000-member .tar.gz, the pass alone, best of 8:
    0.63 s at 5 ms and at 1 ms, 0.53 s at 0.2 ms, 0.60 s inflating on the parser's own thread; with
    GzipFile (8 KiB of input a step) the parser waited 0.23 s for bytes at 5 ms, with Gunzip 0.005 s."""

    DEPTH = 4
    SWITCH = 0.0002

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
        _switch_shorter(self.SWITCH)  # (after the start: a thread that cannot start leaves it as it was)

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
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        _switch_back()
        super().close()


_switch = {"held": 0, "before": 0.0}  # the interval before the first of the passes still running


def _switch_shorter(interval: float) -> None:
    if _switch["held"] == 0:
        _switch["before"] = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, _switch["before"]))
    _switch["held"] += 1


def _switch_back() -> None:
    _switch["held"] -= 1
    if _switch["held"] == 0:
        sys.setswitchinterval(_switch["before"])


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
