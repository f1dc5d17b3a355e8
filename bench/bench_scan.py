"""Benchmark: `mlcache scan --format json --no-hash-cache` side by side with jdupes and du, one run.

    python bench/bench_scan.py [--runs 5] [--sizes 40k,160k,320k] [--dir DIR] [--keep]

Generates containers like the field case at scale: a few hundred identical compile leftovers in
tmp/ (6 MB each, the bytes that must be hashed to prove they are copies), hundreds to thousands of
specialization entries of many small files, and a Documents folder of user files, at about 40,000,
160,000 and 320,000 files; and a duplicate-heavy live folder (a thousand identical 6 MB copies,
about 6 GB). Each tree is written, its page cache warmed, then every command runs `--runs` times in
turn; the tables show medians and peak RSS (measured in a wrapper process per run), and beside
them what Python itself needs on the same tree (`python_floor`: a bare walk, and reading and
hashing the copies in tmp/), so a miss can be told from a floor.

Targets (issue 13, tightened by issue 25), checked here, never by timed unit tests; the script exits
1 on a miss:
- first scan at most 0.3x jdupes at 40k and 160k files;
- first scan at most 2x `du -sb` at 160k and 320k files;
- peak memory at most 60 MB at 320k files;
- duplicate-heavy folder: first scan at most 0.5x jdupes (the second scan's speed-up is shown, no
  longer a target: issue 25 withdrew it).
jdupes is installed with apt-get when it is missing and this runs as root; otherwise its comparisons
are skipped and said so. `du` is coreutils'.

mlcache runs as users run it: the installed `mlcache` command beside this Python (else
`python -m mlcache_audit`), with its bytecode compiled first, as `pip install` of a wheel does (an
editable install under PYTHONDONTWRITEBYTECODE would compile every module again on every run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
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

# files ~= copies * 6 + entries * 60 + documents
SIZES = {"40k": (300, 400, 15_000), "160k": (300, 1_500, 60_000), "320k": (300, 3_000, 130_000)}


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
    shutil.copytree(PARKINSON, root / "Library/Application Support/Models/parkinson_wave.mlmodelc")
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
    for e in _files(root):
        files += 1
        total += e.stat(follow_symlinks=False).st_size
    return files, total


def _files(root: Path):
    """Every file below root (os.DirEntry), iteratively."""
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    yield e


def measure(cmd: list[str], env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"{cmd[0]} failed ({result['rc']}): {result['err']}")
    return result


def warm(root: Path) -> None:
    for e in _files(root):
        with open(e.path, "rb") as fh:
            while fh.read(1 << 20):
                pass


def bare_walk(root: Path | str) -> None:
    """Every name below `root` listed and lstat-ed, folders opened no-follow, and nothing else: what
    any walk in Python pays at the least."""
    stack = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    while stack:
        fd = stack.pop()
        for name in sorted(os.listdir(fd)):
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                stack.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd))
        os.close(fd)


def python_floor(root: Path, runs: int) -> tuple[float, float]:
    """What Python itself needs on this tree, medians in this process: (a bare walk, every name
    listed and lstat-ed with no other work, in one process; reading and hashing every file of tmp/,
    the copies any duplicate finder must read in full, with fingerprint's own loop on two threads).
    Shown beside the targets so a miss can be told from a floor: a walk split over two CPUs at
    best halves."""
    from concurrent.futures import ThreadPoolExecutor

    from mlcache_audit.fingerprint import _hash_handle

    def digest(path: str) -> None:  # mlcache's own read-and-hash loop, without the scan around it
        with open(path, "rb", buffering=0) as fh:
            _hash_handle(fh)

    copies = [e.path for e in _files(root / "tmp")]
    walks, hashes = [], []
    for _ in range(runs):
        t = time.perf_counter()
        bare_walk(root)
        walks.append(time.perf_counter() - t)
        t = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(digest, copies))
        hashes.append(time.perf_counter() - t)
    return statistics.median(walks), statistics.median(hashes)


def ensure_jdupes() -> bool:
    if shutil.which("jdupes"):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing jdupes with apt-get ...", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", "jdupes"], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if shutil.which("jdupes"):
        return True
    print("jdupes is not installed and cannot be here: its comparisons are skipped", file=sys.stderr)
    return False


def mlcache_command() -> list[str]:
    """The installed `mlcache` command (its bytecode compiled), else the module."""
    import compileall

    import mlcache_audit

    compileall.compile_dir(str(Path(mlcache_audit.__file__).parent), quiet=1)
    script = Path(sys.executable).parent / "mlcache"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mlcache_audit"]


def run_tree(root: Path, runs: int, *, second: bool, jdupes: bool) -> dict:
    """Medians and peak RSS of each command on one tree, the commands taking turns every run."""
    warm(root)
    scan = [*mlcache_command(), "scan", str(root), "--format", "json"]
    rows: dict[str, list[dict]] = {"first": [], "second": [], "jdupes": [], "du": []}
    for _ in range(runs):
        cache_dir = tempfile.mkdtemp(prefix="mlcache-bench-cache-")
        env = {**os.environ, "MLCACHE_CACHE_DIR": cache_dir}
        if second:  # the first scan fills an empty hash cache, the second reads it
            rows["first"].append(measure(scan, env))
            rows["second"].append(measure(scan, env))
        else:
            rows["first"].append(measure([*scan, "--no-hash-cache"], env))
        shutil.rmtree(cache_dir)
        if jdupes:
            rows["jdupes"].append(measure(["jdupes", "-r", "-q", str(root)]))
        rows["du"].append(measure(["du", "-sb", str(root)]))
    out = {k: {"wall": statistics.median(r["wall"] for r in v), "rss_mb": max(r["rss_mb"] for r in v)}
           for k, v in rows.items() if v}
    out["floor"] = python_floor(root, runs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, help="where to generate the trees (default: a temp folder)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="40k,160k,320k", help="which of 40k, 160k, 320k to run")
    ap.add_argument("--dup-copies", type=int, default=1000, help="duplicate-heavy folder (6 MB each); 0 skips it")
    ap.add_argument("--keep", action="store_true", help="keep the generated trees")
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="mlcache-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    jdupes = ensure_jdupes()
    print(f"{os.cpu_count()} CPUs; median of {args.runs} runs; warm page cache; one run, side by side\n")
    print("| tree | files | GB | mlcache first scan s | jdupes -r s | du -sb s | mlcache / jdupes | mlcache / du "
          "| mlcache peak MB | jdupes peak MB | Python walk s | Python hash s |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    missed = []
    for size in [s for s in args.sizes.split(",") if s]:
        root = base / f"tree-{size}"
        shutil.rmtree(root, ignore_errors=True)
        files, total = generate(root, *SIZES[size])
        r = run_tree(root, args.runs, second=False, jdupes=jdupes)
        first, du = r["first"], r["du"]
        jd = r.get("jdupes")
        cells = [size, str(files), f"{total / 1e9:.2f}", f"{first['wall']:.2f}",
                 f"{jd['wall']:.2f}" if jd else "-", f"{du['wall']:.2f}",
                 f"{first['wall'] / jd['wall']:.2f}x" if jd else "-", f"{first['wall'] / du['wall']:.1f}x",
                 f"{first['rss_mb']:.0f}", f"{jd['rss_mb']:.0f}" if jd else "-",
                 f"{r['floor'][0]:.2f}", f"{r['floor'][1]:.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)
        if jd and size in ("40k", "160k") and first["wall"] > 0.3 * jd["wall"]:
            missed.append(f"{size}: first scan {first['wall']:.2f} s is over 0.3x jdupes ({jd['wall']:.2f} s)")
        if size in ("160k", "320k") and first["wall"] > 2 * du["wall"]:
            missed.append(f"{size}: first scan {first['wall']:.2f} s is over 2x du -sb ({du['wall']:.2f} s)")
        if size == "320k" and first["rss_mb"] > 60:
            missed.append(f"320k: peak RSS {first['rss_mb']:.0f} MB is over 60 MB")
        if not args.keep:
            shutil.rmtree(root)
    if args.dup_copies:
        root = base / "duplicates"
        shutil.rmtree(root, ignore_errors=True)
        files, total = generate(root, args.dup_copies, 20, 200)
        r = run_tree(root, args.runs, second=True, jdupes=jdupes)
        first, second, jd = r["first"], r["second"], r.get("jdupes")
        speedup = first["wall"] / second["wall"]
        print(f"\nDuplicate-heavy live folder: {files} files, {total / 1e9:.2f} GB\n")
        print("| command | wall s (median) | peak RSS MB |\n|---|---:|---:|")
        print(f"| mlcache first scan (empty hash cache) | {first['wall']:.2f} | {first['rss_mb']:.0f} |")
        print(f"| mlcache second scan (hash cache) | {second['wall']:.2f} | {second['rss_mb']:.0f} |")
        if jd:
            print(f"| jdupes -r | {jd['wall']:.2f} | {jd['rss_mb']:.0f} |")
            print(f"\nfirst scan: {first['wall'] / jd['wall']:.2f}x jdupes; ", end="")
            if first["wall"] > 0.5 * jd["wall"]:
                missed.append(f"duplicates: first scan {first['wall']:.2f} s is over 0.5x jdupes ({jd['wall']:.2f} s)")
        # Shown, not gated: issue 25 withdrew the 5x target (it measured the first scan's speed-up against
        # itself); tests/ keep the check that a second scan reads no file content.
        print(f"second scan {speedup:.1f}x faster than the first")
        if not args.keep:
            shutil.rmtree(root)
    print()
    for m in missed:
        print(f"TARGET MISSED: {m}")
    if not missed:
        print("all targets met")
    if not args.keep and not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
