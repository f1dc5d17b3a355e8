"""A zip's central directory read without keeping a ZipInfo per member.

`zipfile.ZipFile` keeps a ZipInfo for every member, with its decoded name, extra field and comment:
about 40 MB for 55,000 members, measured, on top of the store's own index. `LeanZip` reads the
directory as zipfile does (the same fields, zip64 extras, bytes prepended to the archive) but hands
each ZipInfo to the caller and keeps none; the store keeps what opening a member needs (`opening`)
and makes a ZipInfo again when it is opened (`info_of`), so zipfile still reads every member.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

from mlcache_audit.errors import ArchiveLimitExceeded

_MAX_VERSION = getattr(zipfile, "MAX_EXTRACT_VERSION", 63)


class LeanZip(zipfile.ZipFile):
    """A read-only ZipFile whose members are listed by `directory()` and opened by ZipInfo."""

    def _RealGetContents(self) -> None:  # noqa: N802 - zipfile's own hook, called by its __init__
        fp = self.fp
        try:
            endrec = zipfile._EndRecData(fp)  # noqa: SLF001 - the stdlib's end-record reader
        except OSError:
            raise zipfile.BadZipFile("File is not a zip file") from None
        if not endrec:
            raise zipfile.BadZipFile("File is not a zip file")
        self._size_cd = endrec[zipfile._ECD_SIZE]  # noqa: SLF001
        offset_cd = endrec[zipfile._ECD_OFFSET]  # noqa: SLF001
        self._comment = endrec[zipfile._ECD_COMMENT]  # noqa: SLF001
        concat = endrec[zipfile._ECD_LOCATION] - self._size_cd - offset_cd  # noqa: SLF001
        if endrec[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # noqa: SLF001
            concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
        self._concat = concat
        self.start_dir = offset_cd + concat
        if self.start_dir < 0:
            raise zipfile.BadZipFile("Bad offset for central directory")

    def directory(self, notes: list[str]) -> Iterator[zipfile.ZipInfo]:
        """Every member's ZipInfo, in directory order, made as zipfile makes them; none is kept."""
        fp = self.fp
        fp.seek(self.start_dir, 0)  # type: ignore[union-attr]
        data = io.BytesIO(fp.read(self._size_cd))  # type: ignore[union-attr]
        total = 0
        while total < self._size_cd:
            centdir = data.read(zipfile.sizeCentralDir)
            if len(centdir) != zipfile.sizeCentralDir:
                raise zipfile.BadZipFile("Truncated central directory")
            centdir = struct.unpack(zipfile.structCentralDir, centdir)
            if centdir[zipfile._CD_SIGNATURE] != zipfile.stringCentralDir:  # noqa: SLF001
                raise zipfile.BadZipFile("Bad magic number for central directory")
            raw = data.read(centdir[zipfile._CD_FILENAME_LENGTH])  # noqa: SLF001
            flags = centdir[zipfile._CD_FLAG_BITS]  # noqa: SLF001
            name = raw.decode("utf-8") if flags & 0x800 else raw.decode(self.metadata_encoding or "cp437")
            x = zipfile.ZipInfo(name)
            x.extra = data.read(centdir[zipfile._CD_EXTRA_FIELD_LENGTH])  # noqa: SLF001
            data.seek(centdir[zipfile._CD_COMMENT_LENGTH], 1)  # noqa: SLF001 - the comment is not kept
            x.header_offset = centdir[zipfile._CD_LOCAL_HEADER_OFFSET]  # noqa: SLF001
            (x.create_version, x.create_system, x.extract_version, x.reserved, x.flag_bits, x.compress_type,
             t, d, x.CRC, x.compress_size, x.file_size) = centdir[1:12]
            x.volume, x.internal_attr, x.external_attr = centdir[15:18]
            x._raw_time = t  # noqa: SLF001
            x.date_time = ((d >> 9) + 1980, (d >> 5) & 0xF, d & 0x1F, t >> 11, (t >> 5) & 0x3F, (t & 0x1F) * 2)
            x._decodeExtra()  # noqa: SLF001 - zip64 sizes and offset
            x.header_offset += self._concat
            total += (zipfile.sizeCentralDir + centdir[zipfile._CD_FILENAME_LENGTH]  # noqa: SLF001
                      + centdir[zipfile._CD_EXTRA_FIELD_LENGTH] + centdir[zipfile._CD_COMMENT_LENGTH])  # noqa: SLF001
            if x.extract_version > _MAX_VERSION:
                notes.append(f"archive member skipped (zip version {x.extract_version / 10:.1f} is not "
                             f"supported): {name!r}")
                continue
            yield x


