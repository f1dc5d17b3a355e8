"""Any file given as a PATH (or as a snapshot that is not one) is told apart by its content: a zip,
a tar in any compression, cut anywhere or with a byte changed, or bytes that only start like one,
is read, refused as damaged or refused as no archive, each as one MlcacheError; the CLI says it in
one line with exit 2 (a zip's members in each of zipfile's methods: a damaged LZMA member raises
lzma's own error). tarfile's own test let a gzip stream cut before its first header out as
EOFError, an internal error (the document fuzz found it with the two bytes 1f 8b)."""

from __future__ import annotations

import io
import plistlib
import tarfile
import tempfile
import zipfile
from pathlib import Path

import build_fixtures as bf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import run
from mlcache_audit.audit import audit_containers
from mlcache_audit.errors import MlcacheError
from mlcache_audit.sources.archive import is_archive
from mlcache_audit.sources.detect import open_containers

SPEC = "Library/Caches/com.example.cut/com.apple.e5rt.e5bundlecache/23A344/" + "AB" * 32
COPY = "tmp/{}-10532-B1E9028BEA58AEEA.mlmodelc/"
REAL = bf.PARKINSON  # the real compiled bundle, shipped in fixtures/models
PARTS = ("coremldata.bin", "metadata.json", "model.espresso.net", "model.espresso.shape")  # not the weights: cut
# points then fall among the headers and the files a scan reads, not in 950 KB of one member
FILES = {
    ".com.apple.mobile_container_manager.metadata.plist":
        plistlib.dumps({"MCMMetadataIdentifier": "com.example.cut"}),
    "Library/Preferences/com.example.cut.plist": b"<plist/>",
    **{COPY.format(guid) + name: (REAL / name).read_bytes() for name in PARTS for guid in (
        "5CB3EB0D-0B33-4049-AAC1-13E6F4DB4F58", "6DC4FC1E-1C44-415A-BBD2-24F7F5EC5F69")},
    f"{SPEC}/model.espresso.net": b"net" * 300,
    f"{SPEC}/model.espresso.weights": bytes(range(256)) * 20,
}
ZIPS = {"zip": zipfile.ZIP_DEFLATED, "zip-bz2": zipfile.ZIP_BZIP2, "zip-xz": zipfile.ZIP_LZMA, "zip-stored": zipfile.ZIP_STORED}
FORMS = [*ZIPS, "tar", "gz", "bz2", "xz"]
MAGIC = [b"\x1f\x8b", b"\x1f\x8b\x08", b"BZh", b"BZh9", b"\xfd7zXZ\x00", b"PK\x03\x04", b"PK\x05\x06", b""]


def archive(form: str) -> bytes:
    out = io.BytesIO()
    if form in ZIPS:
        with zipfile.ZipFile(out, "w", ZIPS[form]) as z:
            for name, data in FILES.items():
                z.writestr("app/" + name, data)
        return out.getvalue()
    with tarfile.open(fileobj=out, mode="w" if form == "tar" else f"w:{form}") as t:
        for name, data in FILES.items():
            info = tarfile.TarInfo("app/" + name)
            info.size, info.mtime = len(data), 1_790_000_000
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


BLOBS = {form: archive(form) for form in FORMS}


def damaged_blob():
    cut = st.tuples(st.sampled_from(FORMS), st.floats(0, 1), st.booleans())

    def make(t):
        form, where, flip = t
        blob = BLOBS[form]
        at = int(where * (len(blob) - 1))
        return blob[:at] + (bytes([blob[at] ^ 0x5A]) + blob[at + 1:] if flip else b"")

    started = st.tuples(st.sampled_from(MAGIC), st.binary(max_size=600)).map(lambda t: t[0] + t[1])
    return st.one_of(cut.map(make), started)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=damaged_blob(), name=st.sampled_from(["export.tar.gz", "export.zip", "snap.json", "export"]))
@example(blob=b"\x1f\x8b", name="snap.json")
@example(blob=BLOBS["gz"][:40], name="export.tar.gz")
def test_a_cut_or_changed_archive_is_read_or_one_mlcache_error(blob, name, tmp_path):
    p = Path(tempfile.mkdtemp(dir=tmp_path)) / name
    p.write_bytes(blob)
    assert is_archive(p) in ("zip", "tar", None)
    try:
        result = audit_containers(str(p), open_containers(p), hash_cache=False)  # reads members too
    except MlcacheError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert result.containers


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=damaged_blob())
@example(blob=b"\x1f\x8b")
def test_through_the_cli_it_is_a_scan_or_one_line_and_exit_2(blob, tmp_path):
    p = Path(tempfile.mkdtemp(dir=tmp_path)) / "snap.json"
    p.write_bytes(blob)
    for args in (("scan", p, "--format", "json"), ("diff", p, p)):
        result = run(*args)
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
        if result.exit_code == 2:
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("mlcache: error:"), result.stderr
        else:
            assert result.exit_code in (0, 1), (result.exit_code, result.stderr)


def test_every_whole_form_is_an_archive_and_scanned(tmp_path):
    for form, blob in BLOBS.items():
        p = tmp_path / f"export.{form}"
        p.write_bytes(blob)
        assert is_archive(p) == ("zip" if form in ZIPS else "tar")
        (c,) = open_containers(p)
        assert c.bundle_id == "com.example.cut"


def test_a_gzip_cut_before_its_first_header_is_a_damaged_archive(tmp_path):
    p = tmp_path / "export.tar.gz"
    p.write_bytes(b"\x1f\x8b")
    result = run("scan", p)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"mlcache: error: cannot read archive {p}") and "internal" not in result.stderr
