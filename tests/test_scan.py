"""Recognition and accounting: every artifact, every byte, the JSON contract."""

import json
import os
import shutil
from pathlib import Path

from conftest import ROOT, run, scan_json


def disk_bytes(root: Path) -> int:
    seen, total = set(), 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            if os.path.islink(os.path.join(dirpath, f)) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def test_recompile_fixture_lists_every_copy_entry_and_persistent_model(built):
    root = built["recompile"]
    c = scan_json(root)["containers"][0]
    arts = {a["path"]: a for a in c["artifacts"]}
    on_disk_bundles = sorted(f"tmp/{p.name}" for p in (root / "tmp").glob("*.mlmodelc"))
    assert len(on_disk_bundles) == 24
    for p in on_disk_bundles:
        assert arts[p]["kind"] == "compile_leftover"
        assert arts[p]["bytes"] == disk_bytes(root / p)
        assert arts[p]["producer"] == "TensorFlow Lite Core ML delegate"
        assert arts[p]["model"]["class_name"] == "parkinson_wave"
    specs = [a for a in c["artifacts"] if a["kind"] == "compile_leftover" and a["detail"]["leftover"] == "spec"]
    assert len(specs) == 24
    cache = root / "Library/Caches/com.example.recompile/com.apple.e5rt.e5bundlecache/23A344"
    entries = sorted(p.name for p in cache.iterdir())
    got = sorted(a["path"].rsplit("/", 1)[1] for a in c["artifacts"] if a["kind"] == "specialization")
    assert got == entries
    for a in c["artifacts"]:
        if a["kind"] == "specialization":
            assert a["bytes"] == disk_bytes(root / a["path"])
    assert arts["Library/Application Support/Models/SSDOcr.mlmodel"]["kind"] == "source_model"
    assert arts["Library/Application Support/Models/SSDOcr.mlmodel"]["model"]["outputs"] == ["scores", "boxes", "filter"]


def test_every_byte_is_accounted_for(built):
    for key in ("recompile", "healthy", "studio", "macos"):
        for c in scan_json(built[key])["containers"]:
            kinds = sum(c["bytes_by_kind"].values())
            other = sum(c["other_bytes_by_area"].values())
            assert kinds + other == c["total_bytes"], key
            assert sum(a["bytes"] for a in c["artifacts"]) == kinds
    studio_root = built["studio"] / "AppData"
    assert scan_json(built["studio"])["containers"][0]["total_bytes"] == disk_bytes(studio_root)
    assert scan_json(built["recompile"])["containers"][0]["total_bytes"] == disk_bytes(built["recompile"])


def test_hardlinked_files_are_counted_once(fx):
    root = fx("healthy")
    src = root / "Library/Application Support/Models/parkinson_wave.mlmodelc/model.espresso.weights"
    os.link(src, root / "tmp" / "weights-hardlink")
    c = scan_json(root)["containers"][0]
    assert c["total_bytes"] == disk_bytes(root)


def test_studio_kinds_and_model_types(built):
    c = scan_json(built["studio"])["containers"][0]
    by_path = {a["path"]: a for a in c["artifacts"]}
    support = "Library/Application Support"
    assert by_path[f"{support}/models/v2/Styler.mlmodelc"]["model"]["type"] == "mlprogram"
    assert by_path[f"{support}/models/v2/Styler.mlmodelc"]["model"]["coremlc_version"] == "3404.23.1"
    assert by_path[f"{support}/parkinson_wave.mlmodelc"]["model"]["type"] == "neuralnetwork"
    pkg = by_path[f"{support}/Sources/Styler.mlpackage"]
    assert pkg["kind"] == "source_model" and pkg["model"]["type"] == "mlprogram"
    assert pkg["model"]["inputs"] == ["x"]
    kinds = {a["kind"] for a in c["artifacts"]}
    assert {"specialization_partial", "metal_shader_cache", "executorch_asset", "compile_leftover"} <= kinds
    producers = {a["producer"] for a in c["artifacts"] if a["kind"] == "compile_leftover"}
    assert producers == {"ExecuTorch", "ONNX Runtime Core ML EP", "MLModel.compileModel(at:)"}


def test_corrupt_or_missing_metadata_is_a_note_not_a_crash(fx):
    root = fx("healthy")
    bundle = root / "Library/Application Support/Models/parkinson_wave.mlmodelc"
    (bundle / "metadata.json").write_text("{not json")
    shutil.copytree(bundle, root / "Library/Application Support/Models/copy.mlmodelc")
    (root / "Library/Application Support/Models/copy.mlmodelc/metadata.json").unlink()
    c = scan_json(root)["containers"][0]
    notes = {a["path"].rsplit("/", 1)[1]: a["notes"] for a in c["artifacts"] if a["kind"] == "compiled_model"}
    assert notes["parkinson_wave.mlmodelc"][0].startswith("metadata.json is not valid JSON")
    assert notes["copy.mlmodelc"] == ["metadata.json missing"]


