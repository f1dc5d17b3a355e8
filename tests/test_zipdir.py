"""The zip directory of sources/zipdir.py: what zipfile lists, opened alike, with nothing kept per member."""

import io
import unicodedata
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcache_audit.sources.archive import ArchiveStore, clean_member_name
from mlcache_audit.sources.zipdir import LeanZip

part = st.sampled_from(["a", "b", ".", "", "Caf\u00e9", unicodedata.normalize("NFD", "Caf\u00e9"), "model.mlmodelc", "x y"])
member = st.tuples(st.lists(part, min_size=1, max_size=4).map("/".join).filter(lambda n: n.strip("/.")),
                   st.binary(max_size=2000), st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))


@pytest.mark.filterwarnings("ignore:Duplicate name")  # the test writes duplicates on purpose
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(member, max_size=10), st.binary(max_size=64))
def test_every_member_zipfile_lists_is_listed_and_read_alike(tmp_path, members, prefix):
    """Names that cleaning changes (`./`, `//`, NFD) and bytes prepended to the archive: each
    member is listed with zipfile's fields and reads back its own bytes through the packed record."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data, method in members:
            z.writestr(zipfile.ZipInfo(name, (2020, 1, 2, 3, 4, 6)), data, compress_type=method)
    path = tmp_path / "a.zip"
    path.write_bytes(prefix + buf.getvalue())
    with zipfile.ZipFile(path) as stdlib, LeanZip(path) as lean:
        ours = list(lean.directory([]))
        assert [(i.filename, i.orig_filename, i.header_offset, i.file_size, i.CRC) for i in ours] == \
               [(i.filename, i.orig_filename, i.header_offset, i.file_size, i.CRC) for i in stdlib.infolist()]
        assert lean.filelist == [] and lean.NameToInfo == {}
    store = ArchiveStore(path, "zip")
    expected = {}
    for name, data, _ in members:
        key, _ = clean_member_name(name)
        if key is not None and not name.endswith("/"):
            expected.setdefault(key, data)  # a later member of the same name is skipped as a duplicate
    for key, data in expected.items():
        if not store.member(key).is_dir:
            assert store.read(key, 1 << 20) == data


def test_a_name_flagged_utf8_that_is_not_is_a_note_and_the_rest_is_read(tmp_path):
    """A central-directory name whose UTF-8 flag lies is skipped with a note; a local header whose
    name lies only makes that member unreadable. Neither stops the scan (both once gave an
    internal error)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in ("app/Documents/a.txt", "app/tmp/b.txt", "app/Library/Caches/c.txt"):
            z.writestr(name, b"x")
    data = bytearray(buf.getvalue())
    central = data.find(b"PK\x01\x02")
    data[central + 9] |= 0x08  # bit 11 of the flags (0x800): the name is UTF-8
    at = data.find(b"app/Documents/a.txt", central)
    data[at + 4] = 0xFF
    local = data.find(b"PK\x03\x04", data.find(b"PK\x03\x04") + 1)  # the second member's local header
    data[local + 7] |= 0x08
    data[data.find(b"app/tmp/b.txt", local) + 4] = 0xFF
    path = tmp_path / "lying.zip"
    path.write_bytes(bytes(data))
    store = ArchiveStore(path, "zip")
    assert any("not UTF-8, as its flag says" in n for n in store.notes)
    assert store.member("app/Documents/a.txt") is None
    assert store.read("app/tmp/b.txt") is None  # its local header's name cannot be decoded: unreadable
    assert store.read("app/Library/Caches/c.txt") == b"x"
