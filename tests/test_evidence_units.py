"""Evidence names its own target; framework units go whole or not at all; every real layout counted.

The containers are built by fixtures/field_layouts.py from what each framework's source says it writes.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import build_fixtures as bf
import field_layouts as fl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import run, scan_json
from mlcache_audit.audit import audit_path
from mlcache_audit.domain import RULES
from mlcache_audit.plan import PLAN_SCHEMA, Plan, make_plan
from mlcache_audit.rules.units import units_of

BID = "com.example.field"
EVERY_RULE = set(RULES)


def container(tmp_path: Path, *builders, name: str = BID) -> Path:
    root = tmp_path / name
    bf.container_skeleton(root, BID, bf.T0)
    for b in builders:
        b(root)
    return root


def plan_of(root: Path, **kw) -> Plan:
    return make_plan(audit_path(str(root), hash_cache=False), **kw)


def actions(plan: Plan) -> dict[str, object]:
    return {a.path: a for c in plan.containers for a in c.actions}


def kept_back(plan: Plan) -> list[str]:
    return [k for c in plan.containers for k in c.kept_back]


def rel(root: Path, p: Path) -> str:
    return str(p.relative_to(root))


# -- one model's evidence never speaks for another -------------------------------------------------
def test_a_recompiled_model_proves_nothing_about_other_models_made_in_the_same_launches(tmp_path):
    made = {}
    root = container(tmp_path, lambda r: made.update(fl.tflite_recompiler(r)))
    acts = actions(plan_of(root))
    own = [rel(root, p) for p in made["own"]]
    assert set(own[:-1]) <= set(acts) and own[-1] not in acts  # the newest load stays
    assert not {rel(root, p) for p in made["other"]} & set(acts)
    ev = acts[own[0]].evidence
    assert ev["rule"] == "redundant-specialization" and ev["copy"].startswith("tmp/") and ev["copies"] == 6
    assert ev["about"]["shape"] == "1x128x128x1" and ev["about"]["client"] == BID


def test_other_models_with_the_same_shape_and_layout_are_never_taken_either(tmp_path):
    made = {}

    def build(r):
        made.update(fl.tflite_recompiler(r))
        cache = r / "Library" / "Caches" / BID / bf.E5
        for j in range(3):  # three more models, same layout as the recompiled one, in launches 1-3
            made["other"].append(bf.specialization(cache, "23A344", f"twin{j}", bf.T0 + (j + 1) * 6 * bf.HOUR + 40))

    root = container(tmp_path, build)
    acts = actions(plan_of(root))
    assert not {rel(root, p) for p in made["other"]} & set(acts)
    doc = scan_json(root)
    rules = {f["rule"] for f in doc["containers"][0]["findings"]}
    assert "possible-respecialization" in rules  # reported with 0 bytes, saying what is missing


# -- units ------------------------------------------------------------------------------------------
def test_pytorch_sets_are_live_and_never_grouped_by_their_version_files(tmp_path):
    sets = []
    root = container(tmp_path, lambda r: sets.extend(fl.pytorch_sets(r)))
    plan = plan_of(root, only=EVERY_RULE)
    assert not [p for p in actions(plan) if "tmp/" in p and any(p.startswith(rel(root, s)) for s in sets)]
    (c,) = scan_json(root)["containers"]
    leftover = next(f for f in c["findings"] if f["rule"] == "tmp-compile-leftover")
    assert leftover["reclaimable_paths"] == [] and leftover["evidence"]["pytorch_sets"] == 2
    assert {a["unit"] for a in c["artifacts"] if a["kind"] == "compile_leftover"} == \
        {f"pytorch:{rel(root, s)}" for s in sets}


def test_a_pytorch_set_without_its_bundle_is_reported_with_0_bytes(tmp_path):
    sets = []
    root = container(tmp_path, lambda r: sets.extend(fl.pytorch_sets(r)))
    shutil.rmtree(f"{sets[0]}.mlmodelc")
    (c,) = scan_json(root)["containers"]
    leftover = next(f for f in c["findings"] if f["rule"] == "tmp-compile-leftover")
    assert leftover["reclaimable_bytes"] == 0 and leftover["evidence"]["pytorch_sets_without_bundle"] == 1


def test_a_tflite_spec_goes_only_with_its_bundle(fx):
    root = fx("recompile")
    plan = plan_of(root)
    acts = actions(plan)
    bundles = {p for p in acts if p.startswith("tmp/") and p.endswith(".mlmodelc")}
    specs = {p for p in acts if p.startswith("tmp/") and not p.endswith(".mlmodelc")}
    assert {p + ".mlmodelc" for p in specs} == bundles and len(bundles) == 23


def test_an_onnx_runtime_model_cache_is_ml_bytes_and_no_plan_takes_part_of_a_key(tmp_path):
    root = container(tmp_path, fl.ort_model_cache)
    (c,) = scan_json(root)["containers"]
    assert c["bytes_by_kind"]["ort_model_cache"] > 1_900_000
    assert c["other_bytes_by_area"].get("Library/Application Support", 0) < 200  # only model.txt is outside
    keys = next(f for f in c["findings"] if f["rule"] == "ort-cache-keys")
    assert keys["reclaimable_bytes"] == 0 and "COREML_CACHE_KEY" in keys["remedy"]
    assert not any("ort-coreml-cache" in p for p in actions(plan_of(root, only=EVERY_RULE)))


def test_runtime_caches_and_weights_are_counted_and_never_reclaimed(tmp_path):
    root = container(tmp_path, fl.xnnpack_cache, fl.hub_weights)
    (c,) = scan_json(root)["containers"]
    assert c["bytes_by_kind"]["xnnpack_cache"] == 99_000 and c["bytes_by_kind"]["model_weights"] == 100_000
    runtime = next(f for f in c["findings"] if f["rule"] == "model-runtime-cache")
    assert runtime["reclaimable_bytes"] == 0
    assert not actions(plan_of(root, only=EVERY_RULE))
    archive = bf.zip_tree(root, tmp_path / "field.zip")  # in every form
    (z,) = scan_json(archive)["containers"]
    assert z["bytes_by_kind"]["xnnpack_cache"] == 99_000 and z["reclaimable_bytes"] == 0


@pytest.mark.parametrize("base", ["Documents/huggingface/models", "Library/Application Support/Field/WhisperKit/models"])
def test_whisperkit_variants_are_model_sets_never_judged_bundle_by_bundle(tmp_path, base):
    variants = {}
    root = container(tmp_path, lambda r: variants.update(fl.whisperkit(r, base)))
    plan = plan_of(root, include_persistent=True)
    assert not [p for p in actions(plan) if "whisperkit" in p]
    (c,) = scan_json(root)["containers"]
    bundles = [a for a in c["artifacts"] if a["kind"] == "compiled_model"]
    assert len(bundles) == 6 and {a["producer"] for a in bundles} == {"WhisperKit"}
    assert {a["unit"] for a in bundles} == {f"model-set:{rel(root, v)}" for v in variants.values()}
    assert not any(".cache/huggingface/download" in a["path"] for a in c["artifacts"])


def test_executorch_asset_store_rows_in_the_wal_are_read_and_version_txt_proves_nothing(tmp_path):
    made = {}
    root = container(tmp_path, lambda r: made.update(fl.executorch_store(r)))
    db = root / "Library/Application Support/executorchcoreml/assets.db"
    alone = tmp_path / "alone.db"
    shutil.copyfile(db, alone)  # the main file alone: the rows are only in the -wal
    assert sqlite3.connect(alone).execute("SELECT COUNT(*) FROM MODEL_ASSETS_STORE").fetchone() == (0,)
    (c,) = scan_json(root)["containers"]
    orphan = next(f for f in c["findings"] if f["rule"] == "executorch-orphan")
    assert orphan["reclaimable_paths"] == [rel(root, made["orphan"])]
    assert (root / "Library/Caches/executorchcoreml/version.txt").exists()
    before = {p.name for p in db.parent.iterdir()}
    scan_json(root)
    assert {p.name for p in db.parent.iterdir()} == before  # nothing is written beside the database
    (root / "Library/Application Support/executorchcoreml/assets.db-wal").unlink()
    (c,) = scan_json(root)["containers"]
    assert "executorch-orphan" not in {f["rule"] for f in c["findings"]}
    assert any("WAL mode" in n for n in c["notes"])


def test_poisoned_entries_are_repairs_named_only_by_only(tmp_path):
    made = {}
    root = container(tmp_path, lambda r: made.update(fl.poisoned(r)))
    (c,) = scan_json(root)["containers"]
    f = next(f for f in c["findings"] if f["rule"] == "poisoned-entry")
    assert f["reclaimable_paths"] == [rel(root, made["broken"])]
    assert f["reclaimable_bytes"] == 0 and f["repair_bytes"] > 0 and c["repair_bytes"] == f["repair_bytes"]
    assert c["reclaimable_bytes"] == 0 and c["reclaimable_opt_in_bytes"] == 0
    assert not actions(plan_of(root)) and not actions(plan_of(root, include_persistent=True))
    assert set(actions(plan_of(root, only={"poisoned-entry"}))) == {rel(root, made["broken"])}
    text = run("scan", root).stdout
    assert "to repair with --only poisoned-entry" in text


# -- the planner checks what the evidence names ------------------------------------------------------
def _audit_with(root: Path, change):
    audit = audit_path(str(root), hash_cache=False)
    for ca in audit.containers:
        for f in ca.diagnosis.findings:
            change(f)
    return audit


def test_evidence_about_another_model_client_or_unit_is_refused(fx):
    root = fx("recompile")

    def lie(f):
        for p, ev in f.links.items():
            about = dict(ev["about"])
            if "model" in about:
                about["model"] = "0" * 32
            elif "client" in about:
                about["client"] = "com.example.other"
            else:
                about["unit"] = "tflite:tmp/somebody-else"
            f.links[p] = {**ev, "about": about}

    plan = make_plan(_audit_with(root, lie))
    assert not actions(plan)
    assert any("its evidence names" in k for k in kept_back(plan))


def test_a_plan_never_takes_part_of_a_unit(fx):
    root = fx("recompile")

    def half(f):  # a rule that would take the bundles of TFLite units but not their specs
        f.reclaimable_paths = [p for p in f.reclaimable_paths if not (p.startswith("tmp/") and
                                                                      not p.endswith(".mlmodelc"))]

    plan = make_plan(_audit_with(root, half))
    assert not [p for p in actions(plan) if p.startswith("tmp/")]
    assert any("goes whole" in k or "would stay" in k for k in kept_back(plan))


FIXTURES = ["recompile", "healthy", "studio", "simulator", "macos", "llm", "coreai"]


@pytest.mark.parametrize("name", FIXTURES)
def test_every_action_carries_evidence_and_no_unit_is_taken_partly(fx, name):
    root = fx(name)
    audit = audit_path(str(root), hash_cache=False)
    plan = make_plan(audit, only=EVERY_RULE)
    for ca, cp in zip(audit.containers, plan.containers, strict=True):
        taken = {a.path for a in cp.actions}
        for a in cp.actions:
            assert a.evidence and a.evidence["basis"] and a.evidence["about"], a.path
        members: dict[str, set[str]] = {}
        for path, u in units_of(ca.scan.artifacts).items():
            members.setdefault(u.key, set()).add(path)
        for key, paths in members.items():
            inside = {p for p in paths if any(p == t or p.startswith(t + "/") for t in taken)}
            assert inside in (set(), paths), key


def test_apply_of_a_plan_1_carries_out_only_what_a_new_plan_also_holds(fx, tmp_path):
    root = fx("recompile")
    doc = plan_of(root).to_dict()
    doc["schema"] = "mlcache.plan/1"
    actions_ = doc["containers"][0]["actions"]
    for a in actions_:
        del a["evidence"]
    odd = next(a for a in actions_ if a["rule"] == "redundant-specialization")
    odd["rule"] = "stale-os-build"  # no new plan holds this action under that rule
    saved = tmp_path / "old-plan.json"
    saved.write_text(json.dumps(doc))
    result = run("apply", saved, "--yes", "--format", "json")
    out = json.loads(result.stdout)
    outcomes = {o["path"]: o for o in out["containers"][0]["outcomes"]}
    assert outcomes[odd["path"]]["status"] == "skipped" and outcomes[odd["path"]]["reason"] == "no evidence (plan/1)"
    assert (root / odd["path"]).exists()
    assert sum(o["status"] == "removed" for o in outcomes.values()) == len(actions_) - 1
    assert PLAN_SCHEMA == "mlcache.plan/2"


# -- clients are judged alone ---------------------------------------------------------------------
def test_a_home_named_as_path_is_discovered_like_home(fx, tmp_path):
    home = fx("home")
    as_path = scan_json(home)
    discovered = json.loads(run("scan", "--home", home, "--format", "json").stdout)
    clients = sorted((c.get("client") or c["bundle_id"], c["reclaimable_bytes"]) for c in as_path["containers"])
    assert clients == sorted((c.get("client") or c["bundle_id"], c["reclaimable_bytes"])
                             for c in discovered["containers"])
    assert len(clients) > 3
    refused = run("clean", home, "--apply", "--yes")
    assert refused.exit_code == 2 and "--all-clients" in refused.stderr
    # A folder holding a home-shaped tree (a copied home inside a support bundle): the same clients.
    outer = tmp_path / "support-bundle"
    outer.mkdir()
    shutil.move(str(home), outer / "ana")
    nested = scan_json(outer)
    assert sorted(c.get("client") or c["bundle_id"] for c in nested["containers"]) == [c for c, _ in clients]


# -- non-interference ------------------------------------------------------------------------------
PRODUCERS = {
    "tflite": lambda r: fl.tflite_recompiler(r, others=0), "stable": fl.stable_models, "pytorch": fl.pytorch_sets, "ort": fl.ort_model_cache,
    "xnnpack": fl.xnnpack_cache, "whisperkit": lambda r: fl.whisperkit(r, "Library/Application Support/W/models"),
    "weights": fl.hub_weights, "executorch": fl.executorch_store, "poisoned": fl.poisoned,
}


def _said_of(root: Path, paths: set[str] | None = None) -> dict[str, tuple]:
    """What a plan (every rule) and the findings say of each artifact: its action and evidence."""
    audit = audit_path(str(root), hash_cache=False)
    plan = make_plan(audit, only=EVERY_RULE)
    out = {}
    for ca in audit.containers:
        for a in ca.scan.artifacts:
            if paths is None or a.path in paths:
                out[a.path] = None
    for a in actions(plan).values():
        if paths is None or a.path in paths:
            ev = a.evidence
            out[a.path] = (a.rule, ev["basis"], json.dumps(ev["about"], sort_keys=True))
    return out


_ALONE: dict[str, dict] = {}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(first="stable", others={"tflite"})  # the case from the field: a recompiler beside stable models
@given(first=st.sampled_from(sorted(PRODUCERS)),
       others=st.sets(st.sampled_from(sorted(PRODUCERS)), min_size=1, max_size=4))
def test_adding_another_producer_never_changes_what_is_said_of_the_first(tmp_path_factory, first, others):
    others = sorted(others - {first})
    if first not in _ALONE:
        alone = container(tmp_path_factory.mktemp("alone"), PRODUCERS[first])
        _ALONE[first] = _said_of(alone)
    base = _ALONE[first]
    mixed = container(tmp_path_factory.mktemp("mixed"), PRODUCERS[first], *(PRODUCERS[o] for o in others))
    said = _said_of(mixed, set(base))
    assert said == base, (first, others)


def test_the_property_sees_the_defect_it_guards_against(tmp_path, monkeypatch):
    """Mutation check: with the old pairing (any compile copy proves any cluster), adding the TFLite
    recompiler changes what is said of the stable models' entries, which the property catches."""
    from mlcache_audit.rules import respecialization

    def any_copy(cluster, bursts, copies):
        times = [c for m in copies for c in m]
        return {"basis": "any copy", "copies": [c.path for c in times][:len(bursts)], "model": "any"} \
            if len(times) >= len(bursts) else None

    monkeypatch.setattr(respecialization, "_pair_with_one_model", any_copy)
    base = _said_of(container(tmp_path / "alone", PRODUCERS["stable"]))
    mixed = _said_of(container(tmp_path / "mixed", PRODUCERS["stable"], PRODUCERS["tflite"]), set(base))
    assert mixed != base


