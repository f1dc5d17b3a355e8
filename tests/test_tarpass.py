"""The tar reader of sources/tarpass.py: what tarfile reads, in one pass, and honest about damage."""

import io
import tarfile
import zlib

import build_fixtures as bf
import pytest
import xxhash
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlcache_audit.audit import audit_containers
from mlcache_audit.errors import CorruptInput
from mlcache_audit.sources import tarpass, tarstream
from mlcache_audit.sources.archive import ArchiveStore
from mlcache_audit.sources.detect import open_containers

KINDS = {tarfile.REGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink",
         tarfile.FIFOTYPE: "device", tarfile.CHRTYPE: "device"}
FORMATS = [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]
COMPRESSION = ["", "gz", "bz2", "xz"]

part = st.text(st.characters(codec="utf-8", exclude_characters="/\0", exclude_categories=["Cs"]), min_size=1, max_size=40)
member = st.tuples(st.lists(part, min_size=1, max_size=6).map("/".join), st.sampled_from(sorted(KINDS)),
                   st.binary(max_size=3000), st.one_of(st.integers(0, 2**33), st.floats(0, 2**33, allow_nan=False)))


def build(members, fmt, compression="") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=f"w:{compression}", format=fmt, encoding="utf-8") as t:
        for name, typ, data, mtime in members:
            info = tarfile.TarInfo(name)
            info.type, info.mtime = typ, mtime
            if typ in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = "elsewhere"
            if typ == tarfile.REGTYPE:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)
    return out.getvalue()


def stdlib(blob: bytes) -> list[tuple]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as t:
        return [(i.name, i.size if i.isreg() else 0, i.mtime, KINDS.get(i.type, "device"),
                 t.extractfile(i).read() if i.isreg() else b"") for i in t]


def ours(blob: bytes, compression: str, hash_files: bool = True):
    stream = io.BytesIO(blob)
    if compression:
        import bz2
        import lzma

        stream = tarstream.Gunzip(stream) if compression == "gz" else \
            {"bz2": bz2.BZ2File, "xz": lzma.LZMAFile}[compression](stream)
    tp = tarpass.TarPass(stream, seekable=not compression, hash_files=hash_files, wanted=lambda name, size: True)
    got = list(tp)
    return tp, got


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(member, max_size=12), st.sampled_from(FORMATS), st.sampled_from(COMPRESSION))
def test_every_member_tarfile_reads_is_read_alike_in_one_pass(members, fmt, compression):
    """Names (long ones by GNU records, pax records or the ustar prefix), sizes, times and kinds as
    tarfile reads them; each file's bytes are the kept bytes and its digest the xxh3 of them."""
    try:
        blob = build(members, fmt, compression)
    except ValueError:
        return  # a name or time this format cannot hold: tarfile refuses to write it
    expected = stdlib(blob)
    tp, got = ours(blob, compression)
    assert tp.damage is None
    assert [(m.name, m.size, m.mtime, m.kind) for m in got] == [e[:4] for e in expected]
    for m, e in zip(got, expected, strict=True):
        if m.kind == "file":
            assert tp.kept[m.offset] == e[4]
            assert tp.digests[m.offset] == xxhash.xxh3_128_intdigest(e[4])
            assert blob_at(blob, compression, m.offset, m.size) == e[4]  # the offset is where its bytes are


def blob_at(blob: bytes, compression: str, offset: int, size: int) -> bytes:
    if compression:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as t:
            t.fileobj.seek(offset)
            return t.fileobj.read(size)
    return blob[offset:offset + size]


