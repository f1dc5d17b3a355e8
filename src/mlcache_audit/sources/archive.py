"""Zip and tar archives as read-only stores: members are listed and streamed in place, never extracted."""

from __future__ import annotations

import lzma
import stat
import tarfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, NoReturn

from mlcache_audit import fsio
from mlcache_audit.docfields import MAX_POSIX_TIME, MIN_POSIX_TIME, posix_time
from mlcache_audit.errors import ArchiveLimitExceeded, CorruptInput
from mlcache_audit.gcpause import collector_paused
from mlcache_audit.sources import tarpass, tarstream, zipdir
from mlcache_audit.sources.base import DIR, FILE, Entry, display_path
from mlcache_audit.sources.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBERS

# UnicodeDecodeError: zipfile decodes a local header's name as UTF-8 when its flag says so; LZMAError:
# a damaged .xz, or a zip member packed with LZMA, raises lzma's own error, not zipfile's.
READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error, RuntimeError, UnicodeDecodeError,
               lzma.LZMAError)


@dataclass(slots=True)
class _Member:
    size: int
    mtime: float | None
    is_dir: bool
    ref: object  # a tar member's offset, a zip member's packed opening (zipdir), or tarfile's TarInfo


def is_archive(path: Path) -> str | None:
    """'zip' or 'tar' by content (not by name), else None. Read through a handle opened without
    blocking or following a final symlink and checked to be a regular file (fsio.open_regular), so
    a FIFO or a device named `x.zip` is never read.

    tarfile's own test lets more than TarError out of a damaged compressed file (a gzip stream cut
    before its first header is EOFError): such a file is a cut archive, 'tar', so its reader says
    where it is damaged; any other error reading it is None (tests/test_archive_sniff.py cuts and
    changes every form)."""
    try:
        fh = fsio.open_regular_file(str(path))
    except OSError:
        return None
    with fh:
        try:
            if zipfile.is_zipfile(fh):
                return "zip"
            fh.seek(0)
            if tarfile.is_tarfile(fh):
                return "tar"
        except EOFError:
            return "tar"
        except READ_ERRORS + (ValueError,):
            return None
    return None


def clean_member_name(raw: str) -> tuple[str | None, str | None]:
    """(normalised name, None) for a safe member name, or (None, reason) for one to skip.

    Names are NFC-normalised (macOS writes NFD), `./` prefixes dropped; absolute names and names
    with `..` parts are refused, and macOS Archive Utility's `__MACOSX/` and `._*` entries skipped.
    """
    if _plain(raw):
        return raw, None  # what the steps below would give it, at a fifth of their cost
    return _cleaned(raw)


def _plain(name: str) -> bool:
    """A name the cleaning steps leave as it is: ASCII, no backslash, no part empty or starting
    with '.' (so no '.', '..' or '._*' part), not a drive name, not under __MACOSX (a test compares
    it with the steps on generated names)."""
    return bool(name) and name.isascii() and "\\" not in name and "/." not in name and "//" not in name \
        and name[0] not in "./" and name[-1] != "/" and name[1:2] != ":" and not name.startswith("__MACOSX")


