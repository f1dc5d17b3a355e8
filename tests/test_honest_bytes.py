"""Honest bytes: what the disk gets back beside the sum of file sizes (sparse files, hard links,
clones), what no walk can see (deleted files held open), and what no pull can show."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import build_fixtures as bf
import pytest

from conftest import run, scan_json
from mlcache_audit import clones

BID = "com.example.sparse"
MB = 1_000_000


def sparse_app(root: Path, copies: int = 3, size: int = 30 * MB) -> Path:
    """TFLite-style recompiles whose weights file is sparse: 30 MB of size, a few kB of blocks."""
    bf.container_skeleton(root, BID, bf.T0)
    for i in range(copies):
        name = bf.gus(700 + i, 4000 + i)
        when = bf.T0 + i * 3600
        bf.write(root / "tmp" / name, bf.TINY_SPEC.read_bytes(), when)
        bundle = bf.copy_bundle(bf.PARKINSON, root / "tmp" / f"{name}.mlmodelc", when)
        with open(bundle / "model.espresso.weights", "r+b") as f:
            f.truncate(size)  # a hole after the real bytes: size grows, blocks do not
        os.utime(bundle / "model.espresso.weights", (when, when))
    return root


def test_sparse_copies_lead_with_what_the_disk_gets_back(tmp_path):
    root = sparse_app(tmp_path / BID)
    (c,) = scan_json(root)["containers"]
    assert c["reclaimable_bytes"] > 60 * MB
    assert c["reclaimable_disk_bytes"] < 0.1 * c["reclaimable_bytes"]
    assert c["total_disk_bytes"] < c["total_bytes"] and c["clone_sharing"] == "unknown"
    text = run("scan", root).stdout
    assert "Verdict: frees at most" in text and "on disk (" in text and "of file sizes: the files are sparse" in text
    applied = run("clean", root, "--apply", "--yes", "--format", "json")
    out = json.loads(applied.stdout)
    assert out["freed_bytes"] > 60 * MB and out["freed_disk_bytes"] < 0.1 * out["freed_bytes"]
    # The text of an apply says the same.
    root2 = sparse_app(tmp_path / "again" / BID)
    assert "on disk (" in run("clean", root2, "--apply", "--yes").stdout


def test_a_copy_whose_files_are_hard_links_of_a_kept_model_frees_nothing_on_disk(fx):
    root = fx("healthy")
    kept = root / "Library/Application Support/Models/parkinson_wave.mlmodelc"
    copy = root / "tmp" / f"{bf.gus(1, 11)}.mlmodelc"
    copy.mkdir(parents=True)
    for f in kept.iterdir():
        os.link(f, copy / f.name)
    (c,) = scan_json(root)["containers"]
    leftover = next(f for f in c["findings"] if f["rule"] == "tmp-compile-leftover")
    assert leftover["reclaimable_paths"] == [str(copy.relative_to(root))]
    assert leftover["reclaimable_disk_bytes"] == 0
    plan = json.loads(run("clean", root, "--format", "json").stdout)
    action = next(a for a in plan["containers"][0]["actions"] if a["path"] == str(copy.relative_to(root)))
    assert action["disk_bytes"] == 0 and action["bytes"] == 0


def test_archives_and_backups_have_no_blocks_and_say_so(built):
    for name in ("healthy_zip", "backup"):
        for c in scan_json(built[name])["containers"]:
            assert c["total_disk_bytes"] is None and c["reclaimable_disk_bytes"] is None
            assert "no allocated blocks" in c["disk_reason"]
            assert all(a["disk_bytes"] is None for a in c["artifacts"])


def test_clone_sharing_is_measured_only_through_the_one_function(tmp_path, monkeypatch):
    root = sparse_app(tmp_path / BID, size=2 * MB)
    monkeypatch.setattr(clones, "private_size", lambda path: 0)  # every block shared with a clone
    (c,) = scan_json(root)["containers"]
    assert c["clone_sharing"] == "measured" and c["reclaimable_disk_bytes"] == 0
    monkeypatch.setattr(clones, "private_size", lambda path: None)  # the OS cannot say for one file
    (c,) = scan_json(root)["containers"]
    assert c["clone_sharing"] == "unknown" and c["reclaimable_disk_bytes"] > 0


LSOF = shutil.which("lsof")


@pytest.mark.skipif(LSOF is None, reason="needs Debian's lsof package (apt install lsof): .ci/run installs it")
def test_deleted_files_held_open_under_the_caches_are_reported_with_process_pid_and_bytes(fx, tmp_path):
    home = fx("home")
    scratch = home / "Library/Caches/com.apple.MetalPerformanceShadersGraph-held"
    scratch.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys, time
        f = open({str(scratch / 'mpsgraph-weights')!r}, "wb")
        f.write(os.urandom(12_000_000)); f.flush()
        os.unlink(f.name)
        print("ready", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        doc = json.loads(run("scan", "--home", home, "--format", "json").stdout)
        held = doc["held_open"]
        (proc,) = [p for p in held["processes"] if p["pid"] == holder.pid]
        assert proc["bytes"] == 12_000_000 and proc["files"] == 1 and proc["process"].startswith("python")
        text = run("scan", "--home", home).stdout
        assert "Deleted files still held open" in text and f"(pid {holder.pid})" in text
        assert "mlcache never kills anything" in text
    finally:
        holder.kill()
        holder.wait()


def test_held_open_files_are_counted_once_and_blind_spots_are_named():
    from mlcache_audit.held import parse_lsof, summarize

    out = "\n".join(["p10", "cANECompilerService", "f5", "D0x1", "s1000", "i7", "n/h/Library/Caches/x/a (deleted)",
                     "f6", "D0x1", "s1000", "i7", "n/h/Library/Caches/x/a (deleted)",
                     "p11", "cpython3", "f3", "D0x1", "s1000", "i7", "n/h/Library/Caches/x/a (deleted)",
                     "f4", "D0x1", "s500", "i8", "n/elsewhere/b (deleted)"])
    held = summarize(parse_lsof(out), ["/h/Library/Caches"], as_root=False)
    assert held["bytes"] == 1000 and held["files"] == 1 and [p["pid"] for p in held["processes"]] == [10]
    assert "sudo lsof -nP -a +L1 -c ANECompiler" in held["note"] and not held["complete"]