@settings(max_examples=60, deadline=None)
@given(st.lists(member, min_size=1, max_size=5), st.sampled_from(FORMATS), st.data())
def test_a_cut_or_damaged_tar_is_refused_or_read_up_to_the_damage(members, fmt, data):
    """Wherever a tar is cut or a byte is changed, the reader raises Damaged (nothing read), or
    reads what comes before the damage and says where it stopped; it never hangs or raises
    anything else, and what it read is what tarfile reads of the same bytes up to there."""
    try:
        blob = build(members, fmt)
    except ValueError:
        return
    cut = data.draw(st.integers(0, len(blob) - 1))
    flip = data.draw(st.booleans())
    bad = blob[:cut] + (bytes([blob[cut] ^ 0x5A]) + blob[cut + 1:] if flip else b"")
    try:
        tp, got = ours(bad, "")
    except tarpass.Damaged:
        return
    except tarpass.Unsupported:
        return  # a changed type byte: left to tarfile
    full = stdlib(blob)
    assert len(got) <= len(full)
    good = [m for m in got if m.offset + m.size <= cut]
    assert [(m.name, m.size, m.kind) for m in good] == [e[:2] + (e[3],) for e in full[:len(good)]]
    _, whole = ours(blob, "")
    if not flip and cut < whole[-1].offset + whole[-1].size:  # a member is cut short: never a silent end
        assert tp.damage is not None


def test_the_byte_cap_is_checked_before_a_member_is_inflated():
    """A member that takes the declared bytes past the cap stops the pass at its header: a small
    .tar.gz declaring terabytes is refused without inflating them."""
    blob = build([("app/tmp/a.bin", tarfile.REGTYPE, bytes(200_000), 0),
                  ("app/tmp/b.bin", tarfile.REGTYPE, bytes(2_000_000), 0)], tarfile.USTAR_FORMAT, "gz")
    import gzip

    inflated = gzip.GzipFile(fileobj=io.BytesIO(blob))
    tp = tarpass.TarPass(inflated, seekable=False, hash_files=True, max_bytes=1_000_000)
    with pytest.raises(tarpass.OverCap):
        list(tp)
    assert inflated.tell() < 1_000_000 + 2 * tarpass.CHUNK  # b.bin's 2 MB were never read through


def test_a_member_type_it_has_no_word_for_is_read_with_tarfile(tmp_path):
    path = tmp_path / "odd.tar"
    blob = build([("app/Documents/a.txt", tarfile.REGTYPE, b"abc", 0)], tarfile.USTAR_FORMAT)
    info = tarfile.TarInfo("app/odd")
    info.type = b"Z"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
        t.addfile(info)
        t.addfile(tarfile.TarInfo("app/tmp"))
    path.write_bytes(blob[:1024] + out.getvalue())
    store = ArchiveStore(path, "tar")
    assert store._tar is None  # tarfile read it
    assert store.member("app/Documents/a.txt") is not None and store.member("app/tmp") is not None
    assert any("device member" in n and "app/odd" in n for n in store.notes)


def test_damage_after_the_first_member_is_a_note_and_the_rest_is_kept(tmp_path):
    blob = build([("app/Documents/a.txt", tarfile.REGTYPE, b"abc", 0),
                  ("app/tmp/b.bin", tarfile.REGTYPE, b"x" * 600, 0)], tarfile.USTAR_FORMAT)
    bad = bytearray(blob)
    bad[1024 + 20] ^= 0xFF  # the second header's name: its checksum no longer matches
    path = tmp_path / "damaged.tar"
    path.write_bytes(bytes(bad))
    store = ArchiveStore(path, "tar")
    assert [e.path for e in store.walk("", []) if e.type == "file"] == ["app/Documents/a.txt"]
    assert any("archive damaged after 1 members" in n and "checksum" in n for n in store.notes)
    with pytest.raises(CorruptInput):
        path.write_bytes(b"\xff" * 512 + bytes(blob[512:]))
        ArchiveStore(path, "tar")


