"""A tar's members in one forward pass over its bytes, compressed or not, without `tarfile`.

The stdlib's `tarfile` builds a TarInfo for every header: about 75 us a member when each has a pax
header (as Python's and macOS's tar write them), 3 of the 4 s of scanning a 40,000-member tar
(profiled), and it reads a compressed archive again from its first byte for every member asked for
behind its position. This reader parses the headers itself, as `tarfile` does (ustar with its
prefix, V7, GNU long names, pax local and global records), keeps a few numbers a member, and in the
same pass, for a compressed tar, whose bytes are all inflated anyway to reach each header:
- hashes every regular file member as its bytes go by (xxh3-128, the digest `fingerprint` would
  compute). This is the one exception to "hash only candidates": which files are candidates is known
  only once the whole archive is indexed (a file's twin may be its last member), and keeping a
  member's digest instead of its bytes is the smallest buffer there is. xxh3 costs a few per cent of
  inflating the same bytes; the digests are used only for candidates, and only those are counted
  as hashed;
- keeps the bytes of the small members `wanted(name, size)` names (the files the scan reads by name),
  so no read inflates the archive a second time.
Any form it does not know (sparse or multi-volume members, a type it has no word for) raises
`Unsupported` before anything is reported, and the archive is read with `tarfile` instead.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import xxhash

BLOCK = 512
CHUNK = 1 << 20
MAX_KEPT = 64 << 20  # bytes of wanted members kept in all; past it they are left to be read again
MAX_HEADER_DATA = 1 << 20  # a pax record set or GNU long name larger than this is damage, not a name
_ZERO = bytes(BLOCK)
_KIND_OF = {0x30: "file", 0: "file", 0x37: "file", 0x35: "dir", 0x31: "hardlink", 0x32: "symlink",
            0x33: "device", 0x34: "device", 0x36: "device"}  # by the header's type byte
_RECORDS = frozenset(b"xXgLK")  # pax local and global records, GNU long names and link names
_SIGNED = struct.Struct("148b8x356b")
_PLAIN_PAX = frozenset({b"path", b"size", b"mtime", b"atime", b"ctime", b"uid", b"gid", b"uname", b"gname",
                        b"linkpath", b"hdrcharset", b"comment"})


class Unsupported(Exception):
    """A tar form this reader leaves to `tarfile`."""


class OverCap(Exception):
    """The files declared so far pass max_bytes: said before their bytes are inflated or hashed."""


class Damaged(Exception):
    """A header that is not one: at the first member the file is not a tar; later, the rest is unread."""


@dataclass(slots=True)
class TarMember:
    name: str
    size: int
    mtime: float | int
    kind: str  # file | dir | symlink | hardlink | device
    offset: int  # where its bytes start in the uncompressed stream


class TarPass:
    """Iterate over a tar's members, reading `stream` (uncompressed bytes) forwards once.

    `seekable`: the stream is the file itself, so data not wanted is seeked over rather than read.
    `hash_files`: hash each regular file's bytes as they pass (`digests[offset]`, xxh3-128).
    `wanted(name, size)`: keep that member's bytes (`kept[offset]`).
    `sha256(name)`: also work out that member's SHA-256 (`sha256[offset]`; Core AI's main.hash names it).
    `endings`: every name `wanted` or `sha256` can accept ends with one of these (they are asked
    only of such names: one string test a member instead of two calls).
    `damage` is set (and iteration ends) when a header after the first is not a valid header."""

    def __init__(self, stream: BinaryIO, *, seekable: bool, hash_files: bool,
                 wanted: Callable[[str, int], bool] | None = None, sha256: Callable[[str], bool] | None = None,
                 max_bytes: int | None = None, endings: tuple[str, ...] | None = None):
        self._f = stream
        self._seekable = seekable
        self._end = _length(stream) if seekable else None
        self._max_bytes = max_bytes
        self.declared = 0  # file bytes declared so far: checked against max_bytes before any is read
        self._hash = hash_files
        self._wanted = wanted
        self._sha256 = sha256
        self._asks = wanted is not None or sha256 is not None
        self._endings = endings
        self.sha256: dict[int, str] = {}  # SHA-256 hex of the members `sha256(name)` names
        self._buf = b""
        self._view = memoryview(self._buf)  # of _buf, made once a buffer: a slice of it is the cheapest way to hash
        self._pos = 0
        self._base = 0  # stream offset of _buf[0]
        self.digests: dict[int, int] = {}  # xxh3-128 as a number: a third of a hex string's memory
        self.kept: dict[int, bytes] = {}
        self.kept_bytes = 0
        self.damage: str | None = None

    # -- bytes --------------------------------------------------------------------------------
    def _have(self, n: int) -> bool:
        """At least n bytes in the buffer from _pos (False at the end of the stream)."""
        while len(self._buf) - self._pos < n:
            chunk = self._f.read(max(CHUNK, n))
            if not chunk:
                return False
            self._base += self._pos
            self._buf = self._buf[self._pos:] + chunk
            self._view = memoryview(self._buf)
            self._pos = 0
        return True

    def _take(self, n: int) -> bytes:
        if not self._have(n):
            raise Damaged("the archive ends inside a header")
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out

    def _skip(self, n: int, hasher=None, keep: list | None = None) -> bool:
        """Pass n bytes, feeding them to `hasher`/`keep`; False when the stream ends first."""
        while n > 0:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if hasher is None and keep is None and self._seekable:
                    if self._end is not None and self._base + self._pos + n > self._end:
                        return False  # a plain tar that ends inside the bytes a header declares
                    self._f.seek(self._base + self._pos + n)
                    self._base += self._pos + n
                    self._buf, self._pos = b"", 0
                    self._view = memoryview(self._buf)
                    return True
                if not self._have(1):
                    return False
                continue
            step = min(avail, n)
            if hasher is not None or keep is not None:
                piece = memoryview(self._buf)[self._pos:self._pos + step]
                if hasher is not None:
                    hasher.update(piece)
                if keep is not None:
                    keep.append(bytes(piece))
                piece.release()
            self._pos += step
            n -= step
        return True

    @property
    def _offset(self) -> int:
        return self._base + self._pos

    # -- headers ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[TarMember]:
        glob: dict[bytes, bytes] = {}  # pax records as bytes: only the few used are decoded
        first = True
        while True:
            try:
                member = self._next(glob)
            except Damaged as exc:
                if first:
                    raise
                self.damage = str(exc)
                return
            if member is None:
                return
            first = False
            yield member

    def _next(self, glob: dict[bytes, bytes]) -> TarMember | None:
        local: dict[bytes, bytes] | None = None
        longname: str | None = None
        pending = False  # a record read that describes the member to come (not a global one)
        while True:
            pos = self._pos
            if pos + BLOCK <= len(self._buf):  # the common case: the header is in the buffer
                hdr = self._buf[pos:pos + BLOCK]
                self._pos = pos + BLOCK
            elif not self._have(BLOCK):
                if pending:
                    raise Damaged("the archive ends after a header record, before its member")
                if self._pos == len(self._buf) and self._offset > 0:
                    return None  # no end-of-archive blocks: tarfile ends here too
                raise Damaged("the archive ends inside a header")
            else:
                hdr = self._take(BLOCK)
            if hdr == _ZERO:
                if pending:
                    raise Damaged("the archive ends after a header record, before its member")
                return None
            _check(hdr)
            typ = hdr[156]
            size = _number(hdr[124:136])
            if typ in _RECORDS:
                if not 0 <= size <= MAX_HEADER_DATA:
                    raise Damaged(f"a header record of {size} bytes")
                pos, end = self._pos, self._pos + size + (-size % BLOCK)
                if end <= len(self._buf):  # the common case: the record is in the buffer
                    data = self._buf[pos:pos + size]
                    self._pos = end
                else:
                    data = self._take(size)
                    if not self._skip(-size % BLOCK):
                        raise Damaged("the archive ends inside a header record")
                pending = typ != 0x67
                if typ == 0x78 or typ == 0x58:  # x, X
                    local = _pax(data, local)
                elif typ == 0x67:  # g
                    _pax(data, glob)
                elif typ == 0x4C:  # L
                    longname = _text(data)
                continue
            return self._member(hdr, typ, size, longname,
                                ({**glob, **local} if local else glob) if glob else local)

    def _member(self, hdr: bytes, typ: int, size: int, longname: str | None,
                pax: dict[bytes, bytes] | None) -> TarMember:
        if typ == 0x53 or typ == 0x4D or (pax and not pax.keys() <= _PLAIN_PAX
                                          and any(k.startswith(b"GNU.sparse.") for k in pax)):
            raise Unsupported("sparse or multi-volume member")
        end = hdr.find(0, 0, 100)
        name = hdr[:100 if end < 0 else end].decode("utf-8", "surrogateescape")
        if typ == 0 and name.endswith("/"):
            typ = 0x35  # V7 writes a folder as a regular file whose name ends with '/'
        kind = _KIND_OF.get(typ)
        if kind is None:
            raise Unsupported(f"member type {bytes([typ])!r}")
        if kind == "dir":
            name = name.rstrip("/")
        if hdr[345]:
            name = _text(hdr[345:500]) + "/" + name  # the ustar prefix
        if longname is not None:
            name = longname.removesuffix("/") if kind == "dir" else longname  # as tarfile
        if pax:
            if b"path" in pax:
                name = pax[b"path"].decode("utf-8", "surrogateescape").rstrip("/")
            if b"size" in pax:  # as tarfile: a pax number that is not one counts as 0
                size = _pax_number(pax[b"size"], int)
            mtime = _pax_number(pax[b"mtime"], float) if b"mtime" in pax else _number(hdr[136:148])
        else:
            mtime = _number(hdr[136:148])
        offset = self._base + self._pos
        if kind == "file":
            if size < 0:
                raise Damaged(f"a negative size for {name!r}")
            self.declared += size
            if self._max_bytes is not None and self.declared > self._max_bytes:
                raise OverCap(f"archive declares more than {self._max_bytes} uncompressed bytes, the cap")
            self._data(offset, name, size)
        return TarMember(name, size, mtime, kind, offset)

    def _data(self, offset: int, name: str, size: int) -> None:
        """Pass a file member's bytes and padding, hashing and keeping them as asked."""
        keep = sha = False
        if self._asks and (self._endings is None or name.endswith(self._endings)):
            keep = self._wanted is not None and self.kept_bytes + size <= MAX_KEPT and self._wanted(name, size)
            if keep:
                self.kept_bytes += size
            sha = self._sha256 is not None and self._sha256(name)
        pos, end = self._pos, self._pos + size
        if end + (-size % BLOCK) <= len(self._buf) and not sha:  # the common case: all of it is in the buffer
            if self._hash:
                self.digests[offset] = xxhash.xxh3_128_intdigest(self._view[pos:end])
            if keep:
                self.kept[offset] = self._buf[pos:end]
            self._pos = end + (-size % BLOCK)
            return
        pieces: list | None = [] if keep else None
        hasher = _Both(xxhash.xxh3_128() if self._hash else None, sha)
        if not self._skip(size, hasher if (self._hash or sha) else None, pieces) or not self._skip(-size % BLOCK):
            raise Damaged(f"the archive ends inside {name!r}")
        if self._hash:
            self.digests[offset] = hasher.xxh.intdigest()  # type: ignore[union-attr]
        if sha:
            self.sha256[offset] = hasher.sha.hexdigest()  # type: ignore[union-attr]
        if pieces is not None:
            self.kept[offset] = b"".join(pieces)


