"""What the field writes in 2026 (shared/domain/FIELD-EVIDENCE.md), and rules that reclaim only on evidence."""

from __future__ import annotations

import os
import subprocess
import sys

import build_fixtures as bf
import pytest

from conftest import run, scan_json
from mlcache_audit.audit import audit_path
from mlcache_audit.domain import build_order, is_build
from mlcache_audit.rules import Evidence, diagnose


def by_rule(container: dict) -> dict:
    return {f["rule"]: f for f in container["findings"]}


def test_multi_chunk_llm_loaded_once_reclaims_nothing(built):
    """Eight alike specializations from one load are eight models (an 80-chunk LLM makes 480)."""
    (c,) = scan_json(built["llm"])["containers"]
    assert c["bytes_by_kind"]["specialization"] > 0
    assert c["reclaimable_bytes"] == 0
    assert not {"redundant-specialization", "possible-respecialization"} & set(by_rule(c))
    assert "Nothing to remove" in run("clean", built["llm"]).stdout


def test_tflite_leak_respecializations_stay_reclaimable_on_paired_evidence(built):
    (c,) = scan_json(built["recompile"])["containers"]
    red = by_rule(c)["redundant-specialization"]
    assert red["evidence"]["basis"] == "paired with repeated compiles"
    assert red["evidence"]["redundant"] == bf.RECOMPILE_LAUNCHES - 1
    assert red["evidence"]["loads"] == bf.RECOMPILE_LAUNCHES
    assert red["reclaimable_bytes"] > 0


def test_alike_entries_without_evidence_are_possible_respecializations_with_0_bytes(built):
    (c,) = scan_json(built["studio"])["containers"]
    f = by_rule(c)
    assert "redundant-specialization" not in f
    possible = f["possible-respecialization"]
    assert possible["reclaimable_bytes"] == 0 and possible["reclaimable_paths"] == []
    assert "no one model's repeated compile copies" in possible["evidence"]["missing"]


def test_coreai_and_2026_layouts_are_recognised(built):
    (c,) = scan_json(built["coreai"])["containers"]
    kinds = {a["kind"] for a in c["artifacts"]}
    assert {"coreai_specialization", "specialization_partial", "mpsgraph_scratch", "executorch_asset",
            "executorch_scratch", "source_model", "compiled_model"} <= kinds
    contents = sorted(a["detail"]["contents"] for a in c["artifacts"] if a["kind"] == "specialization")
    assert contents == ["bundle", "empty", "interrupted", "pointer"]
    empty = next(a for a in c["artifacts"] if a["kind"] == "specialization" and a["detail"]["contents"] == "empty")
    assert empty["bytes"] == 0 and "not corruption" in empty["notes"][0]
    partial = sorted((a["detail"]["pid"], a["detail"].get("write")) for a in c["artifacts"]
                     if a["kind"] == "specialization_partial")
    assert partial == [(4242, 1), (4243, None)]
    source = next(a for a in c["artifacts"] if a["kind"] == "source_model")
    assert source["path"].endswith("Chat.aimodel") and len(source["detail"]["main_hash"]) == 64
    assert not any(a["kind"] == "unrecognised" for a in c["artifacts"])


def test_coreai_old_build_is_reclaimable_current_and_unknown_are_not(built):
    (c,) = scan_json(built["coreai"])["containers"]
    f = by_rule(c)
    stale = f["stale-os-build"]
    assert stale["evidence"]["old_builds"] == ["22G90"] and stale["evidence"]["current_build"] == "23A344"
    assert [p.split("/")[3] for p in stale["reclaimable_paths"]] == ["22G90"]
    cai = f["coreai-cache"]
    assert cai["reclaimable_bytes"] == 0 and cai["evidence"]["entries"] == 3
    assert cai["evidence"]["unlinked"] == 1 and cai["evidence"]["not_build_folders"] == ["unknown"]
    assert all(link["source"].endswith("Chat.aimodel") for link in cai["evidence"]["linked"])
    assert "AIModelCache" in cai["remedy"] and "deleteEntries(for:)" in cai["remedy"]
    reclaim = {p for finding in c["findings"] for p in finding["reclaimable_paths"]}
    assert not any("/unknown/" in p or "/23A344/" in p for p in reclaim if "coreai-cache" in p)


