"""Findings: each rule on real layouts, the near misses that must not be called duplicates."""

import os
import shutil

import build_fixtures as bf
from hypothesis import given
from hypothesis import strategies as st

from conftest import scan_json
from mlcache_audit.rules import build_order


def findings(path, *extra):
    c = scan_json(path, *extra)["containers"][0]
    return c, {f["rule"]: f for f in c["findings"]}


def test_recompile_fixture_names_the_model_copies_producer_and_fix(built):
    c, f = findings(built["recompile"])
    rc = f["repeated-compile"]
    ev = rc["evidence"]
    assert ev["copies"] == 24 and ev["model"] == "parkinson_wave"
    assert ev["producer"] == "TensorFlow Lite Core ML delegate"
    assert ev["launches"] == 24 and ev["specializations_in_span"] == 24
    assert 5.7 < ev["span_days"] < 5.8
    assert ev["bytes_per_day"] == round(ev["total_bytes"] / ev["span_days"] * 1) or ev["bytes_per_day"] > 0
    assert "interpreter" in rc["remedy"] and "metadata" in rc["explanation"]
    # 23 older copies go, each as its unit: the spec tmp/<GUS> with its bundle tmp/<GUS>.mlmodelc.
    assert len(rc["reclaimable_paths"]) == 46 and ev["kept"] not in rc["reclaimable_paths"]
    assert ev["kept"].removesuffix(".mlmodelc") not in rc["reclaimable_paths"]
    assert ev["kept"] == max((a for a in c["artifacts"] if a["path"] in rc["paths"] and a["kind"] == "compile_leftover"
                              and a["path"].endswith(".mlmodelc")), key=lambda a: a["newest_mtime"])["path"]


def test_reclaimable_counts_each_byte_once_and_adds_up(built):
    for key in ("recompile", "studio"):
        c, _ = findings(built[key])
        sizes = {a["path"]: a["bytes"] for a in c["artifacts"]}
        default = {p for f in c["findings"] if not f["opt_in"] for p in f["reclaimable_paths"]}
        assert c["reclaimable_bytes"] == sum(sizes[p] for p in default)
        assert c["reclaimable_bytes"] <= c["coreml_bytes"]


def test_one_copy_of_every_model_is_always_kept(built):
    for key in ("recompile", "studio"):
        c, _ = findings(built[key])
        every = {p for f in c["findings"] for p in f["reclaimable_paths"]}
        groups = {}
        for a in c["artifacts"]:
            digest = a["fingerprint"]["content"]
            if digest:
                groups.setdefault(digest, []).append(a["path"])
        for paths in groups.values():
            assert any(p not in every for p in paths), paths


def test_documents_is_never_reclaimable(built):
    c, f = findings(built["studio"])
    for finding in c["findings"]:
        assert not any(p.startswith("Documents/") for p in finding["reclaimable_paths"])
    dup = f["duplicate-persistent-model"]
    assert "Documents/Imported/parkinson_wave.mlmodelc" in dup["paths"]


def test_studio_rules(built):
    c, f = findings(built["studio"])
    support = "Library/Application Support"
    assert f["stale-os-build"]["evidence"]["old_builds"] == ["22G90"]
    assert len(f["stale-os-build"]["reclaimable_paths"]) == 2
    # Three Styler entries alike in layout and size, made on three days, but no compile copies pair with
    # them and no watch saw them: alike is not proof, so they are reported with 0 bytes.
    assert "redundant-specialization" not in f
    possible = f["possible-respecialization"]
    assert possible["reclaimable_bytes"] == 0 and possible["evidence"]["entries"] == 3
    assert len(f["interrupted-specialization"]["reclaimable_paths"]) == 1
    assert f["interrupted-specialization"]["reclaimable_paths"][0].endswith(".bundle")
    orphan = f["executorch-orphan"]["reclaimable_paths"]
    assert len(orphan) == 1 and "executorch_" in orphan[0]
    tmp = f["tmp-compile-leftover"]
    # ExecuTorch trash goes; the tmp parkinson bundle has a persistent twin so it goes; the ORT spec is the last copy.
    assert sorted(p.split("/")[1][:12] for p in tmp["reclaimable_paths"]) == ["executorchco", "parkinson_wa"]
    assert f["duplicate-persistent-model"]["reclaimable_paths"] == [f"{support}/Backup/Styler.mlmodelc"]
    assert f["old-model-version"]["reclaimable_paths"] == [f"{support}/models/v1/Styler.mlmodelc"]
    assert f["duplicate-persistent-model"]["opt_in"] and f["old-model-version"]["opt_in"]


