"""Space held by deleted files that running processes still hold open: invisible to every walk.

A file's blocks come back only when its last link goes *and* no process holds it open. macOS 27's
ANECompilerService was seen holding 178 GiB of deleted MPSGraph files until it was restarted
(FIELD-EVIDENCE.md, "Bytes that lie"). `lsof +L1` lists open files with no link left; it ships with
every Mac (psutil's open files drop deleted ones). mlcache only reports: it never signals or kills
anything. Without root, other users' processes (ANECompilerService runs as root) cannot be seen, and
the report says so instead of "nothing held".
"""

from __future__ import annotations

import os
import shutil
import subprocess

LSOF_TIMEOUT = 20.0  # seconds; a busy Mac answers in well under that
SUDO_HINT = "sudo lsof -nP -a +L1 -c ANECompiler"


def start() -> subprocess.Popen | str:
    """Start `lsof +L1` (it runs while the walk does), or say why it cannot run."""
    lsof = shutil.which("lsof")
    if lsof is None:
        return ("lsof is not installed: deleted files still held open cannot be seen (on Debian: apt install "
                "lsof; every Mac has it)")
    try:
        return subprocess.Popen([lsof, "-nP", "+L1", "-F", "pcfDsin"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    except OSError as exc:
        return f"lsof could not start ({exc.strerror}): held-open files unknown"


def held_open(places: list[str], started: subprocess.Popen | str | None = None) -> dict:
    """Deleted files held open below `places`, summed per process (a file held by several processes
    counted once, under the first): {"processes": [...], "bytes", "files", "complete", "note"}."""
    proc = start() if started is None else started
    if isinstance(proc, str):
        return {"processes": [], "bytes": None, "files": None, "complete": False, "note": proc}
    try:
        out, _ = proc.communicate(timeout=LSOF_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return {"processes": [], "bytes": None, "files": None, "complete": False,
                "note": f"lsof did not answer within {LSOF_TIMEOUT:.0f} s: held-open files unknown"}
    return summarize(parse_lsof(out.decode("utf-8", "surrogateescape")), places, os.geteuid() == 0)


def parse_lsof(text: str) -> list[dict]:
    """`lsof -F pcfDsin` records: one dict per open file, with its process's pid and command."""
    files, pid, cmd, cur = [], None, None, None
    for line in text.splitlines():
        if not line:
            continue
        tag, value = line[0], line[1:]
        if tag == "p":
            pid, cmd, cur = int(value) if value.isdigit() else None, None, None
        elif tag == "c":
            cmd = value
        elif tag == "f":
            cur = {"pid": pid, "command": cmd}
            files.append(cur)
        elif cur is not None and tag in "Dsin":
            cur[{"D": "dev", "s": "size", "i": "inode", "n": "name"}[tag]] = value
    return files


def summarize(files: list[dict], places: list[str], as_root: bool) -> dict:
    per: dict[tuple, dict] = {}
    seen: set[tuple] = set()
    for f in files:
        name = f.get("name", "").removesuffix(" (deleted)")
        if f.get("pid") is None or not f.get("size", "").isdigit() or \
                not any(name == p or name.startswith(p.rstrip("/") + "/") for p in places):
            continue
        key = (f.get("dev"), f.get("inode") or name)
        if key in seen:
            continue  # held by several processes (or descriptors): its blocks are counted once
        seen.add(key)
        p = per.setdefault((f["pid"], f["command"]), {"pid": f["pid"], "process": f["command"] or "?",
                                                     "bytes": 0, "files": 0, "examples": []})
        p["bytes"] += int(f["size"])
        p["files"] += 1
        if len(p["examples"]) < 3:
            p["examples"].append(name)
    procs = sorted(per.values(), key=lambda p: (-p["bytes"], p["pid"]))
    note = None if as_root else ("other users' processes (ANECompilerService runs as root) cannot be seen "
                                 f"without root: run `{SUDO_HINT}` to see what they hold")
    return {"processes": procs, "bytes": sum(p["bytes"] for p in procs), "files": sum(p["files"] for p in procs),
            "complete": as_root, "note": note}


def remedy(proc: dict) -> str:
    """How to get the space back from one process: it ends when the process closes the files."""
    if proc["process"].startswith("ANECompiler"):
        return ("the space comes back when ANECompilerService restarts: `sudo killall ANECompilerService` (launchd "
                "starts it again) or restart the Mac; mlcache never kills anything")
    return f"quit or restart {proc['process']} (pid {proc['pid']}); mlcache never kills anything"
