"""A zip's central directory read without keeping a ZipInfo per member.

`zipfile.ZipFile` keeps a ZipInfo for every member, with its decoded name, extra field and comment:
about 40 MB for 55,000 members, measured, on top of the store's own index. `LeanZip` reads the
directory as zipfile does (the same fields, zip64 extras, bytes prepended to the archive) but hands
each ZipInfo to the caller and keeps none; the store keeps what opening a member needs (`opening`)
and makes a ZipInfo again when it is opened (`info_of`), so zipfile still reads every member.

Caps: what the end record declares is refused first (more members than the cap, or a directory too
large to hold only that many); it is not trusted either, since a zip may declare 10 members and
hold millions: the directory is read one header at a time, and its reader (the store) stops at the
cap, so no more than the cap is ever parsed.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterator

from mlcache_audit.errors import ArchiveLimitExceeded
from mlcache_audit.sources.base import display_path
from mlcache_audit.sources.limits import DEFAULT_MAX_MEMBERS

_MAX_VERSION = getattr(zipfile, "MAX_EXTRACT_VERSION", 63)


# A central-directory header is 46 bytes plus its name, extra field and comment; this allows
# names averaging about 1 KiB before a directory is called too large for its member cap.
_MAX_DIRECTORY_BYTES_PER_MEMBER = 1024


class LeanZip(zipfile.ZipFile):
    """A read-only ZipFile whose members are listed by `directory()` and opened by ZipInfo."""

    def __init__(self, file, max_members: int = DEFAULT_MAX_MEMBERS):
        self._max_members = max_members
        super().__init__(file)

    def _RealGetContents(self) -> None:  # noqa: N802 - zipfile's own hook, called by its __init__
        fp = self.fp
        try:
            endrec = zipfile._EndRecData(fp)  # noqa: SLF001 - the stdlib's end-record reader
        except OSError:
            raise zipfile.BadZipFile("File is not a zip file") from None
        if not endrec:
            raise zipfile.BadZipFile("File is not a zip file")
        self._size_cd = endrec[zipfile._ECD_SIZE]  # noqa: SLF001
        entries, cap = endrec[zipfile._ECD_ENTRIES_TOTAL], self._max_members  # noqa: SLF001
        if entries > cap or self._size_cd > cap * _MAX_DIRECTORY_BYTES_PER_MEMBER:
            raise ArchiveLimitExceeded(
                f"archive declares {entries} members in a {self._size_cd}-byte directory, over the cap of {cap} "
                "members", hint="raise --max-archive-members if this archive is trusted")
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
            extra = data.read(centdir[zipfile._CD_EXTRA_FIELD_LENGTH])  # noqa: SLF001
            data.seek(centdir[zipfile._CD_COMMENT_LENGTH], 1)  # noqa: SLF001 - the comment is not kept
            total += (zipfile.sizeCentralDir + centdir[zipfile._CD_FILENAME_LENGTH]  # noqa: SLF001
                      + centdir[zipfile._CD_EXTRA_FIELD_LENGTH] + centdir[zipfile._CD_COMMENT_LENGTH])  # noqa: SLF001
            try:
                name = raw.decode("utf-8") if flags & 0x800 else raw.decode(self.metadata_encoding or "cp437")
            except UnicodeDecodeError:  # flagged UTF-8, and it is not
                notes.append(f"archive member skipped (its name is not UTF-8, as its flag says): "
                             f"{display_path(raw.decode('utf-8', 'surrogateescape'))}")
                continue
            x = zipfile.ZipInfo(name)
            x.extra = extra
            x.header_offset = centdir[zipfile._CD_LOCAL_HEADER_OFFSET]  # noqa: SLF001
            (x.create_version, x.create_system, x.extract_version, x.reserved, x.flag_bits, x.compress_type,
             t, d, x.CRC, x.compress_size, x.file_size) = centdir[1:12]
            x.volume, x.internal_attr, x.external_attr = centdir[15:18]
            x._raw_time = t  # noqa: SLF001
            x.date_time = ((d >> 9) + 1980, (d >> 5) & 0xF, d & 0x1F, t >> 11, (t >> 5) & 0x3F, (t & 0x1F) * 2)
            x._decodeExtra()  # noqa: SLF001 - zip64 sizes and offset
            x.header_offset += self._concat
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
