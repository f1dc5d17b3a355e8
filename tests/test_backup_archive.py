"""Device backups and archives: read in place, read-only, honest about what they cannot show."""

import hashlib
import json
import os
import plistlib
import shutil
import zipfile

import build_fixtures as bf
import pytest

from conftest import run, scan_json, tree_state


def test_backup_gives_one_container_per_app_domain(built):
    doc = scan_json(built["backup"])
    ids = sorted(c["bundle_id"] for c in doc["containers"])
    assert ids == ["com.example.other", "com.example.recompile"]
    for c in doc["containers"]:
        assert c["form"] == "backup" and c["source"] == "backup"
        assert c["not_observable"] == ["tmp", "Library/Caches"]
        assert c["info"]["device_name"] == "Ana's iPhone" and c["info"]["ios_version"] == "18.6.2"
        assert c["info"]["ios_build"] == "22G100"
        assert not c["cleanable"]


def test_backup_sizes_and_times_come_from_mbfile_records(built):
    c = [c for c in scan_json(built["backup"])["containers"] if c["bundle_id"] == "com.example.recompile"][0]
    arts = {a["path"]: a for a in c["artifacts"]}
    v1 = arts["Library/Application Support/Models/v1/parkinson_wave.mlmodelc"]
    assert v1["kind"] == "compiled_model" and v1["bytes"] == 964_697
    assert v1["model"]["class_name"] == "parkinson_wave"  # metadata.json read from its payload
    assert v1["newest_mtime"].startswith("2026-11-10T08:00")
    dup = [f for f in c["findings"] if f["rule"] == "duplicate-persistent-model"][0]
    assert dup["opt_in"] and dup["reclaimable_bytes"] == 964_697


def test_backup_text_report_says_not_observable(built):
    out = run("scan", built["backup"], "--bundle-id", "com.example.recompile").stdout
    assert "not observable in this form: tmp, Library/Caches (unknown, not clean)" in out
    assert "Ana's iPhone" in out and "read-only evidence" in out


def test_backup_is_never_written_to(built):
    before = tree_state(built["backup"])
    scan_json(built["backup"])
    run("snapshot", built["backup"])
    result = run("clean", built["backup"], "--apply", "--yes")
    assert result.exit_code == 2 and "read-only evidence" in result.stderr
    assert tree_state(built["backup"]) == before  # no -wal/-shm, nothing changed


def test_bundle_id_picks_one_app_from_a_backup(built):
    doc = scan_json(built["backup"], "--bundle-id", "com.example.other")
    assert [c["bundle_id"] for c in doc["containers"]] == ["com.example.other"]


def test_encrypted_backup_is_exit_2_plainly(tmp_path):
    bf.build_backup(tmp_path / "enc", encrypted=True)
    result = run("scan", tmp_path / "enc")
    assert result.exit_code == 2 and "encrypted backup" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no-table"])
def test_damaged_manifest_db_is_exit_2(tmp_path, damage):
    udid = bf.build_backup(tmp_path / "b")
    db = udid / "Manifest.db"
    if damage == "truncate":
        db.write_bytes(db.read_bytes()[:200])
    elif damage == "garbage":
        db.write_bytes(b"\x00" * 4096)
    else:
        import sqlite3

        db.unlink()
        sqlite3.connect(db).execute("CREATE TABLE Other (x)").connection.commit()
    result = run("scan", tmp_path / "b")
    assert result.exit_code == 2 and "Manifest.db" in result.stderr
    assert result.stderr.count("\n") == 1


def test_bad_rows_are_skipped_with_notes_and_the_rest_read(tmp_path):
    bad_rows = [
        ("AppDomain-com.example.other", "../../etc/passwd", 1, bf.mbfile(5, 0, 1, 0o100644), b"owned"),
        ("AppDomain-com.example.other", "Documents/x", 1, bf.mbfile(5, 0, 1, 0o100644), None, "not-a-file-id"),
        ("AppDomain-com.example.other", "Library/Application Support/gone.mlmodel", 1,
         bf.mbfile(10, 0, 1, 0o100644), None),
    ]
    bf.build_backup(tmp_path / "b", extra_rows=bad_rows)
    c = [c for c in scan_json(tmp_path / "b")["containers"] if c["bundle_id"] == "com.example.other"][0]
    notes = "\n".join(c["notes"])
    assert "relativePath leaves the domain" in notes
    assert "fileID is not 40 hex digits" in notes
    assert "payload missing from the backup: Library/Application Support/gone.mlmodel" in notes
    assert any(a["path"] == "Library/Application Support/tiny.mlmodel" for a in c["artifacts"])
    assert not (tmp_path / "etc").exists()