_OPENING = struct.Struct("<QQQIHHH")  # header offset, compressed and full size, CRC, method, flags, time


def opening(info: zipfile.ZipInfo, name: str) -> bytes | tuple[bytes, str]:
    """What opening a member needs, packed in 36 bytes (with its name as stored when the store
    keys it by another)."""
    packed = _OPENING.pack(info.header_offset, info.compress_size, info.file_size, info.CRC,
                           info.compress_type, info.flag_bits, info._raw_time)  # noqa: SLF001
    return packed if info.orig_filename == name else (packed, info.orig_filename)


def info_of(ref: bytes | tuple[bytes, str], name: str) -> zipfile.ZipInfo:
    """A ZipInfo again, from `opening`'s, for ZipFile.open (which checks the name as stored)."""
    packed, stored = ref if isinstance(ref, tuple) else (ref, name)
    x = zipfile.ZipInfo(stored)
    (x.header_offset, x.compress_size, x.file_size, x.CRC, x.compress_type, x.flag_bits,
     x._raw_time) = _OPENING.unpack(packed)  # noqa: SLF001
    return x


# A central-directory header is 46 bytes plus its name, extra field and comment; this allows
# names averaging about 1 KiB before a directory is called too large for its member cap.
_MAX_DIRECTORY_BYTES_PER_MEMBER = 1024


def check_directory(path: Path, max_members: int) -> None:
    """Refuse a zip whose central directory holds more members than the cap, before `zipfile`
    parses every header of it into memory. What the end record declares is not trusted: a zip may
    declare 10 members and hold millions, so the directory itself is counted, while it is read and
    stopping at the cap. Cheap for every real archive: a directory too small to hold more than the
    cap (each header is at least 46 bytes), or with fewer header signatures than the cap, needs no
    exact count."""
    try:
        from mlcache_audit.sources.tarstream import regular

        with regular(path) as fh:
            end = zipfile._EndRecData(fh)  # noqa: SLF001 - the stdlib's own end-record reader (zip64 aware)
            if not end:
                return  # zipfile itself will say the archive is damaged
            entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # noqa: SLF001
            if entries > max_members or size > max_members * _MAX_DIRECTORY_BYTES_PER_MEMBER:
                raise ArchiveLimitExceeded(
                    f"archive declares {entries} members in a {size}-byte directory, over the cap of {max_members} "
                    "members", hint="raise --max-archive-members if this archive is trusted")
            if size // _CENTRAL_HEADER_BYTES <= max_members:
                return
            # Where zipfile will read the directory from (an archive may have bytes prepended).
            start = end[zipfile._ECD_LOCATION] - size  # noqa: SLF001
            if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # noqa: SLF001
                start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
            counted = _count_central_headers(fh, max(0, start), size, max_members)
    except (AttributeError, OSError, struct.error):
        return  # no end-record reader in this Python, or unreadable: zipfile will say what is wrong
    if counted > max_members:
        raise ArchiveLimitExceeded(
            f"archive holds more than {max_members} members in its directory (it declares {entries}), over the cap",
            hint="raise --max-archive-members if this archive is trusted")


_CENTRAL_HEADER_BYTES = 46
_CENTRAL_SIGNATURE = b"PK\x01\x02"


def _count_central_headers(fh, start: int, size: int, limit: int) -> int:
    """Headers in the central directory at `start`, counted up to `limit + 1` (then it stops),
    reading it in 4 MiB chunks (a header with its name, extra and comment is at most 196,651 bytes)."""
    fh.seek(start)
    buf, pos, left, count = b"", 0, size, 0
    most = _CENTRAL_HEADER_BYTES + 3 * 65535
    while True:
        if len(buf) - pos < most and left > 0:
            chunk = fh.read(min(left, 1 << 22))
            if not chunk:
                left = 0
            left -= len(chunk)
            buf, pos = buf[pos:] + chunk, 0
        if len(buf) - pos < _CENTRAL_HEADER_BYTES or buf[pos:pos + 4] != _CENTRAL_SIGNATURE:
            return count  # the end of the directory, or damage zipfile will report
        name, extra, comment = struct.unpack_from("<HHH", buf, pos + 28)
        pos += _CENTRAL_HEADER_BYTES + name + extra + comment
        count += 1
        if count > limit:
            return count


