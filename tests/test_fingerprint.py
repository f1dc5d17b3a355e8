"""Fingerprints: tiers, never hashing a file twice, the hash cache, determinism."""

import os

import build_fixtures as bf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import scan_json
from mlcache_audit.audit import audit_path


def test_only_candidates_are_hashed(built):
    doc = scan_json(built["healthy"], "--no-hash-cache")
    assert doc["hashing"]["files_hashed"] == 0  # one model: nothing to compare


def test_no_file_is_hashed_twice_in_a_run(built):
    result = audit_path(str(built["recompile"]), hash_cache=False)
    stats = result.hashes.stats
    members = sum(len(a.members) for ca in result.containers for a in ca.scan.artifacts
                  if a.path.startswith("tmp/"))
    assert stats.files_hashed <= members
    assert stats.files_hashed == len(result.hashes.full)


def test_hardlinked_copies_are_read_once(fx):
    root = fx("healthy")
    src = root / "Library/Application Support/Models/parkinson_wave.mlmodelc"
    dst = root / "tmp" / f"{bf.gus(5, 77)}.mlmodelc"
    dst.mkdir()
    for f in src.iterdir():
        os.link(f, dst / f.name)
    result = audit_path(str(root), hash_cache=False)
    assert result.hashes.stats.files_hashed == 5  # five inodes, ten paths
    assert result.containers[0].scan.total_bytes == scan_json(root)["containers"][0]["total_bytes"]


def test_second_scan_of_unchanged_folder_reads_nothing(fx):
    root = fx("recompile")
    first = audit_path(str(root))
    assert first.hashes.stats.files_hashed > 0
    second = audit_path(str(root))
    assert second.hashes.stats.files_hashed == 0 and second.hashes.stats.partial_reads == 0
    assert second.hashes.stats.cache_hits >= first.hashes.stats.files_hashed
    assert [ca.fingerprints.content for ca in second.containers] == [ca.fingerprints.content for ca in first.containers]


def test_a_second_scan_takes_unchanged_artifacts_digests_whole(fx, monkeypatch):
    """The cache knows each copy by its identity (its files' names and keys): an unchanged copy's
    digest comes back in one look-up, with no per-file look-up at all."""
    from mlcache_audit.hashcache import HashCache

    root = fx("recompile")
    first = audit_path(str(root))

    def per_file(self, keys):
        raise AssertionError(f"per-file look-up of {len(keys)} keys")

    monkeypatch.setattr(HashCache, "get_many", per_file)
    second = audit_path(str(root))
    assert second.hashes.stats.cache_hits == first.hashes.stats.files_hashed  # each file counted once
    assert [ca.fingerprints.content for ca in second.containers] == [ca.fingerprints.content for ca in first.containers]
    assert [ca.fingerprints.content_basis for ca in second.containers] == \
        [ca.fingerprints.content_basis for ca in first.containers]


def test_a_bundle_whose_metadata_changed_is_read_again(fx):
    root = fx("recompile")
    audit_path(str(root))
    bundle = sorted((root / "tmp").glob("*.mlmodelc"))[0]
    meta = bundle / "metadata.json"
    st = meta.stat()
    meta.write_text(meta.read_text().replace("parkinson_wave", "tremor_spiral"))
    os.utime(meta, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its old time (its ctime changed)
    second = audit_path(str(root))
    models = {a.path: a.model for a in second.containers[0].scan.artifacts}
    assert models[f"tmp/{bundle.name}"].get("class_name") == "tremor_spiral"
    assert sum(1 for m in models.values() if m.get("class_name") == "parkinson_wave") >= 23


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    st = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_a_changed_head_is_told_apart_by_the_partial_read(fx):
    root = fx("recompile")
    audit_path(str(root))
    _flip(next((root / "tmp").glob("*.mlmodelc")) / "model.espresso.weights", 0)
    second = audit_path(str(root))
    assert second.hashes.stats.partial_reads >= 1 and second.hashes.stats.files_hashed == 0
    rc = [f for f in second.containers[0].diagnosis.findings if f.rule == "repeated-compile"][0]
    assert rc.evidence["copies"] == 23


def test_a_changed_middle_misses_the_cache_and_is_hashed_again(fx):
    root = fx("recompile")
    audit_path(str(root))
    victim = next((root / "tmp").glob("*.mlmodelc")) / "model.espresso.weights"
    _flip(victim, victim.stat().st_size // 2)
    second = audit_path(str(root))
    assert second.hashes.stats.files_hashed == 1  # only the changed file is read in full again
    rc = [f for f in second.containers[0].diagnosis.findings if f.rule == "repeated-compile"][0]
    assert rc.evidence["copies"] == 23


def test_a_touched_but_identical_copy_is_still_a_copy(fx):
    root = fx("recompile")
    audit_path(str(root))
    victim = next((root / "tmp").glob("*.mlmodelc")) / "model.espresso.weights"
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 5_000_000_000))
    second = audit_path(str(root))
    rc = [f for f in second.containers[0].diagnosis.findings if f.rule == "repeated-compile"][0]
    assert rc.evidence["copies"] == 24 and second.hashes.stats.files_hashed == 1