@pytest.mark.parametrize("name", ["recompile", "studio", "coreai", "llm"])
def test_a_compressed_tar_is_inflated_once_and_judged_as_its_folder(built, tmp_path, name):
    """Index, reads by name and hashing take one pass over a .tar.gz; the candidates' digests come
    from that pass, and what is found is what the folder shows."""
    tgz = bf.tar_tree(built[name], tmp_path / f"{name}.tar.gz")
    containers = open_containers(str(tgz))
    result = audit_containers(str(tgz), containers, hash_cache=False)
    folder = audit_containers(str(built[name]), open_containers(str(built[name])), hash_cache=False)
    assert {c.store.passes for c in containers} == {1}
    assert result.hashes.stats.files_hashed >= folder.hashes.stats.files_hashed  # no partial tier in archives
    for a, b in zip(result.containers, folder.containers, strict=True):
        assert [(x.kind, x.path, x.bytes) for x in a.scan.artifacts] == [(x.kind, x.path, x.bytes) for x in b.scan.artifacts]
        assert sorted(f.rule for f in a.diagnosis.findings) == sorted(f.rule for f in b.diagnosis.findings)
        both = a.fingerprints.content.keys() & b.fingerprints.content.keys()
        assert both == b.fingerprints.content.keys()
        assert {p: a.fingerprints.content[p] for p in both} == b.fingerprints.content


@pytest.mark.parametrize("mode, suffix", [("w:bz2", ".tar.bz2"), ("w:xz", ".tar.xz"), ("w", ".tar")])
def test_every_compression_tarfile_reads_is_read_in_one_pass(built, tmp_path, mode, suffix):
    tarred = bf.tar_tree(built["studio"], tmp_path / f"studio{suffix}", mode)
    containers = open_containers(str(tarred))
    result = audit_containers(str(tarred), containers, hash_cache=False)
    folder = audit_containers(str(built["studio"]), open_containers(str(built["studio"])), hash_cache=False)
    assert containers[0].store.compression == {"w:bz2": "bz2", "w:xz": "xz", "w": None}[mode]
    assert {c.store.passes for c in containers} == {1 if containers[0].store.compression else 0}
    a, b = result.containers[0], folder.containers[0]
    assert [(x.kind, x.path, x.bytes) for x in a.scan.artifacts] == [(x.kind, x.path, x.bytes) for x in b.scan.artifacts]
    assert sorted(f.rule for f in a.diagnosis.findings) == sorted(f.rule for f in b.diagnosis.findings)


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_fifo_swapped_in_after_detection_is_refused_not_waited_on(tmp_path, kind):
    """Detection reads a regular file; if a FIFO takes its name before the store opens it, the
    store refuses it at once (an open without O_NONBLOCK would wait for a writer forever)."""
    import os

    fifo = tmp_path / f"customer.{kind}"
    os.mkfifo(fifo)
    with pytest.raises(CorruptInput):
        ArchiveStore(fifo, kind)


@pytest.mark.parametrize("record", [b"30 path", b"x path=a\n", b"99 path=a\n", b"9 patha\n"])
def test_a_pax_record_that_is_not_one_is_damage(record):
    """A pax header whose record has no length, a wrong one, or no '=': the archive is refused."""
    info = tarfile.TarInfo("PaxHeaders/a")
    info.type, info.size = tarfile.XHDTYPE, len(record)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
        t.addfile(info, io.BytesIO(record))
        t.addfile(tarfile.TarInfo("a"), io.BytesIO(b""))
    with pytest.raises(tarpass.Damaged):
        list(tarpass.TarPass(io.BytesIO(out.getvalue()), seekable=True, hash_files=False))


def _inflated(reader) -> tuple[bytes, bool]:
    """(what a reader gives, whether it ended on an error), read in CHUNK steps."""
    out = []
    try:
        while chunk := reader.read(tarpass.CHUNK):
            out.append(chunk)
    except (OSError, EOFError, zlib.error):
        return b"".join(out), True
    return b"".join(out), False


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=5000), st.integers(0, 9), st.booleans()), min_size=1, max_size=4),
       st.sampled_from([b"", b"garbage", b"\x1f", b"\x1f\x8b\x08"]), st.integers(0, 40), st.booleans())
