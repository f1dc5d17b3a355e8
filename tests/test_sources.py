"""Forms, bundle ids, and bad input: every form a container arrives in as a folder."""

import os
import plistlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run, scan_json
from mlcache_audit.errors import NotAContainer, PathNotFound
from mlcache_audit.sources import open_containers


def test_each_folder_form_is_recognised_with_its_bundle_id(built):
    expected = {
        "recompile": [("raw", "com.example.recompile")],
        "healthy": [("device-hub", "com.example.healthy")],
        "studio": [("xcappdata", "com.example.studio")],
        "simulator": [("simulator", "com.example.simleak"), ("simulator", "com.example.simcalm")],
        "macos": [("macos-container", "com.example.macapp")],
    }
    for key, forms in expected.items():
        got = [(c.form, c.bundle_id) for c in open_containers(built[key])]
        assert sorted(got) == sorted(forms), key


def test_simulator_application_folder_alone_gives_one_container_per_app(built):
    apps = next(built["simulator"].rglob("Application"))
    assert sorted(c.bundle_id for c in open_containers(apps)) == ["com.example.simcalm", "com.example.simleak"]


def test_xcappdata_root_is_appdata(built):
    (c,) = open_containers(built["studio"])
    assert c.label.endswith("Studio.xcappdata/AppData")


def test_bundle_id_falls_back_to_the_caches_folder(fx):
    root = fx("recompile")
    (root / ".com.apple.mobile_container_manager.metadata.plist").unlink()
    (c,) = open_containers(root)
    assert c.bundle_id == "com.example.recompile"


def test_bundle_id_unknown_when_nothing_names_it(tmp_path):
    for d in ("Documents", "Library", "tmp"):
        (tmp_path / "c" / d).mkdir(parents=True)
    (c,) = open_containers(tmp_path / "c")
    assert c.bundle_id is None and c.form == "raw"


def test_a_folder_of_several_pulled_containers_gives_each(built, tmp_path):
    import shutil

    shutil.copytree(built["recompile"], tmp_path / "pulls" / "a", symlinks=True)
    shutil.copytree(built["healthy"], tmp_path / "pulls" / "com.example.healthy", symlinks=True)
    assert sorted(c.bundle_id for c in open_containers(tmp_path / "pulls")) == ["com.example.healthy",
                                                                                   "com.example.recompile"]


