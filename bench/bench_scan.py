"""Benchmark: `mlcache scan --format json` against `jdupes -r` on one large generated container.

    python bench/bench_scan.py [--dir DIR] [--runs 3] [--copies 300] [--keep]

Generates a container like the field case at scale (40,000+ files, about 2 GB: hundreds of
identical compile leftovers in tmp/, hundreds of specialization entries of many small files, a
Documents folder of user files), warms the page cache, then reports the median wall time of
several runs and the peak RSS of each command, measured in a wrapper process per run:

- mlcache, first scan (empty hash cache, so every duplicate candidate is read and hashed);
- mlcache, second scan of the unchanged folder (the hash cache at work);
- jdupes -r (byte-verified duplicate search over the same tree), when jdupes is on the PATH.

A second, duplicate-heavy folder (a thousand identical 6 MB compile copies, about 6 GB, few files)
measures what the hash cache is for: a second scan of an unchanged live folder holding gigabytes of
duplicate bundles.

Targets (issue 4): on the large container, first scan no slower than jdupes and peak RSS under
100 MB; on the duplicate-heavy folder, second scan at least 5x faster than the first. The script
prints Markdown tables and exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARKINSON = ROOT / "fixtures" / "models" / "parkinson_wave.mlmodelc"

WRAPPER = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
rss_mb = rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
print(json.dumps({"wall": wall, "rss_mb": rss_mb, "rc": done.returncode, "err": done.stderr.decode()[-500:]}))
"""


def gus(i: int) -> str:
    h = hashlib.sha256(f"bench{i}".encode()).hexdigest().upper()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-A{h[17:20]}-{h[20:32]}-{1000 + i}-{h[32:48]}"


def generate(root: Path, copies: int, entries: int, documents: int) -> tuple[int, int]:
    """Write the container; returns (files, bytes)."""
    rng = random.Random(7)
    weights = rng.randbytes(6 * 1024 * 1024)
    small = {p.name: p.read_bytes() for p in PARKINSON.iterdir() if p.name != "model.espresso.weights"}
    for d in ("Documents", "Library/Preferences", "Library/Application Support/Models", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(copies):  # the field case: one model recompiled on every launch
        bundle = root / "tmp" / f"{gus(i)}.mlmodelc"
        bundle.mkdir()
        for name, data in small.items():
            (bundle / name).write_bytes(data)
        (bundle / "model.espresso.weights").write_bytes(weights)
        (root / "tmp" / gus(i)).write_bytes(small["coremldata.bin"] * 40)
    persistent = root / "Library/Application Support/Models/parkinson_wave.mlmodelc"
    shutil.copytree(PARKINSON, persistent)
    cache = root / "Library/Caches/com.example.bench/com.apple.e5rt.e5bundlecache/23A344"
    for i in range(entries):  # one specialization per launch: many small files each
        h = hashlib.sha256(f"entry{i}".encode()).hexdigest().upper()
        inner = cache / h / f"{h}.bundle" / "H16G.bundle" / "main_1x128x128x1" / "main_ane"
        inner.mkdir(parents=True)
        for j in range(60):
            (inner / f"segment{j:02d}.bin").write_bytes(rng.randbytes(3000 + rng.randrange(400)))
    for i in range(documents):  # the user's files: many sizes, never candidates for anything
        sub = root / "Documents" / f"album{i // 500}"
        sub.mkdir(exist_ok=True)
        (sub / f"photo{i}.heic").write_bytes(rng.randbytes(8000 + rng.randrange(24000)))
    files = total = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            files += 1
            total += os.lstat(os.path.join(dirpath, n)).st_size
    return files, total


def measure(cmd: list[str], env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout)
    if result["rc"] not in (0,):
        raise SystemExit(f"{cmd[0]} failed ({result['rc']}): {result['err']}")
    return result


def warm(root: Path) -> None:
    for dirpath, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(dirpath, n), "rb") as fh:
                while fh.read(1 << 20):
                    pass