def test_near_misses_are_not_duplicates(built):
    c, f = findings(built["studio"])
    support = "Library/Application Support"
    every = {p for finding in c["findings"] for p in finding["paths"]}
    assert f"{support}/variants/parkinson_wave_finetuned.mlmodelc" not in every  # same size, other bytes
    assert f"{support}/other/parkinson_wave.mlmodelc" not in every  # same name, other model
    arts = {a["path"]: a for a in c["artifacts"]}
    tuned = arts[f"{support}/variants/parkinson_wave_finetuned.mlmodelc"]["fingerprint"]
    assert tuned["content_basis"] == "unique-partial" or tuned["content"] != \
        arts[f"{support}/parkinson_wave.mlmodelc"]["fingerprint"]["content"]


def test_healthy_container_has_no_reclaiming_findings(built):
    c, f = findings(built["healthy"])
    assert f == {}


def test_same_size_different_content_in_tmp_is_two_models(fx):
    root = fx("healthy")
    a = bf.copy_bundle(bf.PARKINSON, root / "tmp" / f"{bf.gus(1, 11)}.mlmodelc", bf.T0)
    b = bf.copy_bundle(bf.PARKINSON, root / "tmp" / f"{bf.gus(2, 12)}.mlmodelc", bf.T0 + 60)
    weights = bytearray((b / "model.espresso.weights").read_bytes())
    weights[-1] ^= 1  # the last byte: the partial read (tail) sees it
    (b / "model.espresso.weights").write_bytes(bytes(weights))
    c, f = findings(root)
    assert "repeated-compile" not in f
    # Each is the last copy of its model, except that `a` has a persistent twin in Application Support.
    assert f["tmp-compile-leftover"]["reclaimable_paths"] == [f"tmp/{a.name}"]


def test_specializations_of_different_configurations_are_not_redundant(fx):
    root = fx("healthy")
    cache = root / "Library/Caches/com.example.healthy/com.apple.e5rt.e5bundlecache"
    bf.specialization(cache, "23A344", "gpu", bf.T0, path="main_mps_graph")
    bf.specialization(cache, "23A344", "big", bf.T0, size=480_000)
    _, f = findings(root)
    assert "redundant-specialization" not in f


def test_older_build_beta_ordering(fx):
    root = fx("healthy")
    cache = root / "Library/Caches/com.example.healthy/com.apple.e5rt.e5bundlecache"
    bf.specialization(cache, "23A5297i", "beta", bf.T0)
    _, f = findings(root)
    assert f["stale-os-build"]["evidence"]["old_builds"] == ["23A5297i"]


def test_executorch_without_index_claims_nothing(fx):
    root = fx("studio") / "AppData"
    os.unlink(root / "Library/Application Support/executorchcoreml/assets.db")
    c, f = findings(root.parent)
    assert "executorch-orphan" not in f
    assert any("assets.db missing" in n for n in c["notes"])


def test_hugging_face_snapshots_are_old_versions(fx):
    root = fx("healthy")
    hub = root / "Library/Application Support/huggingface/hub/models--argmaxinc--whisperkit-coreml/snapshots"
    old = bf.ml_program_bundle(hub / "a1b2" / "AudioEncoder.mlmodelc", "v1", bf.T0)
    new = bf.ml_program_bundle(hub / "c3d4" / "AudioEncoder.mlmodelc", "v2", bf.T0 + 86400)
    c, f = findings(root)
    arts = {a["path"]: a for a in c["artifacts"]}
    assert arts[str(new.relative_to(root))]["producer"] == "Hugging Face hub"
    assert f["old-model-version"]["reclaimable_paths"] == [str(old.relative_to(root))]
    # The same revisions in Library/Caches are a cache, never called persistent.
    shutil.move(root / "Library/Application Support/huggingface", root / "Library/Caches/huggingface")
    c, f = findings(root)
    assert "old-model-version" not in f and "duplicate-persistent-model" not in f