def test_symlink_rows_in_backups_are_recorded_not_followed(tmp_path):
    rows = [("AppDomain-com.example.other", "Library/link", 4, bf.mbfile(0, 0, 9, 0o120755, "/var/mobile"), None)]
    bf.build_backup(tmp_path / "b", extra_rows=rows)
    c = [c for c in scan_json(tmp_path / "b")["containers"] if c["bundle_id"] == "com.example.other"][0]
    assert c["total_bytes"] == 151


def test_zipped_container_matches_the_folder(built):
    folder = scan_json(built["healthy"])["containers"][0]
    zipped = scan_json(built["healthy_zip"])["containers"][0]
    assert zipped["source"] == "zip" and zipped["form"] == folder["form"]
    assert zipped["total_bytes"] == folder["total_bytes"]
    assert [(a["kind"], a["path"], a["bytes"]) for a in zipped["artifacts"]] == \
           [(a["kind"], a["path"], a["bytes"]) for a in folder["artifacts"]]


def test_tarred_xcappdata_matches_the_folder(built):
    folder = scan_json(built["studio"])["containers"][0]
    tarred = scan_json(built["studio_tgz"])["containers"][0]
    assert tarred["source"] == "tar" and tarred["form"] == "xcappdata"
    assert tarred["bundle_id"] == "com.example.studio"
    assert tarred["total_bytes"] == folder["total_bytes"]
    assert [(a["kind"], a["path"], a["bytes"]) for a in tarred["artifacts"]] == \
           [(a["kind"], a["path"], a["bytes"]) for a in folder["artifacts"]]
    assert tarred["reclaimable_bytes"] == folder["reclaimable_bytes"]
    assert [f["rule"] for f in tarred["findings"]] == [f["rule"] for f in folder["findings"]]