def test_unknown_cache_layout_is_unrecognised_never_guessed(fx):
    root = fx("healthy")
    cache = root / "Library/Caches/com.example.healthy/com.apple.e5rt.e5bundlecache"
    (cache / "weird-folder").mkdir()
    (cache / "weird-folder" / "blob").write_bytes(b"x" * 10)
    (cache / "23A344" / "not-hex").mkdir()
    c = scan_json(root)["containers"][0]
    unknown = [a["path"] for a in c["artifacts"] if a["kind"] == "unrecognised"]
    assert len(unknown) == 2
    finding = [f for f in c["findings"] if f["rule"] == "unrecognised-cache-layout"][0]
    assert finding["reclaimable_bytes"] == 0


def test_json_contract_keys_are_pinned(built):
    doc = scan_json(built["recompile"])
    assert doc["schema"] == "mlcache.scan/3"
    c = doc["containers"][0]
    for key in ("bundle_id", "form", "source", "root", "total_bytes", "not_observable", "reclaimable_bytes",
                "artifacts", "findings", "coreml_bytes", "file_count", "bytes_by_kind", "other_bytes_by_area",
                "reclaimable_opt_in_bytes", "notes", "timeline", "cleanable", "info"):
        assert key in c, key
    a = c["artifacts"][0]
    for key in ("kind", "path", "bytes", "files", "area", "oldest_mtime", "newest_mtime", "producer", "model",
                "fingerprint", "notes"):
        assert key in a, key
    assert set(a["fingerprint"]) == {"metadata", "structure", "content", "content_basis", "model"}
    f = c["findings"][0]
    for key in ("rule", "severity", "title", "summary", "paths", "reclaimable_paths", "reclaimable_bytes",
                "opt_in", "evidence", "explanation", "remedy"):
        assert key in f, key
    assert all("/" not in a["path"][:1] and "\\" not in a["path"] for a in c["artifacts"])


def test_schema_doc_names_every_pinned_key(built):
    text = (ROOT / "docs" / "schema.md").read_text()
    c = scan_json(built["recompile"])["containers"][0]
    for key in list(c) + list(c["artifacts"][0]) + list(c["findings"][0]):
        assert f"`{key}`" in text, key


def test_json_goes_to_stdout_alone(built):
    result = run("scan", built["healthy"], "--format", "json")
    json.loads(result.stdout)
    assert result.stderr == ""


def test_text_report_leads_with_findings_and_shows_timeline(built):
    out = run("scan", built["recompile"]).stdout
    assert out.index("Verdict: 23.6 MB can be freed.") < out.index("Findings") < out.index("Where the bytes are")
    assert "compiled one model 24 times" in out
    assert "ML cache bytes added per day" in out
    assert "Next:  mlcache clean" in out


def test_healthy_container_has_nothing_reclaimable(built):
    c = scan_json(built["healthy"])["containers"][0]
    assert c["reclaimable_bytes"] == 0 and c["reclaimable_opt_in_bytes"] == 0
    assert all(f["reclaimable_bytes"] == 0 for f in c["findings"])
    assert "No findings" in run("scan", built["healthy"]).stdout


def test_scan_reads_only_what_recognition_needs(fx, monkeypatch):
    """Without duplicates to confirm, a scan opens metadata.json and specs, never weights."""
    import mlcache_audit.sources.folder as folder

    root = fx("healthy")
    opened = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(folder.os, "open", spy)
    scan_json(root, "--no-hash-cache")
    assert not any(p.endswith("model.espresso.weights") for p in opened)
    assert any(p.endswith("metadata.json") for p in opened)