def _length(stream: BinaryIO) -> int:
    here = stream.tell()
    end = stream.seek(0, 2)
    stream.seek(here)
    return end


class _Both:
    """Feeds the bytes of a member to its xxh3 and, where asked, its SHA-256."""

    def __init__(self, xxh, sha: bool):
        import hashlib  # only when a member is asked for by SHA-256

        self.xxh = xxh
        self.sha = hashlib.sha256() if sha else None

    def update(self, data) -> None:
        if self.xxh is not None:
            self.xxh.update(data)
        if self.sha is not None:
            self.sha.update(data)


def _check(hdr: bytes, adler32=zlib.adler32) -> None:
    field = hdr[148:156]
    stored = _number(field)
    # The unsigned sum of the header with its checksum field read as spaces, compared modulo 65521:
    # adler32's low half is 1 + the byte sum modulo 65521, ten times cheaper than sum() (and exact
    # for the field's 8 bytes); a damaged header passes 1 time in 65,521. The signed sum (old
    # writers) is worked out in full.
    if (stored + (adler32(field) & 0xFFFF) - 257) % 65521 != ((adler32(hdr) & 0xFFFF) - 1) % 65521 \
            and stored != 256 + sum(_SIGNED.unpack_from(hdr)):
        raise Damaged("a header whose checksum does not match (damaged or not a tar)")


