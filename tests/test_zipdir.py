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
