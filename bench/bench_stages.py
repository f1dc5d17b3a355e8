"""Benchmark of the stages after the first scan, each side by side with its floor, in one run.

    python bench/bench_stages.py [--runs 3] [--dir DIR] [--quick]

Every floor is measured on the same tree in the same run; "scan" is `mlcache scan --format json
--no-hash-cache` of the same container. Targets (issue 25); the script exits 1 on a miss:
- `clean --apply --yes` at most 1.5x (scan + `rm -rf` of the same targets), peak at most 80 MB, on a
  stale-build container (N entries of an old OS build plus one of the current build) at 1,500
  targets of 40 small files and at 15,000 targets of 4 files;
- `clean --apply --yes --quarantine DIR` at most 1.5x (scan + `mv` of the same targets to a folder on
  the same volume);
- `.tar.gz` scans at most 1.5x `tar tzf`, `.tar` at most 1.5x `tar tf` (plus `cat` of the bytes mlcache
  hashes), peak at most 80 MB at 40k members; `.zip` peak at most 60 MB at 50k members;
- `--home` discovery of a home with 40 simulator devices x 15 apps and per-process caches at most
  2.5x `du -sb` of the same home;
- cost grows linearly: at 1x and 10x the work, time at most 11x and peak memory at most 1.2x plus
  what the output holds (the growth of the documents rendered, measured in a run of its own by
  held_output.py and printed in the row beside the peaks);
- the parallelism budget holds: sampled every 2 ms while it runs, no more processes below mlcache's
  own are alive at once than the CPUs it may run on (`scan A B C --jobs 4`, a split walk, `--home`).
Beside (not instead of) those floors, the apply rows show the floor with a bare walk of the targets
added (what any re-check right before acting reads), and the `.tar` row Python's bare read of its
headers, so a miss can be told from a floor.
`unzip` and `jdupes` are installed with apt-get when missing and this runs as root, else their rows
are skipped naming the package. Peak RSS is measured in a wrapper process per run (bench_scan.py's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_scan import bare_walk, measure, mlcache_command, warm  # noqa: E402

E5 = "com.apple.e5rt.e5bundlecache"
BID = "com.example.stale"


def stale_container(root: Path, targets: int, files: int) -> Path:
    """`targets` entries of OS build 22G90 with `files` small files each, one entry of 23A344."""
    for build, n in (("22G90", targets), ("23A344", 1)):
        for i in range(n):
            entry = root / "Library" / "Caches" / BID / E5 / build / f"{i:064X}"
            inner = entry / f"{i:064X}.bundle" / "H16G.bundle" / "main_1x16" / "main_ane"
            inner.mkdir(parents=True)
            for j in range(files):
                (inner / f"part{j}.bin").write_bytes(b"\0" * 256)
    for d in ("Documents", "tmp", "Library/Preferences"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "Documents" / "notes.txt").write_text("user file\n")
    return root


def planned_targets(mlcache: list[str], root: Path) -> list[str]:
    plan = json.loads(subprocess.run([*mlcache, "clean", str(root), "--format", "json", "--no-hash-cache"],
                                     capture_output=True, text=True, check=True).stdout)
    return [os.path.join(c["root"], a["path"]) for c in plan["containers"] for a in c["actions"]]


def median_of(runs: int, setup, cmd_of) -> dict:
    """Median wall and peak over `runs`, each on a fresh copy made by `setup()` (not timed)."""
    walls, peaks = [], []
    for _ in range(runs):
        arg = setup()
        r = measure(cmd_of(arg))
        walls.append(r["wall"])
        peaks.append(r["rss_mb"])
    return {"wall": statistics.median(walls), "rss_mb": max(peaks)}


def bench_apply(mlcache, work: Path, runs: int, targets: int, files: int, quarantine: bool) -> dict:
    base = work / f"base-{targets}-{files}" / BID
    if not base.exists():
        stale_container(base, targets, files)
    warm(base)
    copy = work / f"copy-{targets}-{files}" / BID

    def fresh() -> Path:
        subprocess.run(["rm", "-rf", str(copy.parent), str(work / "q")], check=True)
        copy.parent.mkdir(parents=True)
        subprocess.run(["cp", "-a", str(base), str(copy)], check=True)  # far faster than shutil.copytree
        return copy

    extra = ["--quarantine", str(work / "q")] if quarantine else []

    def args(root: Path) -> list[str]:
        return ["clean", str(root), "--apply", "--yes", "--no-hash-cache", "--format", "json", *extra]

    act = median_of(runs, fresh, lambda root: [*mlcache, *args(root)])
    act["held_mb"] = held_mb(args(fresh()))
    fresh()  # a scan changes nothing: one copy serves every run
    scan = median_of(runs, lambda: copy, lambda root: [*mlcache, "scan", str(root), "--format", "json",
                                                       "--no-hash-cache"])
    paths = planned_targets(mlcache, copy)
    assert len(paths) == targets, (len(paths), targets)
    listing = work / "targets.txt"

    def fresh_list() -> Path:
        fresh()
        subprocess.run(["rm", "-rf", str(work / "mv-dest")], check=True)
        (work / "mv-dest").mkdir()
        listing.write_text("\0".join(paths))
        return listing

    # What every re-check reads at the least, beside the floor: each target walked bare (every name
    # listed and lstat-ed, nothing else) by this Python, on a fresh copy, median of the runs.
    rewalks = []
    for _ in range(runs):
        fresh()
        t = time.perf_counter()
        for p in paths:
            bare_walk(p)
        rewalks.append(time.perf_counter() - t)
    if quarantine:
        floor_cmd = ["sh", "-c", f"xargs -0 mv -t {work / 'mv-dest'} < {listing}"]
    else:
        floor_cmd = ["sh", "-c", f"xargs -0 rm -rf < {listing}"]
    floor = median_of(runs, fresh_list, lambda _: floor_cmd)
    subprocess.run(["rm", "-rf", str(work / "mv-dest")], check=True)
    rewalk = statistics.median(rewalks)
    return {"mlcache": act, "scan": scan, "floor": floor, "rewalk": rewalk,
            "ratio": act["wall"] / (scan["wall"] + floor["wall"]),
            "ratio_rewalk": act["wall"] / (scan["wall"] + rewalk + floor["wall"])}


def member_tree(root: Path, members: int) -> Path:
    """A container of `members` files: specialization entries of small files, a few model copies."""
    per = 20
    for i in range(members // per):
        inner = root / "Library" / "Caches" / BID / E5 / "23A344" / f"{i:064X}" / "main_ane"
        inner.mkdir(parents=True)
        for j in range(per):
            (inner / f"p{j}.bin").write_bytes(os.urandom(64) * 64)
    for d in ("Documents", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


def bench_archive(mlcache, work: Path, runs: int, members: int, kind: str) -> dict:
    tree = member_tree(work / f"tree-{members}" / BID, members) if not (work / f"tree-{members}").exists() \
        else work / f"tree-{members}" / BID
    if kind == "zip":
        arc = work / f"c-{members}.zip"
        if not arc.exists():
            with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as z:
                for p in sorted(tree.rglob("*")):
                    z.write(p, p.relative_to(tree.parent))
        floor_cmd = ["unzip", "-l", str(arc)]
    else:
        arc = work / f"c-{members}.{'tar.gz' if kind == 'tgz' else 'tar'}"
        if not arc.exists():
            with tarfile.open(arc, "w:gz" if kind == "tgz" else "w") as t:
                t.add(tree, arcname=tree.name)
        floor_cmd = ["tar", "tzf" if kind == "tgz" else "tf", str(arc)]
    scan = median_of(runs, lambda: arc, lambda a: [*mlcache, "scan", str(a), "--format", "json", "--no-hash-cache"])
    scan["held_mb"] = held_mb(["scan", str(arc), "--format", "json", "--no-hash-cache"])
    floor = median_of(runs, lambda: arc, lambda _: floor_cmd)
    headers = statistics.median(_timed(bare_tar_headers, arc) for _ in range(runs)) if kind == "tar" else None
    return {"mlcache": scan, "floor": floor, "ratio": scan["wall"] / floor["wall"], "headers": headers}


def held_mb(args: list[str]) -> float:
    """MB of the documents the run `mlcache ARGS` renders (held_output.py: a run of its own)."""
    out = subprocess.run([sys.executable, str(HERE / "held_output.py"), *args], capture_output=True, text=True,
                         check=False)
    last = out.stderr.strip().rsplit("\n", 1)[-1]
    if not last.startswith("held "):
        raise SystemExit(f"held_output.py {' '.join(args)} failed ({out.returncode}): {out.stderr[-500:]}")
    return int(last.split()[1]) / 1e6


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def bare_tar_headers(path: Path) -> int:
    """Every header block of a plain tar read and its size parsed, the data seeked over, nothing
    else (no name decoded, no record kept): what any reader of the headers in Python pays at the least."""
    n = 0
    with open(path, "rb") as fh:
        while len(block := fh.read(512)) == 512 and block.count(0) != 512:
            size = int(block[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
            fh.seek(-size % 512 + size, 1)
            n += 1
    return n


def home_tree(home: Path, devices: int, apps: int) -> Path:
    sims = home / "Library" / "Developer" / "CoreSimulator" / "Devices"
    for d in range(devices):
        udid = f"{d:08X}-0000-4000-8000-{d:012X}"
        (sims / udid).mkdir(parents=True)
        (sims / udid / "device.plist").write_bytes(b"")
        for a in range(apps):
            app = sims / udid / "data" / "Containers" / "Data" / "Application" / f"{a:08X}-1111-4111-8111-{d:06X}{a:06X}"
            for sub in ("Documents", "tmp", "Library/Preferences"):
                (app / sub).mkdir(parents=True)
            for e in range(20):
                inner = app / "Library" / "Caches" / f"com.example.app{a}" / E5 / "23A344" / f"{e:064X}" / "main_ane"
                inner.mkdir(parents=True)
                for j in range(20):
                    (inner / f"p{j}.bin").write_bytes(b"x" * 128)
    for client in ("python", "com.apple.python3"):
        for e in range(100):
            inner = home / "Library" / "Caches" / client / E5 / "25A100" / f"{e:064X}"
            inner.mkdir(parents=True)
            for j in range(10):
                (inner / f"p{j}.bin").write_bytes(b"y" * 128)
    return home


def bench_home(mlcache, work: Path, runs: int, devices: int, apps: int) -> dict:
    home = work / f"home-{devices}x{apps}"
    if not home.exists():
        home_tree(home, devices, apps)
    warm(home)
    scan = median_of(runs, lambda: home, lambda h: [*mlcache, "scan", "--home", str(h), "--format", "json",
                                                    "--no-hash-cache"])
    scan["held_mb"] = held_mb(["scan", "--home", str(home), "--format", "json", "--no-hash-cache"])
    floor = median_of(runs, lambda: home, lambda h: ["du", "-sb", str(h)])
    files = sum(1 for _ in home.rglob("*.bin"))
    return {"mlcache": scan, "floor": floor, "ratio": scan["wall"] / floor["wall"], "files": files}


def most_processes(cmd: list[str]) -> tuple[int, int]:
    """(the most worker processes below `cmd`'s own alive at once while it runs, the most other
    processes), sampled every 2 ms. A worker runs the same executable as mlcache (a forked or a
    spawned Python); multiprocessing's resource tracker (idle, started by spawn on macOS) is not
    counted; the others are helpers, such as the lsof that `--home` starts once to find deleted
    files still held open, which runs beside the walk by design."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    top = psutil.Process(proc.pid)
    exe = top.exe()
    most = helpers = 0
    while proc.poll() is None:
        workers = others = 0
        try:
            children = top.children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            try:
                if child.status() == psutil.STATUS_ZOMBIE or "resource_tracker" in " ".join(child.cmdline()):
                    continue
                if child.exe() == exe:
                    workers += 1
                else:
                    others += 1
            except psutil.Error:
                pass  # ended between the listing and the look
        most, helpers = max(most, workers), max(helpers, others)
        time.sleep(0.002)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {err[-500:]}")
    return most, helpers