@pytest.mark.parametrize("name", FIXTURES)
def test_what_a_finding_reclaims_it_also_names_and_links(built, name):
    for c in scan_json(built[name])["containers"]:
        for f in c["findings"]:
            assert set(f["reclaimable_paths"]) <= set(f["paths"]), f["rule"]
            assert [link["path"] for link in f["links"]] == f["reclaimable_paths"], f["rule"]


def test_a_core_ai_entry_made_from_a_half_copied_package_is_poisoned(fx):
    root = fx("coreai")
    (before,) = scan_json(root)["containers"]
    assert "poisoned-entry" not in {f["rule"] for f in before["findings"]}
    mlirb = root / "Library/Application Support/Models/Chat.aimodel/main.mlirb"
    mlirb.write_bytes(mlirb.read_bytes()[:10_000])  # half copied: main.hash no longer matches
    (c,) = scan_json(root)["containers"]
    f = next(f for f in c["findings"] if f["rule"] == "poisoned-entry")
    linked = {x["entry"] for x in next(g for g in c["findings"] if g["rule"] == "coreai-cache")["evidence"]["linked"]}
    assert linked and linked <= set(f["reclaimable_paths"])
    assert all(link["evidence"]["source"].endswith("Chat.aimodel") for link in f["links"])
    assert c["reclaimable_bytes"] == before["reclaimable_bytes"] and c["repair_bytes"] > 0


def test_a_hostile_assets_db_never_hangs_and_names_no_orphan(tmp_path):
    made = {}
    root = container(tmp_path, lambda r: made.update(fl.executorch_store(r)))
    db = root / "Library/Application Support/executorchcoreml/assets.db"
    for suffix in ("", "-wal"):
        (Path(str(db) + suffix)).unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    conn.execute("CREATE VIEW MODEL_ASSETS_STORE AS WITH RECURSIVE r(ENTRY_KEY) AS "
                 "(SELECT 1 UNION ALL SELECT ENTRY_KEY + 1 FROM r) SELECT ENTRY_KEY FROM r")
    conn.commit()
    conn.close()
    (c,) = scan_json(root)["containers"]
    assert "executorch-orphan" not in {f["rule"] for f in c["findings"]}
    assert any("MODEL_ASSETS_STORE" in n for n in c["notes"])