def _number(field: bytes) -> int:
    """A header number: octal text, or base-256 when the first byte's high bit is set (as tarfile)."""
    first = field[0]
    if first == 0o200 or first == 0o377:
        n = int.from_bytes(field[1:], "big")
        return n - (256 ** (len(field) - 1)) if first == 0o377 else n
    try:  # digits and a NUL or space or two after them, as writers end a field: the same number as below
        return int(field.rstrip(b"\0 "), 8)
    except ValueError:
        pass
    try:  # tarfile's reading: ASCII up to the first NUL, stripped of what str.strip strips
        return int(field.split(b"\0", 1)[0].decode("ascii").strip() or "0", 8)
    except ValueError:  # (UnicodeDecodeError too)
        raise Damaged("a header number that is not octal") from None


def _text(field: bytes) -> str:
    end = field.find(0)
    return (field if end < 0 else field[:end]).decode("utf-8", "surrogateescape")


def _pax_number(value: bytes, kind):
    try:
        return kind(value.decode("utf-8", "surrogateescape"))  # as text, as tarfile reads it
    except ValueError:
        return 0


def _pax(data: bytes, into: dict[bytes, bytes] | None) -> dict[bytes, bytes]:
    """The records of a pax header ("<length> <key>=<value>\\n" each), entered in `into` (a new dict
    when None), which is returned."""
    out: dict[bytes, bytes] = {} if into is None else into
    sp = data.find(b" ", 0, 24)
    if sp > 0 and data[-1:] == b"\n" and data[:sp].isdigit() and int(data[:sp]) == len(data):
        key, eq, value = data[sp + 1:-1].partition(b"=")  # one record, the common case (a time)
        if eq:
            out[key] = value
            return out
    pos = 0
    while pos < len(data) and data[pos] != 0:
        sp = data.find(b" ", pos)
        if sp < 0:
            raise Damaged("a pax record without a length")
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise Damaged("a pax record without a length") from None
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1] != 10:
            raise Damaged("a pax record whose length is wrong")
        key, eq, value = data[sp + 1:end - 1].partition(b"=")
        if not eq:
            raise Damaged("a pax record without '='")
        out[key] = value
        pos = end
    return out
