"""Scratch owned by a pid (interrupted E5RT writes, MPSGraph and ExecuTorch scratch): removable
only when its pid is known not to run."""

from __future__ import annotations

from mlcache_audit.domain import (
    MPSGRAPH_SCRATCH_KIND,
    SPECIALIZATION_PARTIAL,
    remedy_of,
)
from mlcache_audit.rules.model import (
    Evidence,
    Finding,
    link,
    make_finding,
)
from mlcache_audit.scan import Artifact


def scratch_findings(artifacts: list[Artifact], ev: Evidence) -> list[Finding]:
    findings = []
    for rule, kind, what in (("interrupted-specialization", SPECIALIZATION_PARTIAL,
                              "interrupted specialization write(s) (*.tmp.<pid>[_<n>].bundle)"),
                             ("mpsgraph-scratch", MPSGRAPH_SCRATCH_KIND, "MPSGraph scratch folder(s) (mpsgraph-<pid>-*)")):
        items = [a for a in artifacts if a.kind == kind]
        if not items:
            continue
        running = [a for a in items if ev.running_pids is not None and a.detail.get("pid") in ev.running_pids]
        dead = [a for a in items if a not in running]
        basis = "an offline copy: no process can own them" if ev.running_pids is None else \
            "their processes are not running"
        findings.append(make_finding(
            rule, items, dead,
            f"{len(items)} {what}; {len(dead)} belong to processes that are gone"
            + (f", {len(running)} to running processes (kept)" if running else ""),
            {"entries": len(items), "reclaimable": len(dead), "basis": basis,
             "running_pids": sorted({a.detail["pid"] for a in running})},
            explanation="Both are written under a process id and abandoned when that process ends before it "
                        "finishes or cleans up; public sweepers remove them exactly when the pid is gone "
                        "(kill(pid, 0) fails with ESRCH).",
            remedy=_INTERRUPTED_REMEDY if kind == SPECIALIZATION_PARTIAL else remedy_of("MPSGraph"),
            links={a.path: link(f"written by pid {a.detail['pid']}, which " +
                                ("cannot run here (an offline copy)" if ev.running_pids is None else "is not running"),
                                {"pid": a.detail["pid"], "unit": f"artifact:{a.path}"},
                                checked="no process can own an offline copy" if ev.running_pids is None
                                else "the running processes of this user (psutil), read before planning")
                   for a in dead}))
    return findings


_INTERRUPTED_REMEDY = ("Nothing to change in the app: a specialization write was cut short (a crash, a kill, a "
                       "full disk). The temporary bundle can go once its process is gone; Core ML writes a complete "
                       "one on the next load.")