def _cleaned(raw: str) -> tuple[str | None, str | None]:
    name = raw.replace("\\", "/")
    if not name.isascii():
        name = unicodedata.normalize("NFC", name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None, "absolute name"
    parts = name.split("/")
    if "" in parts or "." in parts:
        parts = [p for p in parts if p not in ("", ".")]
        name = "/".join(parts)  # else the name is kept as it came (one string, not two, per member)
    if ".." in parts:
        return None, "name climbs out with '..'"
    if not parts:
        return None, "empty name"
    if parts[0] == "__MACOSX" or parts[-1].startswith("._"):
        return None, ""
    return name, None


_NONE: dict = {}  # a folder without members (never written to)


def _capped(members, max_members: int):
    """The members as they are read, refused past the cap (before the next one is read)."""
    for count, m in enumerate(members, 1):
        if count > max_members:
            _over_cap(max_members)
        yield m


def _over_cap(max_members: int) -> NoReturn:
    raise ArchiveLimitExceeded(f"archive has more members than the cap of {max_members}",
                               hint="raise --max-archive-members if this archive is trusted")


def _place(ref: object) -> int:
    """Where a member's bytes are in its archive: a tar's offset (ours, or tarfile's TarInfo), a
    zip's local header (its first 8 packed bytes)."""
    if isinstance(ref, int):
        return ref
    if isinstance(ref, tarfile.TarInfo):
        return ref.offset
    packed = ref[0] if isinstance(ref, tuple) else ref
    return int.from_bytes(packed[:8], "little")  # type: ignore[index]


class ArchiveStore:
    """An index of a zip or tar archive's members; contents are streamed on demand."""

    def __init__(self, path: Path, kind: str, *, max_members: int = DEFAULT_MAX_MEMBERS,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        self.path = path
        self.kind = kind
        self.label = str(path)
        self.notes: list[str] = []
        # Members by folder, then name: a member's whole path is not kept as a string of its own
        # (the folders' paths are, once each): about a fifth of a 40,000-member index, measured.
        self._files: dict[str, dict[str, _Member]] = {}
        self._count = 0
        self._children: dict[str, dict[str, bool]] = {"": {}}
        self._handle: zipfile.ZipFile | tarfile.TarFile | None = None
        self._tar: tarpass.TarPass | None = None  # the one pass over a tar read without tarfile
        self.compression: str | None = None
        self.passes = 0  # times a compressed tar is inflated from its start (1 for the index, more only for members not kept)
        try:
            with collector_paused():  # the index's records hold no cycles (gcpause says why)
                if kind == "zip":
                    self._handle = zipdir.LeanZip(fsio.open_regular_file(str(path)), max_members)
                    self._index(self._zip_members(max_members), max_bytes)
                else:
                    self._index_tar(max_members, max_bytes)
        except ArchiveLimitExceeded:
            raise
        except (*READ_ERRORS, tarpass.Damaged) as exc:
            raise CorruptInput(f"cannot read archive {path}: {exc}") from None

    def _index_tar(self, max_members: int, max_bytes: int) -> None:
        """One pass of tarpass; a form it leaves to tarfile is read with tarfile from the start."""
        self.compression = tarstream.compression_of(self.path)
        try:
            with self._open_tar(ahead=True) as stream:
                self._tar = tarpass.TarPass(stream, seekable=self.compression is None,
                                            hash_files=self.compression is not None,
                                            wanted=read_by_name if self.compression else None,
                                            sha256=_named_by_main_hash if self.compression else None,
                                            max_bytes=max_bytes, endings=_ASKED_ENDINGS)
                self._index(self._fast_members(max_members), max_bytes)
            if self._tar.damage:
                self.notes.append(f"archive damaged after {self._count} members ({self._tar.damage}): "
                                  "the rest is not indexed")
        except tarpass.OverCap as exc:
            raise ArchiveLimitExceeded(str(exc), hint="raise --max-archive-bytes if this archive is trusted") from None
        except tarpass.Unsupported:
            self._files, self._children, self.notes, self._tar, self._count = {}, {"": {}}, [], None, 0
            self._handle = tarfile.open(fileobj=fsio.open_regular_file(str(self.path)), mode="r:*")
            self._index(self._tar_members(max_members), max_bytes)

    # -- index -------------------------------------------------------------------------------
    def _zip_members(self, max_members: int) -> Iterator[tuple[str, int, float | None, str, object]]:
        for info in _capped(self._handle.directory(self.notes), max_members):  # type: ignore[union-attr]
            # Many writers (Windows tools, Python's writestr) store permission bits without a file
            # type: no type bits means a regular file.
            ftype = stat.S_IFMT(info.external_attr >> 16)
            if info.is_dir() or ftype == stat.S_IFDIR:
                kind = "dir"
            elif ftype == stat.S_IFLNK:
                kind = "symlink"
            elif ftype in (0, stat.S_IFREG):
                kind = "file"
            else:
                kind = "device"
            mtime = _dos_time(info.date_time)
            yield info.filename, info.file_size, mtime, kind, info

    def _fast_members(self, max_members: int) -> Iterator[tuple[str, int, float | None, str, object]]:
        for count, m in enumerate(self._tar, 1):  # type: ignore[arg-type]
            if count > max_members:  # _capped's check, here: one generator fewer a member
                _over_cap(max_members)
            # posix_time's range check, first (a tar's time is an int or a float, never a bool)
            mtime = float(m.mtime) if MIN_POSIX_TIME <= m.mtime <= MAX_POSIX_TIME else posix_time(m.mtime)
            if mtime is None:
                self.notes.append(f"archive member time {m.mtime!r} is not a valid time; ignored: "
                                  f"{display_path(m.name)}")
            yield m.name, m.size, mtime, m.kind, m.offset

    def _open_tar(self, ahead: bool = False) -> BinaryIO:
        """The tar's uncompressed bytes from the start, as a stream (a new one each call)."""
        self.passes += self.compression is not None  # a plain tar's member is read in place (a seek)
        return tarstream.open_stream(self.path, self.compression, ahead=ahead)

    def _tar_members(self, max_members: int) -> Iterator[tuple[str, int, float | None, str, object]]:
        for info in _capped(self._handle, max_members):  # type: ignore[arg-type]
            if info.isdir():
                kind = "dir"
            elif info.issym() or info.islnk():
                kind = "symlink" if info.issym() else "hardlink"
            elif info.isreg():
                kind = "file"
            else:
                kind = "device"
            mtime = posix_time(info.mtime)
            if mtime is None:
                self.notes.append(f"archive member time {info.mtime!r} is not a valid time; ignored: "
                                  f"{display_path(info.name)}")
            yield info.name, info.size, mtime, kind, info

    def _index(self, raw, max_bytes: int) -> None:
        total = 0
        for raw_name, size, mtime, kind, ref in raw:
            name, reason = clean_member_name(raw_name)
            if name is None:
                if reason:
                    self.notes.append(f"archive member skipped ({reason}): {display_path(raw_name)}")
                continue
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                self.notes.append(f"archive member skipped (size {size!r} is not valid): {display_path(name)}")
                continue
            if kind in ("symlink", "hardlink", "device"):
                self.notes.append(f"archive member skipped ({kind} member): {display_path(name)}")
                continue
            parent, _, base = name.rpartition("/")
            if (known := self._files.get(parent, _NONE).get(base)) is not None:
                if not (kind == "dir" and known.is_dir):
                    self.notes.append(f"archive member skipped (duplicate name): {display_path(name)}")
                continue
            is_dir = kind == "dir"
            if not is_dir:
                total += size
                if total > max_bytes:
                    raise ArchiveLimitExceeded(
                        f"archive declares more than {max_bytes} uncompressed bytes, the cap",
                        hint="raise --max-archive-bytes if this archive is trusted")
            if isinstance(ref, zipfile.ZipInfo):  # not kept whole: what opening it needs, packed
                ref = zipdir.opening(ref, name)
            self._files.setdefault(parent, {})[base] = _Member(0 if is_dir else size, mtime, is_dir, ref)
            self._count += 1
            self._link(name, parent, base, is_dir)

    def member(self, rel: str) -> _Member | None:
        parent, _, base = rel.rpartition("/")
        return self._files.get(parent, _NONE).get(base)

    def _link(self, name: str, parent: str, base: str, is_dir: bool) -> None:
        """Enter a member in its folder's listing, and each folder on the way up in its own, up to
        the first folder already listed (its own way up was entered when it was)."""
        children = self._children
        kids = children.get(parent)
        fresh = kids is None
        if kids is None:
            kids = children[parent] = {}
        kids[base] = is_dir or kids.get(base, False)
        if is_dir and name not in children:
            children[name] = {}
        while fresh and parent:
            grand, _, pbase = parent.rpartition("/")
            up = children.get(grand)
            fresh = up is None
            if up is None:
                up = children[grand] = {}
            up[pbase] = True
            parent = grand

    # -- Store protocol ----------------------------------------------------------------------
    def list_dir(self, rel: str) -> dict[str, bool] | None:
        children = self._children.get(rel)
        return dict(children) if children is not None else None

    def read(self, rel: str, limit: int = 1 << 20) -> bytes | None:
        m = self.member(rel)
        if m is not None and self._tar is not None and m.ref in self._tar.kept:
            return self._tar.kept[m.ref][:limit]  # type: ignore[index]
        for _, fh in self.stream([rel]):
            if fh is None:
                return None
            try:
                return fh.read(limit)
            except READ_ERRORS:
                return None
        return None

    # Entries come out in tree order (a folder, then its subtree, siblings by name), as a folder
    # store's do: the container need not build and sort a list of every member.
    sorted_walk = True

    def walk(self, rel: str, notes: list[str]) -> Iterator[Entry]:
        notes.extend(self.notes)
        children, files = self._children, self._files
        if rel not in children:
            return
        # (the folder's path in the archive, its path below rel, its names in order, its members)
        stack = [(rel, "", iter(sorted(children[rel].items())), files.get(rel, _NONE))]
        while stack:
            folder, under, names, members = stack[-1]
            item = next(names, None)
            if item is None:
                stack.pop()
                continue
            name, is_dir = item
            path = under + name
            m = members.get(name)
            if m is None:  # a folder implied by member names but not stored as a member
                yield Entry(path, DIR, 0, None)
            else:
                yield Entry(path, DIR if m.is_dir else FILE, m.size, m.mtime)
            if is_dir:
                sub = f"{folder}/{name}" if folder else name
                if inner := children.get(sub):
                    stack.append((sub, path + "/", iter(sorted(inner.items())), files.get(sub, _NONE)))

    def stream(self, rels: list[str]) -> Iterator[tuple[str, BinaryIO | None]]:
        # Archive order: a compressed tar then decompresses once, forwards, whatever is asked.
        found = {r: m for r in rels if (m := self.member(r)) is not None and not m.is_dir}
        known = sorted((_place(m.ref), r) for r, m in found.items())
        for r in rels:
            if r not in found:
                yield r, None
        if self._tar is not None:
            yield from self._stream_tar(known)
            return
        for _, rel in known:
            ref = found[rel].ref
            try:
                if self.kind == "zip":
                    fh = self._handle.open(zipdir.info_of(ref, rel))  # type: ignore[arg-type, union-attr]
                else:
                    fh = self._handle.extractfile(ref)  # type: ignore[arg-type, union-attr]
            except READ_ERRORS:
                yield rel, None
                continue
            try:
                yield rel, fh
            finally:
                if fh is not None:
                    fh.close()

    def _stream_tar(self, known: list[tuple[int, str]]) -> Iterator[tuple[str, BinaryIO | None]]:
        """Members in archive order, in one forward pass (a seek each in a plain tar)."""
        if not known:
            return
        with self._open_tar() as stream:
            pos = 0
            for _, rel in known:
                m = self.member(rel)
                offset: int = m.ref  # type: ignore[assignment]
                try:
                    tarstream.skip_forward(stream, offset - pos, self.compression is None)
                except READ_ERRORS:
                    yield rel, None
                    continue
                window = tarstream.Window(stream, m.size)
                yield rel, window  # type: ignore[misc]
                pos = offset + m.size - window.left  # what the reader left of it is passed on the way on

    def passed_digest(self, rel: str, kind: str = "xxh3") -> tuple[str, int] | None:
        """(hex, size) of a member hashed in the index pass of a compressed tar (xxh3-128, or
        SHA-256 for what Core AI's main.hash names), else None."""
        m = self.member(rel)
        if m is None or self._tar is None:
            return None
        if kind == "sha256":
            sha = self._tar.sha256.get(m.ref)  # type: ignore[arg-type]
            return (sha, m.size) if sha is not None else None
        digest = self._tar.digests.get(m.ref)  # type: ignore[arg-type]
        return (f"{digest:032x}", m.size) if digest is not None else None

    def hash_key(self, entry: Entry) -> tuple | None:
        return None  # archives are read once per run; no cross-run cache

    def hash_keys(self, entries: list[Entry]) -> list[tuple] | None:
        return None


# The members the scan reads by name (detect, describe, backup): in a compressed tar their bytes are
# kept from the index pass, so reading one does not inflate the archive again. At most 1 MiB each,
# a source model (read whole to be parsed) up to 64 MiB, and 64 MiB in all (tarpass.MAX_KEPT): one
# beyond that is read in a pass of its own, as every member of a plain tar is read in place.
_READ_NAMES = frozenset({"main.hash", "Manifest.json", "metadata.json", "coremldata.bin", "model.mil",
                         "Manifest.db", "assets.db", "assets.db-wal"})
_MAX_READ = 1 << 20
_ASKED_ENDINGS = (*_READ_NAMES, ".plist", ".mlmodel", "/main.mlirb")  # what the two below can accept


def read_by_name(name: str, size: int) -> bool:
    base = name.rpartition("/")[2]
    if base.endswith(".mlmodel"):
        return size <= tarpass.MAX_KEPT
    return size <= _MAX_READ and (base in _READ_NAMES or base.endswith(".plist"))


def _named_by_main_hash(name: str) -> bool:
    return name.endswith("/main.mlirb")  # a Core AI source's weights, checked against its main.hash


def _dos_time(date_time: tuple) -> float | None:
    try:
        return datetime(*date_time, tzinfo=timezone.utc).timestamp()
    except (ValueError, TypeError):
        return None