def run_scenario(root: Path, runs: int) -> dict:
    """Median wall time and peak RSS of the first scan, the second scan, and jdupes, on one tree."""
    warm(root)
    mlcache = [sys.executable, "-m", "mlcache_audit", "scan", str(root), "--format", "json"]
    firsts, seconds, jd = [], [], []
    for _ in range(runs):
        cache_dir = tempfile.mkdtemp(prefix="mlcache-bench-cache-")
        env = {**os.environ, "MLCACHE_CACHE_DIR": cache_dir}
        firsts.append(measure(mlcache, env))
        seconds.append(measure(mlcache, env))
        shutil.rmtree(cache_dir)
        if shutil.which("jdupes"):
            jd.append(measure(["jdupes", "-r", "-q", str(root)]))
    out = {}
    for key, rows in (("first", firsts), ("second", seconds), ("jdupes", jd)):
        if rows:
            out[key] = {"wall": statistics.median(r["wall"] for r in rows), "rss_mb": max(r["rss_mb"] for r in rows)}
    return out


def table(title: str, files: int, total: int, r: dict) -> None:
    print(f"\n{title}: {files} files, {total / 1e9:.2f} GB\n")
    print("| command | wall s (median) | peak RSS MB |\n|---|---:|---:|")
    print(f"| `mlcache scan --format json`, first scan (empty hash cache) | {r['first']['wall']:.2f} | "
          f"{r['first']['rss_mb']:.0f} |")
    print(f"| `mlcache scan --format json`, second scan (hash cache) | {r['second']['wall']:.2f} | "
          f"{r['second']['rss_mb']:.0f} |")
    if "jdupes" in r:
        print(f"| `jdupes -r` (byte-verified) | {r['jdupes']['wall']:.2f} | {r['jdupes']['rss_mb']:.0f} |")
    print(f"\nsecond scan: {r['first']['wall'] / r['second']['wall']:.1f}x faster than the first")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, help="where to generate the containers (default: a temp folder)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--copies", type=int, default=300, help="compile leftovers in tmp/ (6 MB each), large tree")
    ap.add_argument("--entries", type=int, default=400, help="specialization entries (60 files each), large tree")
    ap.add_argument("--documents", type=int, default=15000, help="user files in Documents/, large tree")
    ap.add_argument("--dup-copies", type=int, default=1000,
                    help="compile leftovers in the duplicate-heavy folder (6 MB each); 0 skips that scenario")
    ap.add_argument("--keep", action="store_true", help="keep the generated containers")
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="mlcache-bench-"))
    print(f"{os.cpu_count()} CPUs; median of {args.runs} runs; warm page cache", file=sys.stderr)
    missed = []

    # 1. The large container: speed against jdupes, and memory.
    root = base / "container"
    shutil.rmtree(root, ignore_errors=True)
    files, total = generate(root, args.copies, args.entries, args.documents)
    big = run_scenario(root, args.runs)
    table(f"Large container ({args.copies} compile copies, {args.entries} specialization entries)", files, total, big)
    if "jdupes" in big and big["first"]["wall"] > big["jdupes"]["wall"]:
        missed.append(f"first scan {big['first']['wall']:.2f} s is slower than jdupes {big['jdupes']['wall']:.2f} s")
    peak = max(big["first"]["rss_mb"], big["second"]["rss_mb"])
    if peak >= 100:
        missed.append(f"peak RSS {peak:.0f} MB is not under 100 MB")
    if not args.keep:
        shutil.rmtree(root)

    # 2. A live folder holding gigabytes of duplicate bundles: the hash cache at work.
    if args.dup_copies:
        root = base / "duplicates"
        shutil.rmtree(root, ignore_errors=True)
        files, total = generate(root, args.dup_copies, 20, 200)
        dup = run_scenario(root, args.runs)
        table(f"Duplicate-heavy live folder ({args.dup_copies} identical compile copies)", files, total, dup)
        speedup = dup["first"]["wall"] / dup["second"]["wall"]
        if speedup < 5:
            missed.append(f"second scan of the duplicate-heavy folder is only {speedup:.1f}x faster than the first")
        if not args.keep:
            shutil.rmtree(root)
    for m in missed:
        print(f"TARGET MISSED: {m}")
    if not missed:
        print("\nall targets met: first scan <= jdupes, peak RSS < 100 MB, second scan >= 5x faster on duplicates")
    if not args.keep and not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