def test_pipeline_bundle_is_one_artifact(fx):
    root = fx("healthy")
    pipe = root / "Library/Application Support/Pipe.mlmodelc"
    for sub in ("model0", "model1"):
        shutil.copytree(bf.PARKINSON, pipe / sub)
    shutil.copy(bf.PARKINSON / "coremldata.bin", pipe / "coremldata.bin")
    c, _ = findings(root)
    pipes = [a for a in c["artifacts"] if a["path"].endswith("Pipe.mlmodelc")]
    assert len(pipes) == 1 and pipes[0]["model"]["type"] == "pipeline" and pipes[0]["files"] == 11


@given(st.lists(st.tuples(st.integers(18, 30), st.sampled_from("ABCDEFGH"), st.integers(1, 9999),
                          st.sampled_from(["", "a", "i"])), min_size=2, max_size=6))
def test_build_order_is_a_total_order_on_builds(parts):
    builds = [f"{m}{t}{n}{s}" for m, t, n, s in parts]
    ordered = sorted(builds, key=build_order)
    for x, y in zip(ordered, ordered[1:], strict=False):
        assert build_order(x) <= build_order(y)
        if int(x[:2]) < int(y[:2]):
            assert build_order(x) < build_order(y)


_COMPONENT = st.sampled_from(["Library", "Caches", "com.apple.e5rt.e5bundlecache", "com.apple.e5rt.e5bundlecachex",
                              "xcom.apple.e5rt.e5bundlecache", "23A344", "a/b", ""]).filter(lambda s: "/" not in s)


@given(st.lists(_COMPONENT, max_size=6), st.lists(_COMPONENT, max_size=4))
def test_cache_of_is_the_path_up_to_the_first_component_named_e5_cache(before, after):
    """cache_of cuts at a whole component (never inside a longer name), the first one, as splitting does."""
    from mlcache_audit.domain import E5_CACHE
    from mlcache_audit.rules.model import cache_of
    from mlcache_audit.scan import Artifact

    parts = [*before, E5_CACHE, *after]
    a = Artifact("specialization", "/".join(parts), True)
    assert cache_of(a) == "/".join(parts[: parts.index(E5_CACHE) + 1])


def test_poisoned_memo_tells_a_layout_with_resources_from_one_without():
    from mlcache_audit.rules.poisoned import _without_resources

    rest, has = _without_resources(("main/a.bin", "main/resources.bin"))
    assert rest == frozenset({"main/a.bin"}) and has
    assert _without_resources(("main/a.bin",)) == (frozenset({"main/a.bin"}), False)


def test_layout_memos_keep_only_layouts_as_small_as_real_ones():
    """A hostile entry of many names is worked out, never kept: a long run (watch) cannot grow the memos."""
    from mlcache_audit.rules.poisoned import _without_resources
    from mlcache_audit.scan.describe import _layout_of
    from mlcache_audit.scan.model import LAYOUT_MEMO_NAMES

    big = frozenset(f"main/p{i}.bin" for i in range(LAYOUT_MEMO_NAMES + 1))
    before = _layout_of.memo.cache_info().currsize, _without_resources.memo.cache_info().currsize
    layout, contents = _layout_of(big)
    assert layout == tuple(sorted(big)) and contents == "bundle"
    assert _without_resources(layout) == (big, False)
    assert (_layout_of.memo.cache_info().currsize, _without_resources.memo.cache_info().currsize) == before
    small = frozenset({"main/a.bin", "main/resources.bin"})
    assert _layout_of(small) is _layout_of(frozenset(small))  # one shared result per layout