def test_gunzip_reads_what_gzipfile_reads(members, tail, cut, big):
    """Members one after another (NUL padding between them), anything after them, a cut anywhere:
    the index pass's reader gives the bytes GzipFile gives, and fails where GzipFile fails."""
    import gzip

    blob = b"".join(gzip.compress((data * 400) if big else data, mtime=0) + b"\0" * pad
                    for data, pad, _ in members) + tail
    if cut and members[0][2]:
        blob = blob[:max(1, len(blob) - cut)]
    expected, failed = _inflated(gzip.GzipFile(fileobj=io.BytesIO(blob)))
    got, ours_failed = _inflated(tarstream.Gunzip(io.BytesIO(blob)))
    assert ours_failed == failed
    assert got == expected if not failed else expected.startswith(got) or got.startswith(expected)


@given(st.binary(min_size=8, max_size=12))
@example(b"\x1c0000644\0")  # str.strip strips the ASCII separators, bytes.strip does not
@example(b"0000644\x1c")
@example(b" 644 \0\0\0\0")
@example(b"\x85644\0\0\0\0\0")
@example(b"\0\0\0\0\0\0\0\0")
@example(b"00\00644 \0")
def test_a_header_number_is_read_as_tarfile_reads_it(field):
    """The fast reading of an octal field (digits, then NULs or spaces) gives tarfile's number or
    is refused where tarfile refuses it."""
    try:
        expected = tarfile.nti(field)
    except tarfile.InvalidHeaderError:
        expected = None
    try:
        got = tarpass._number(field)
    except tarpass.Damaged:
        got = None
    assert got == expected


def test_a_tar_cut_after_a_members_pax_record_is_damaged_not_ended():
    """A pax record describes the member after it: an archive that ends there (at a block's edge,
    or at the end-of-archive blocks) lost that member, and says so (found by the cut test)."""
    blob = build([("app/a.txt", tarfile.REGTYPE, b"abc", 0), ("\x80", tarfile.REGTYPE, b"", 0)], tarfile.PAX_FORMAT)
    _, whole = ours(blob, "")
    second = whole[1].offset - 512 - 1024  # where its pax header starts
    for cut in (blob[:second + 1024], blob[:second + 1024] + bytes(1024)):
        tp, got = ours(cut, "")
        assert [m.name for m in got] == ["app/a.txt"]
        assert tp.damage and "before its member" in tp.damage


def test_the_switch_interval_is_shortened_only_while_an_inflating_pass_runs(tmp_path):
    """The index pass of a .tar.gz shortens the interpreter's switch interval while its thread
    inflates, and gives it back when the pass ends, whole, damaged or interrupted."""
    import sys

    from mlcache_audit.errors import CorruptInput

    before = sys.getswitchinterval()
    blob = build([("app/tmp/a.bin", tarfile.REGTYPE, bytes(3000), 0)], tarfile.PAX_FORMAT, "gz")
    good, cut = tmp_path / "a.tar.gz", tmp_path / "cut.tar.gz"
    good.write_bytes(blob)
    cut.write_bytes(blob[:len(blob) // 2])
    seen = []
    with tarstream.open_stream(good, "gz", ahead=True) as stream:
        seen.append(sys.getswitchinterval())
        list(tarpass.TarPass(stream, seekable=False, hash_files=True))
    assert seen == [pytest.approx(min(before, tarstream._Ahead.SWITCH))] and sys.getswitchinterval() == before
    ArchiveStore(good, "tar")
    with pytest.raises(CorruptInput):
        ArchiveStore(cut, "tar")
    with pytest.raises(KeyboardInterrupt), tarstream.open_stream(good, "gz", ahead=True):
        raise KeyboardInterrupt
    assert sys.getswitchinterval() == before