def test_every_documented_tmp_producer_is_recognised(fx):
    import build_fixtures as bf

    root = fx("healthy")
    tmp = root / "tmp"
    bf.copy_bundle(bf.PARKINSON, tmp / "model_4242_abc.mlmodelc", bf.T0)
    bf.write(tmp / f"onnxruntime-{bf.gus(7, 31)}" / "Manifest.json", "{}", bf.T0)
    bf.write(tmp / f"onnxruntime-{bf.gus(8, 31)}.model.mlmodel", bf.TINY_SPEC.read_bytes(), bf.T0)
    bf.write(tmp / bf.gus(9, 77), bf.TINY_SPEC.read_bytes(), bf.T0)
    bf.copy_bundle(bf.PARKINSON, tmp / "Detector_0B1C2D3E-4F50-4617-8293-A4B5C6D7E8F9.mlmodelc", bf.T0)
    bf.copy_bundle(bf.PARKINSON, tmp / "plain.mlmodelc", bf.T0)
    bf.write(tmp / "executorchcoreml" / "5D4C3B2A-1F0E-4D9C-8B7A-6F5E4D3C2B1A", b"x" * 10, bf.T0)
    sha = "ab" * 32  # PyTorch's legacy backend: <sha256 of spec>, .mlmodelc, .version (PTMCoreMLCompiler.mm)
    bf.write(tmp / sha, bf.TINY_SPEC.read_bytes(), bf.T0)
    bf.copy_bundle(bf.PARKINSON, tmp / f"{sha}.mlmodelc", bf.T0)
    bf.write(tmp / f"{sha}.version", "1", bf.T0)
    c = scan_json(root)["containers"][0]
    got = {a["path"]: (a["producer"], (a["detail"] or {}).get("leftover"), (a["detail"] or {}).get("pid"))
           for a in c["artifacts"] if a["kind"] == "compile_leftover"}
    assert got == {
        "tmp/model_4242_abc.mlmodelc": ("a per-process compile (model_<pid>_*)", "bundle", 4242),
        f"tmp/{sha}": ("PyTorch Core ML backend (legacy)", "spec", None),
        f"tmp/{sha}.mlmodelc": ("PyTorch Core ML backend (legacy)", "bundle", None),
        f"tmp/{sha}.version": ("PyTorch Core ML backend (legacy)", "version", None),
        f"tmp/onnxruntime-{bf.gus(7, 31)}": ("ONNX Runtime Core ML EP", "package", 31),
        f"tmp/onnxruntime-{bf.gus(8, 31)}.model.mlmodel": ("ONNX Runtime Core ML EP", "spec", 31),
        f"tmp/{bf.gus(9, 77)}": ("TensorFlow Lite Core ML delegate", "spec", 77),
        "tmp/Detector_0B1C2D3E-4F50-4617-8293-A4B5C6D7E8F9.mlmodelc": ("MLModel.compileModel(at:)", "bundle", None),
        "tmp/plain.mlmodelc": ("MLModel.compileModel(at:)", "bundle", None),
        "tmp/executorchcoreml/5D4C3B2A-1F0E-4D9C-8B7A-6F5E4D3C2B1A": ("ExecuTorch", "trash", None),
    }
    assert "tmp/upload-draft.json" not in got  # an ordinary file in tmp/ is not Core ML


def test_readme_first_command_runs_on_the_committed_fixture():
    result = run("scan", ROOT / "fixtures" / "recompile-app")
    assert result.exit_code == 0 and "compiled one model 24 times" in result.stdout


def test_a_copy_without_times_gets_one_note_and_no_figure_changes(built, tmp_path):
    import os
    import shutil
    import time

    kept = tmp_path / "kept"
    shutil.copytree(built["recompile"], kept, symlinks=True)  # copy2: times kept
    reset = tmp_path / "reset"
    shutil.copytree(built["recompile"], reset, symlinks=True, copy_function=shutil.copy)
    now = time.time()
    for dirpath, dirnames, filenames in os.walk(reset):  # as `cp -R` leaves them: every time is now
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (now, now), follow_symlinks=False)
    a = scan_json(kept)["containers"][0]
    b = scan_json(reset)["containers"][0]
    assert not any("copied without times" in n for n in a["notes"])
    assert sum("copied without times" in n for n in b["notes"]) == 1
    assert (a["total_bytes"], a["coreml_bytes"]) == (b["total_bytes"], b["coreml_bytes"])


def test_a_copy_whose_every_file_was_written_at_its_copy_time_gets_the_note_and_a_live_container_does_not():
    """The ctime condition: times spread over days (so not the 2 s span), but each file's mtime is
    its own ctime, as when files are copied one by one without their times. A live container's files
    written once look the same, so there the condition is not applied."""
    from mlcache_audit.scan import times_look_reset
    from mlcache_audit.scan.model import Artifact

    def arts(unkept):
        return [Artifact("specialization", f"Library/Caches/a/e/{i}", True, files=5, unkept_times=unkept,
                         oldest_mtime=1_700_000_000 + i * 86400, newest_mtime=1_700_000_100 + i * 86400)
                for i in range(4)]

    assert "copied without times" in times_look_reset(arts(5), live=False)
    assert "status change" in times_look_reset(arts(5), live=False)
    assert times_look_reset(arts(5), live=True) is None
    assert times_look_reset(arts(4), live=False) is None  # one file kept its time: times were kept
    assert times_look_reset(arts(5)[:3], live=False) is None  # 15 files: too few to tell