def test_backup_inside_a_zip_is_read_in_memory(built, tmp_path):
    archive = bf.zip_tree(built["backup"], tmp_path / "backup.zip")
    before = sorted(p.name for p in tmp_path.iterdir())
    doc = scan_json(archive)
    assert sorted(c["bundle_id"] for c in doc["containers"]) == ["com.example.other", "com.example.recompile"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_archives_are_never_cleaned(built):
    preview = run("clean", built["studio_tgz"])  # support staff can see what a clean would do
    assert preview.exit_code == 0 and "Preview only" in preview.stdout and "read-only evidence" in preview.stdout
    assert "Would remove" in preview.stdout
    result = run("clean", built["healthy_zip"], "--apply", "--yes")
    assert result.exit_code == 2 and "zip archive is read-only evidence" in result.stderr


def test_macos_archive_utility_entries_are_skipped(built, tmp_path):
    archive = tmp_path / "mac.zip"
    shutil.copy(built["healthy_zip"], archive)
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("__MACOSX/com.example.healthy/._Documents", b"\x00" * 500)
        zf.writestr("com.example.healthy/tmp/._upload-draft.json", b"\x00" * 300)
    plain = scan_json(built["healthy_zip"])["containers"][0]
    mac = scan_json(archive)["containers"][0]
    assert mac["total_bytes"] == plain["total_bytes"]


def test_nfd_names_are_normalised(tmp_path):
    import unicodedata

    name = unicodedata.normalize("NFD", "com.example.café/Documents/résumé.txt")
    bf.hostile_zip(tmp_path / "nfd.zip", [(name, b"x"), ("com.example.café/tmp/a", b"y"),
                                           ("com.example.café/Library/Caches/x", b"z")])
    c = scan_json(tmp_path / "nfd.zip")["containers"][0]
    assert c["root"].endswith(unicodedata.normalize("NFC", "!com.example.café"))


def test_hostile_zip_members_are_skipped_and_nothing_is_written(tmp_path):
    members = [("app/Documents/a.txt", b"a"), ("app/tmp/b", b"b"), ("app/Library/Caches/c", b"c"),
               ("../../evil.txt", b"evil"), ("/etc/evil.txt", b"evil"), ("app/tmp/b", b"duplicate")]
    archive = bf.hostile_zip(tmp_path / "hostile.zip", members, symlink="app/tmp/escape")
    before = sorted(p.name for p in tmp_path.iterdir())
    c = scan_json(archive)["containers"][0]
    notes = "\n".join(c["notes"])
    assert "name climbs out with '..'" in notes and "absolute name" in notes
    assert "duplicate name" in notes and "symlink member" in notes
    assert c["total_bytes"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_hostile_tar_links_and_devices_are_skipped(tmp_path):
    members = [("app/Documents/a.txt", b"a"), ("app/tmp/b", b"b"), ("app/Library/Caches/c", b"c"),
               ("../escape.txt", b"evil")]
    archive = bf.hostile_tar(tmp_path / "hostile.tar", members)
    c = scan_json(archive)["containers"][0]
    notes = "\n".join(c["notes"])
    assert "symlink member" in notes and "hardlink member" in notes and "device member" in notes
    assert "climbs out" in notes
    assert c["total_bytes"] == 3
    assert not (tmp_path.parent / "escape.txt").exists()


def test_zip_bomb_caps_say_which_cap_was_hit(built):
    result = run("scan", built["healthy_zip"], "--max-archive-members", "5")
    assert result.exit_code == 2 and "over the cap of 5" in result.stderr and "--max-archive-members" in result.stderr
    result = run("scan", built["healthy_zip"], "--max-archive-bytes", "100KB")
    assert result.exit_code == 2 and "uncompressed bytes" in result.stderr and "--max-archive-bytes" in result.stderr


def test_corrupt_archive_is_exit_2(built, tmp_path):
    broken = tmp_path / "broken.zip"
    data = built["healthy_zip"].read_bytes()
    broken.write_bytes(data[: len(data) // 2] + data[-200:])
    result = run("scan", broken)
    assert result.exit_code == 2 and "Traceback" not in result.stderr


def test_truncated_member_is_a_note(built, tmp_path):
    """A member whose bytes are damaged: reported, the rest still scanned."""
    archive = tmp_path / "damaged.zip"
    shutil.copy(built["healthy_zip"], archive)
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("com.example.healthy/Library/Application Support/Models/parkinson_wave.mlmodelc/metadata.json")
    raw = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start:start + 20] = b"\xff" * 20
    archive.write_bytes(bytes(raw))
    result = run("scan", archive, "--format", "json")
    assert result.exit_code == 0
    c = json.loads(result.stdout)["containers"][0]
    bundle = [a for a in c["artifacts"] if a["kind"] == "compiled_model"][0]
    assert bundle["notes"]  # metadata.json could not be read


def test_manifest_plist_decides_encryption_not_the_name(tmp_path):
    udid = bf.build_backup(tmp_path / "b")
    (udid / "Manifest.plist").write_bytes(plistlib.dumps({"IsEncrypted": False}))
    assert len(scan_json(tmp_path / "b")["containers"]) == 2
    assert hashlib.sha1(b"AppDomain-com.example.other-Documents/readme.txt").hexdigest()[:2] in \
        {p.name for p in udid.iterdir()}


def test_group_and_plugin_domains_are_containers_of_their_own(tmp_path):
    rows = [
        ("AppDomainGroup-group.com.example.shared", "Library/Models/shared.mlmodel", 1,
         bf.mbfile(len(bf.TINY_SPEC.read_bytes()), int(bf.T0), 77, 0o100644), bf.TINY_SPEC.read_bytes()),
        ("AppDomainPlugin-com.example.recompile.widget", "Documents/w.txt", 1, bf.mbfile(2, int(bf.T0), 78, 0o100644),
         b"hi"),
    ]
    bf.build_backup(tmp_path / "b", extra_rows=rows)
    doc = scan_json(tmp_path / "b")
    by_id = {c["bundle_id"]: c for c in doc["containers"]}
    assert set(by_id) == {"com.example.other", "com.example.recompile", "group.com.example.shared",
                          "com.example.recompile.widget"}
    assert by_id["group.com.example.shared"]["info"]["domain"] == "AppDomainGroup-group.com.example.shared"
    assert by_id["group.com.example.shared"]["bytes_by_kind"]["source_model"] == 139


def test_bad_rows_are_noted_only_for_their_own_app(tmp_path):
    rows = [("AppDomain-com.example.other", "../x", 1, bf.mbfile(1, 0, 1, 0o100644), b"x")]
    bf.build_backup(tmp_path / "b", extra_rows=rows)
    by_id = {c["bundle_id"]: c for c in scan_json(tmp_path / "b")["containers"]}
    assert any("leaves the domain" in n for n in by_id["com.example.other"]["notes"])
    assert not any("leaves the domain" in n for n in by_id["com.example.recompile"]["notes"])


def test_zipped_xcappdata_matches_the_folder(built, tmp_path):
    archive = bf.zip_tree(built["studio"], tmp_path / "Studio.xcappdata.zip")
    folder = scan_json(built["studio"])["containers"][0]
    zipped = scan_json(archive)["containers"][0]
    assert (zipped["form"], zipped["bundle_id"], zipped["source"]) == ("xcappdata", "com.example.studio", "zip")
    assert zipped["total_bytes"] == folder["total_bytes"]
    assert [(a["path"], a["bytes"]) for a in zipped["artifacts"]] == [(a["path"], a["bytes"]) for a in folder["artifacts"]]
    assert zipped["reclaimable_bytes"] == folder["reclaimable_bytes"]


def test_a_folder_of_customer_archives_is_read_archive_by_archive(built, tmp_path):
    """`mlcache scan exports/`: each zip or tar directly in a folder that holds no container is read
    as its own PATH, for every command that reads; a broken one is a note on the others."""
    import shutil

    exports = tmp_path / "exports"
    exports.mkdir()
    shutil.copy2(built["healthy_zip"], exports)
    shutil.copy2(built["studio_tgz"], exports)
    (exports / "notes.txt").write_text("ticket 1234")
    (exports / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    os.symlink(built["healthy_zip"], exports / "link.zip")  # never followed
    doc = json.loads(run("scan", exports, "--format", "json").stdout)
    roots = sorted(c["root"] for c in doc["containers"])
    assert [r.split("!")[0].rsplit("/", 1)[1] for r in roots] == ["Studio.xcappdata.tar.gz", "com.example.healthy.zip"]
    assert all(any("archive not read: broken.zip" in n for n in c["notes"]) for c in doc["containers"])
    for args in (["clean", exports], ["snapshot", exports], ["check", exports, "--max-total", "1GB"]):
        assert run(*args).exit_code == 0, args
    only_broken = tmp_path / "only"
    only_broken.mkdir()
    (only_broken / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    result = run("scan", only_broken)
    assert result.exit_code == 2 and "internal error" not in result.stderr


def test_previews_of_read_only_evidence_offer_no_command_that_fails(built, tmp_path):
    for key in ("backup", "healthy_zip", "studio_tgz"):
        result = run("clean", built[key], "--plan-out", tmp_path / f"{key}.json")
        assert result.exit_code == 0, key
        assert "add --apply" not in result.stdout and "mlcache apply" not in result.stderr, key
        assert "read-only evidence" in result.stdout and "Ask the customer" in result.stdout, key


def test_a_fifo_named_like_an_archive_in_a_folder_of_exports_is_never_read(built, tmp_path):
    import shutil

    exports = tmp_path / "exports"
    exports.mkdir()
    shutil.copy2(built["healthy_zip"], exports)
    os.mkfifo(exports / "trap.zip")  # opening it for reading would block forever
    result = run("scan", exports, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["containers"]) == 1