def test_executorch_new_cache_is_live_and_its_scratch_goes(built):
    (c,) = scan_json(built["coreai"])["containers"]
    f = by_rule(c)
    assert "executorch-orphan" not in f  # an .accessed clock: the model cache, which never writes assets.db
    assert not any("assets.db" in n for n in c["notes"])
    scratch = f["executorch-scratch"]["reclaimable_paths"]
    assert sorted(p.split("/")[-2] for p in scratch) == ["executorch_coreai", "temp"]
    reclaim = {p for finding in c["findings"] for p in finding["reclaimable_paths"]}
    assert not any("/bookmarks/" in p or "executorch_coreai/staging" in p or "/models/" in p for p in reclaim)
    asset = next(a for a in c["artifacts"] if a["kind"] == "executorch_asset" and a["detail"]["backend"] == "coreml")
    assert asset["detail"]["store"] == "model_cache" and "compute_units" not in asset["detail"]


def test_offline_copy_pid_scratch_is_reclaimable(built):
    (c,) = scan_json(built["coreai"])["containers"]
    f = by_rule(c)
    assert len(f["interrupted-specialization"]["reclaimable_paths"]) == 2
    assert f["mpsgraph-scratch"]["evidence"]["basis"].startswith("an offline copy")
    assert len(f["mpsgraph-scratch"]["reclaimable_paths"]) == 1


def test_pid_scratch_of_a_running_process_is_kept(built):
    audit = audit_path(str(built["coreai"]), hash_cache=False)
    ca = audit.containers[0]
    dx = diagnose(ca.scan, ca.fingerprints, Evidence(running_pids=frozenset({4242})))
    f = {x.rule: x for x in dx.findings}
    assert len(f["interrupted-specialization"].reclaimable_paths) == 1  # 4243's write; 4242 still runs
    assert f["interrupted-specialization"].evidence["running_pids"] == [4242]
    assert f["mpsgraph-scratch"].reclaimable_paths == []


def test_live_simulator_scratch_checks_real_pids(fx):
    """In a live folder the pid check is real: our own pid runs, an exited child's does not."""
    top = fx("simulator")
    app = next(p for p in (top / "Devices").rglob("0A1B2C3D-4E5F-4071-8293-A4B5C6D7E8F9"))
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(child.stdout)
    scratch = app / "tmp" / "com.apple.MetalPerformanceShadersGraph"
    for pid in (os.getpid(), dead):
        bf.write(scratch / f"mpsgraph-{pid}-1762761600" / "module.mlir", "module {}", bf.T0)
    doc = scan_json(top, "--bundle-id", "com.example.simleak")
    f = by_rule(doc["containers"][0])["mpsgraph-scratch"]
    assert f["evidence"]["running_pids"] == [os.getpid()]
    assert [p.split("-")[1] for p in f["reclaimable_paths"]] == [str(dead)]


def test_respecializations_proven_by_watch_history(built):
    audit = audit_path(str(built["studio"]), hash_cache=False)
    ca = audit.containers[0]
    alike = sorted((a for a in ca.scan.artifacts if a.kind == "specialization" and "main_1x16" in str(a.detail["layout"])
                    and a.detail["build"] == "23A344"), key=lambda a: a.newest_mtime)
    launches = {a.path: i + 1 for i, a in enumerate(alike)}
    dx = diagnose(ca.scan, ca.fingerprints, Evidence(launches=launches))
    red = next(f for f in dx.findings if f.rule == "redundant-specialization")
    assert red.evidence["basis"] == "watch history"
    assert red.reclaimable_paths == sorted(a.path for a in alike[:-1])


@pytest.mark.parametrize(("older", "newer"), [("22G90", "23A344"), ("23A5297i", "23A344"), ("23A344", "23B85"),
                                              ("23B85", "24C101"), ("21F79", "21F80"), ("9A1", "10A1")])
def test_builds_compare_as_apple_numbers_them(older, newer):
    assert build_order(older) < build_order(newer)


def test_not_a_build_is_never_a_build():
    assert not is_build("unknown") and not is_build("A" * 64) and is_build("24G517")


def test_running_mac_build_decides_stale_for_a_process_cache(built):
    audit = audit_path(str(built["coreai"]), hash_cache=False)
    ca = audit.containers[0]
    dx = diagnose(ca.scan, ca.fingerprints, Evidence(current_build="24A335"))
    stale = next(f for f in dx.findings if f.rule == "stale-os-build")
    assert stale.evidence["current_build"] == "24A335" and stale.evidence["current_from"] == "the running OS"
    cai = next(f for f in dx.findings if f.rule == "coreai-cache")
    assert [p.split("/")[3] for p in cai.paths] == ["unknown"]  # every build is older now; unknown/ is never old