def test_hash_cache_lives_outside_the_container_and_can_be_off(fx, tmp_path):
    root = fx("recompile")
    doc = scan_json(root)
    assert doc["hashing"]["cache"].startswith(str(tmp_path / "hashcache"))
    assert scan_json(root, "--no-hash-cache")["hashing"]["cache"] is None
    assert not list(root.rglob("*.sqlite3"))


def test_archives_use_no_hash_cache(built):
    assert scan_json(built["studio_tgz"])["hashing"]["cache"] is None


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=20_000), min_size=1, max_size=4))
def test_content_hash_depends_on_bytes_not_place_or_time(tmp_path_factory, blobs):
    root = tmp_path_factory.mktemp("c")
    for d in ("Documents", "Library/Caches", "tmp"):
        (root / d).mkdir(parents=True)
    for i, when in ((1, bf.T0), (2, bf.T0 + 999)):
        bundle = root / "tmp" / f"{bf.gus(i, i)}.mlmodelc"
        for j, blob in enumerate(blobs):
            bf.write(bundle / f"part{j}.bin", blob, when)
    result = audit_path(str(root), hash_cache=False)
    fp = result.containers[0].fingerprints
    contents = set(fp.content.values())
    metadata = set(fp.metadata.values())
    assert len(contents) == 1 and len(metadata) == 2


_member = st.tuples(st.text(min_size=1, max_size=8), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                    st.integers(0, 2**40), st.integers(-2**62, 2**62), st.integers(0, 2**62))


@settings(max_examples=200, deadline=None)
@given(members=st.lists(_member, min_size=1, max_size=6, unique_by=lambda m: m[0]),
       which=st.integers(0, 5), field=st.integers(0, 5), delta=st.integers(1, 1000))
def test_an_artifact_identity_changes_with_any_name_or_key_of_any_file(members, which, field, delta):
    """The identity stands for its files unchanged: equal files give it back, any one changed
    name, device, inode, size, mtime or ctime gives another; a store without keys gives none."""
    from pathlib import Path

    from mlcache_audit.scan import Artifact, artifact_identity
    from mlcache_audit.sources.base import FILE, Container, Entry
    from mlcache_audit.sources.folder import FolderStore

    def identity(ms, store=None):
        store = store or FolderStore(Path("/nonexistent"))
        a = Artifact("compile_leftover", "tmp/x.mlmodelc", True)
        a.members = [Entry(f"tmp/x.mlmodelc/{n}", FILE, size, None, ino, dev, 1, mtime, None, ctime)
                     for n, dev, ino, size, mtime, ctime in ms]
        c = Container(store, "", "raw", None, "/nonexistent")
        return artifact_identity(c, a)

    same = identity(members)
    assert same is not None and identity(list(members)) == same
    changed = list(members)
    m = list(changed[which % len(changed)])
    m[field] = m[field] + "~" * delta if field == 0 else m[field] + delta
    changed[which % len(changed)] = tuple(m)
    assert identity(changed) != same

    class Keyless(FolderStore):  # as an archive's store: no inode to key its members by
        def hash_key(self, entry):
            return None

        def hash_keys(self, entries):
            return None

    assert identity(members, Keyless(Path("/nonexistent"))) is None


_maybe = st.one_of(st.none(), st.integers(0, 2**62))


@settings(max_examples=200, deadline=None)
@given(fields=st.lists(st.tuples(_maybe, _maybe, st.integers(0, 2**40), _maybe, _maybe), max_size=6))
def test_a_folder_store_keys_many_entries_as_it_keys_each(fields):
    """hash_keys (built in bulk) gives hash_key's tuples, in order, or None when any entry has none:
    the per-file rows and the artifact identities speak of the same keys."""
    from pathlib import Path

    from mlcache_audit.sources.base import FILE, Entry
    from mlcache_audit.sources.folder import FolderStore

    store = FolderStore(Path("/nonexistent"))
    entries = [Entry(f"f{i}", FILE, size, None, ino, dev, 1, mtime, None, ctime)
               for i, (dev, ino, size, mtime, ctime) in enumerate(fields)]
    one_by_one = [store.hash_key(e) for e in entries]
    assert store.hash_keys(entries) == (None if None in one_by_one else one_by_one)