def test_missing_path_is_exit_2_with_one_line(tmp_path):
    result = run("scan", tmp_path / "nope")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_plain_file_is_exit_2(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    result = run("scan", f)
    assert result.exit_code == 2 and "not a zip or tar archive" in result.stderr


def test_folder_that_is_no_container_is_exit_2(tmp_path):
    (tmp_path / "random" / "stuff").mkdir(parents=True)
    result = run("scan", tmp_path / "random")
    assert result.exit_code == 2 and "holds no app container" in result.stderr
    with pytest.raises(NotAContainer):
        open_containers(tmp_path / "random")
    with pytest.raises(PathNotFound):
        open_containers(tmp_path / "missing")


def test_unknown_bundle_id_is_exit_2(built):
    result = run("scan", built["simulator"], "--bundle-id", "com.nobody")
    assert result.exit_code == 2 and "com.nobody" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything; permissions cannot be tested as root")
def test_unreadable_folder_is_reported_and_the_rest_scanned(fx):
    root = fx("recompile")
    locked = root / "Library" / "Application Support"
    locked.chmod(0)
    try:
        doc = scan_json(root)
    finally:
        locked.chmod(0o755)
    c = doc["containers"][0]
    assert any("permission denied" in n for n in c["notes"])
    assert c["bytes_by_kind"]["compile_leftover"] > 0


def test_unreadable_folder_is_reported_even_as_root(fx, monkeypatch):
    """As root chmod does not lock anything out, so make opening the folder fail the way it does for a user."""
    import mlcache_audit.fsio as fsio

    root = fx("recompile")
    real_open = os.open

    def fake_open(path, flags, mode=0o777, *, dir_fd=None):
        if path == "Application Support" and dir_fd is not None:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(fsio.os, "open", fake_open)
    c = scan_json(root)["containers"][0]
    assert any("Library/Application Support (permission denied)" in n for n in c["notes"])
    assert "source_model" not in c["bytes_by_kind"]  # SSDOcr.mlmodel is behind the locked folder
    assert c["bytes_by_kind"]["compile_leftover"] > 0


def test_symlinks_are_reported_never_followed(fx, tmp_path):
    root = fx("healthy")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.bin").write_bytes(b"x" * 100_000)
    (root / "tmp" / "escape").symlink_to(outside)
    (root / "tmp" / "broken").symlink_to(root / "tmp" / "does-not-exist")
    (root / "tmp" / "linked.mlmodelc").symlink_to(outside)
    c = scan_json(root)["containers"][0]
    assert any("points outside the container" in n and "tmp/escape" in n for n in c["notes"])
    assert any("broken symlink" in n and "tmp/broken" in n for n in c["notes"])
    assert c["total_bytes"] < 1_100_000  # the 100 kB outside was never counted
    assert not any(a["path"].startswith("tmp/linked") for a in c["artifacts"])


def test_odd_names_are_scanned_and_reported(fx):
    root = fx("healthy")
    (root / "tmp" / "line\nbreak.txt").write_text("x")
    bad = os.fsencode(str(root / "tmp")) + b"/caf\xe9.bin"
    with open(bad, "wb") as fh:
        fh.write(b"abc")
    result = run("scan", root)
    assert result.exit_code == 0
    assert "name contains a line break" in result.stdout
    assert "not valid UTF-8" in result.stdout
    doc = scan_json(root)
    assert doc["containers"][0]["other_bytes_by_area"]["tmp"] >= 4


def test_missing_tmp_is_not_observable_not_clean(fx):
    import shutil

    root = fx("healthy")
    shutil.rmtree(root / "tmp")
    c = scan_json(root)["containers"][0]
    assert c["not_observable"] == ["tmp"]
    assert any("tmp/ is absent" in n for n in c["notes"])


def test_macos_metadata_plist_names_the_app(fx):
    top = fx("macos")
    meta = top / "Containers" / "com.example.macapp" / ".com.apple.containermanagerd.metadata.plist"
    meta.write_bytes(plistlib.dumps({"MCMMetadataIdentifier": "com.example.renamed"}, fmt=plistlib.FMT_BINARY))
    (c,) = open_containers(top)
    assert c.bundle_id == "com.example.renamed" and c.live


def test_the_given_path_may_be_a_symlink_to_a_container(built, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(built["healthy"])
    (c,) = open_containers(link)
    assert Path(c.label) == Path(os.path.realpath(built["healthy"]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(["a", "a-b", "a.b", "b", "A", "é", "z z", "_"]), min_size=1, max_size=4),
                min_size=1, max_size=12))
def test_folder_walk_is_in_tree_order(tmp_path_factory, paths):
    """The scanner relies on a folder walk yielding a folder, then its subtree, siblings by name."""
    from mlcache_audit.sources.folder import FolderStore

    top = tmp_path_factory.mktemp("walk")
    for parts in paths:
        p = top.joinpath(*parts)
        if p.exists() and p.is_file():
            continue
        if any(top.joinpath(*parts[:i]).is_file() for i in range(1, len(parts))):
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_text("x")
    walked = [e.path for e in FolderStore(top).walk("", [])]
    assert walked == sorted(walked, key=lambda x: x.split("/"))


def test_walk_progress_counts_every_entry(built):
    (c,) = open_containers(built["recompile"])
    seen = []
    entries = c.entries(seen.append)
    assert sum(seen) == len(entries) and len(seen) >= 1


def test_kept_handles_open_from_the_nearest_folder_and_never_cross_a_swapped_symlink(tmp_path):
    """FolderHandles keeps the most recently used folders and opens a folder below one of them from
    it; a folder swapped for a symlink is refused on the next open through it, while a handle kept
    from before still names the folder it was opened on."""
    from mlcache_audit import fsio

    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "f.bin").write_bytes(b"f")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"s")
    h = fsio.FolderHandles(os.open(tmp_path, fsio.DIRFLAGS), size=2)
    try:
        assert os.listdir(h.get(["a", "b"])) == ["c"]
        assert h.opened == 2
        assert os.listdir(h.get(["a", "b", "c"])) == ["f.bin"]
        assert h.opened == 3  # from the kept a/b: one more level, not three
        h.get(["a"])  # a third folder: the least recently used (a/b) is let go
        assert len(h._kept) == 2  # noqa: SLF001
        os.rename(tmp_path / "a" / "b", tmp_path / "moved")
        os.symlink(tmp_path / "outside", tmp_path / "a" / "b")
        assert os.listdir(h.get(["a", "b", "c"])) == ["f.bin"]  # kept: the folder it was opened on
        with pytest.raises(OSError):
            h.get(["a", "b"])  # not kept: opened from a, refused at the symlink
    finally:
        h.close()


def test_the_container_search_keeps_no_handle_open(built):
    """open_containers keeps folder handles only while it searches: every one is closed after, and
    the store it hands back opens each folder from its base again."""
    import psutil

    proc = psutil.Process()
    before = proc.num_fds()
    cs = open_containers(str(built["simulator"]))
    assert len(cs) >= 2
    assert proc.num_fds() == before
    assert all(c.store._handles is None for c in cs)  # noqa: SLF001


def test_kept_handles_serve_only_the_thread_that_keeps_them(tmp_path):
    """FolderHandles is not thread-safe: while one thread searches with handles kept, a listing from
    another thread (a hash thread, say) opens its folder from the base as before."""
    import threading

    from mlcache_audit.sources.folder import FolderStore

    (tmp_path / "a" / "b").mkdir(parents=True)
    store = FolderStore(tmp_path)
    with store.handles_kept():
        assert store.list_dir("a") == {"b": True}
        opened = store._handles.opened  # noqa: SLF001
        seen = []
        t = threading.Thread(target=lambda: seen.append(store.list_dir("a/b")))
        t.start()
        t.join()
        assert seen == [{}]
        assert store._handles.opened == opened  # noqa: SLF001
        assert store.list_dir("a/b") == {}
        assert store._handles.opened == opened + 1  # noqa: SLF001
