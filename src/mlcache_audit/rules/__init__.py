"""Turn artifacts and fingerprints into findings: what grew, why, what can go, and how to stop it.

Every rule reclaims only on positive evidence (domain.RULE[...].evidence; docs/rules.md cites the
sources). Where the evidence is missing, a finding is reported with 0 bytes reclaimable and says what
is missing. Every rule keeps at least one copy of every model, never reclaims a protected path, and
names its reclaimable paths; a container's reclaimable bytes count the union of those paths once.

One module per rule family, each `*_findings(...) -> list[Finding]` from the scan, the fingerprints
and the evidence gathered before (model.Evidence): the rules stay pure. The catalog of rule rows
(id, severity, opt-in, title, evidence) is domain.RULE, which the options, renderers and docs read.
"""

from __future__ import annotations

from mlcache_audit.domain import DEFAULT_RULES, REPAIR_RULES, RULES, UNRECOGNISED, build_order
from mlcache_audit.fingerprint import Fingerprints
from mlcache_audit.rules.builds import build_findings
from mlcache_audit.rules.compiles import compile_findings
from mlcache_audit.rules.coreai import coreai_findings
from mlcache_audit.rules.executorch import executorch_findings
from mlcache_audit.rules.model import OFFLINE, Diagnosis, Evidence, Finding, make_finding
from mlcache_audit.rules.persistent import persistent_findings
from mlcache_audit.rules.poisoned import poisoned_findings
from mlcache_audit.rules.respecialization import respecialization_findings
from mlcache_audit.rules.runtimes import runtime_findings
from mlcache_audit.rules.scratch import scratch_findings
from mlcache_audit.scan import ScanResult, disk_freed

__all__ = ["DEFAULT_RULES", "OFFLINE", "RULES", "Diagnosis", "Evidence", "Finding", "build_order", "diagnose"]


def diagnose(scan: ScanResult, fp: Fingerprints, evidence: Evidence = OFFLINE) -> Diagnosis:
    """All findings for one container, largest reclaimable first."""
    by_path = {a.path: a for a in scan.artifacts}
    findings: list[Finding] = []
    client = scan.container.client
    compiles, compile_copies = compile_findings(scan.artifacts, fp)
    findings += compiles
    findings += build_findings(scan.artifacts, evidence, client)
    findings += respecialization_findings(scan.artifacts, compile_copies, evidence, client)
    findings += scratch_findings(scan.artifacts, evidence)
    findings += coreai_findings(scan.artifacts, evidence)
    findings += executorch_findings(scan)
    findings += persistent_findings(scan.artifacts, fp)
    findings += runtime_findings(scan.artifacts, fp)
    findings += poisoned_findings(scan.artifacts)
    unknown = [a for a in scan.artifacts if a.kind == UNRECOGNISED]
    if unknown:
        findings.append(make_finding("unrecognised-cache-layout", unknown, [],
                                 f"{len(unknown)} item(s) inside a known ML cache do not match any known layout",
                                 explanation="mlcache only removes layouts it recognises; these are listed, never removed.",
                                 remedy="Nothing to do; report the layout to the mlcache developers if it keeps growing."))
    findings.sort(key=lambda f: (-f.reclaimable_bytes, f.rule, f.paths[:1]))
    default = {p for f in findings if not f.opt_in for p in f.reclaimable_paths}
    opt_in = {p for f in findings if f.opt_in and f.rule not in REPAIR_RULES for p in f.reclaimable_paths} - default
    repair = {p for f in findings if f.rule in REPAIR_RULES for p in f.reclaimable_paths}
    return Diagnosis(findings, sum(by_path[p].bytes for p in default), sum(by_path[p].bytes for p in opt_in),
                     sum(by_path[p].bytes for p in repair), disk_freed(by_path[p] for p in default))