def ensure(tool: str, package: str) -> bool:
    if shutil.which(tool):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", package], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if shutil.which(tool):
        return True
    print(f"{tool} is missing (Debian package {package}): its rows are skipped", file=sys.stderr)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, help="where to make the work folder (made if missing; default: a temp folder)")
    ap.add_argument("--quick", action="store_true", help="a tenth of every size (a smoke run; targets not checked)")
    args = ap.parse_args()
    mlcache = mlcache_command()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mlcache-stages-", dir=args.dir))
    scale = 10 if args.quick else 1
    misses, rows = [], []

    def row(name, r, target, limit_mb=None, extra=""):
        ok = (target is None or r["ratio"] <= target) and (limit_mb is None or r["mlcache"]["rss_mb"] <= limit_mb)
        rows.append(f"| {name} | {r['mlcache']['wall']:.2f} | {r['floor']['wall']:.2f} | {r['ratio']:.2f}x "
                    + (f"(target {target}x)" if target else "(no time target)")
                    + f" | {r['mlcache']['rss_mb']:.0f}" + (f" (target {limit_mb})" if limit_mb else "")
                    + f" | {'met' if ok else 'MISSED'}{extra} |")
        if not ok:
            misses.append(name)

    def rewalked(r) -> str:
        """The floor with the re-check's least reading added: every target walked bare once more."""
        return (f"; {r['ratio_rewalk']:.2f}x of scan + a bare walk of the targets ({r['rewalk']:.2f} s, what any"
                " re-check reads) + the floor")

    def growth_row(name, big, little):
        """Cost at 1x and 10x the work: time at most 11x, peak at most 1.2x plus what the output
        holds (the documents' growth, MB)."""
        growth = big["mlcache"]["wall"] / little["mlcache"]["wall"]
        small_mb, big_mb = little["mlcache"]["rss_mb"], big["mlcache"]["rss_mb"]
        output = max(0.0, big["mlcache"]["held_mb"] - little["mlcache"]["held_mb"])
        allowed = 1.2 * small_mb + output
        ok = growth <= 11 and big_mb <= allowed
        rows.append(f"| {name} | {little['mlcache']['wall']:.2f} / {big['mlcache']['wall']:.2f} | | "
                    f"{growth:.1f}x time (target 11x) | {small_mb:.0f} / {big_mb:.0f} MB, {big_mb / small_mb:.2f}x peak;"
                    f" the output holds {output:.1f} MB more: {allowed:.0f} MB allowed (1.2x + that)"
                    f" | {'met' if ok else 'MISSED'} |")
        if not ok:
            misses.append(name)

    def budget_row(name, counted, n):
        """The most worker processes alive at once against the budget (the CPUs; the parent not
        counted), and the helpers beside them (not workers: lsof, once)."""
        most, helpers = counted
        ok = most <= n
        rows.append(f"| parallelism: {name} | | | {most} worker processes at most (budget {n})"
                    + (f", and {helpers} helper processes (lsof)" if helpers else "")
                    + f" | | {'met' if ok else 'MISSED'} |")
        if not ok:
            misses.append(f"parallelism: {name}")

    try:
        t0 = time.perf_counter()
        a1 = bench_apply(mlcache, work, args.runs, 1500 // scale, 40, False)
        row(f"clean --apply, {1500 // scale} targets x 40 files (floor: scan {a1['scan']['wall']:.2f} s + rm -rf)",
            a1, 1.5, 80, rewalked(a1))
        a2 = bench_apply(mlcache, work, args.runs, 15000 // scale, 4, False)
        row(f"clean --apply, {15000 // scale} targets x 4 files (floor: scan {a2['scan']['wall']:.2f} s + rm -rf)",
            a2, 1.5, 80, rewalked(a2))
        q = bench_apply(mlcache, work, args.runs, 1500 // scale, 40, True)
        row(f"clean --apply --quarantine, {1500 // scale} targets (floor: scan + mv)", q, 1.5, 80, rewalked(q))
        small = bench_apply(mlcache, work, args.runs, 150 // scale, 40, False)
        growth_row(f"clean --apply at {150 // scale} and {1500 // scale} targets", a1, small)
        from mlcache_audit.workers import cpus  # the budget mlcache itself keeps to

        n = cpus()
        bases = [str(work / f"base-{t}-{f}" / BID) for t, f in ((150 // scale, 40), (1500 // scale, 40),
                                                                  (15000 // scale, 4))]
        for name, cmd in ((f"scan of 3 containers with --jobs 4 on {n} CPUs", ["scan", *bases, "--jobs", "4"]),
                          (f"scan of a {15000 // scale}-entry container (a split walk)", ["scan", bases[2]])):
            budget_row(name, most_processes([*mlcache, *cmd, "--format", "json", "--no-hash-cache"]), n)
        archives = {}
        for kind, members, limit, target in (("tgz", 40000, 80, 1.5), ("tar", 40000, 80, 1.5), ("zip", 50000, 60, None)):
            if kind == "zip" and not ensure("unzip", "unzip"):
                continue
            r = archives[kind] = bench_archive(mlcache, work, args.runs, members // scale, kind)
            row(f"scan of a .{kind} of {members // scale} members (floor: {'unzip -l' if kind == 'zip' else 'tar t'})",
                r, target, limit, f"; Python reads the bare headers in {r['headers']:.2f} s" if r["headers"] else "")
        h = bench_home(mlcache, work, args.runs, max(1, 40 // scale), 15)
        row(f"scan --home, {max(1, 40 // scale)} devices x 15 apps ({h['files']} files; floor du -sb)", h, 2.5)
        home = work / f"home-{max(1, 40 // scale)}x15"
        budget_row("scan --home (many containers walked in workers)",
                   most_processes([*mlcache, "scan", "--home", str(home), "--format", "json", "--no-hash-cache"]), n)
        # Growth with the work, at a tenth of each size: archive members and a home's files.
        small_tgz = bench_archive(mlcache, work, args.runs, 4000 // scale, "tgz")
        small_home = bench_home(mlcache, work, args.runs, max(1, 4 // scale), 15)
        for name, big, little in ((f".tar.gz scan at {4000 // scale} and {40000 // scale} members", archives.get("tgz"),
                                   small_tgz),
                                  (f"scan --home at {small_home['files']} and {h['files']} files", h, small_home)):
            if big is not None:
                growth_row(name, big, little)
        print("| stage | mlcache s | floor s | ratio | mlcache peak MB | |\n|---|---:|---:|---|---|---|")
        print("\n".join(rows))
        print(f"\n{time.perf_counter() - t0:.0f} s in all; misses: {', '.join(misses) or 'none'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if misses and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
