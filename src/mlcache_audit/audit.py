"""One run of the pipeline for a path: open its containers, scan, fingerprint, diagnose."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlcache_audit.domain import MPSGRAPH_SCRATCH_KIND, SPECIALIZATION_PARTIAL
from mlcache_audit.fingerprint import DEFAULT_MAX_HASH_BYTES, Fingerprints, RunHashes, fingerprint
from mlcache_audit.hashcache import HashCache
from mlcache_audit.rules import OFFLINE, Diagnosis, Evidence, diagnose
from mlcache_audit.scan import ScanResult, scan_container
from mlcache_audit.sources import open_containers
from mlcache_audit.sources.archive import DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBERS
from mlcache_audit.sources.base import Container


@dataclass
class ContainerAudit:
    scan: ScanResult
    fingerprints: Fingerprints
    diagnosis: Diagnosis

    @property
    def container(self) -> Container:
        return self.scan.container


@dataclass
class AuditResult:
    path: str
    containers: list[ContainerAudit]
    hashes: RunHashes


def audit_path(path: str, *, bundle_id: str | None = None, hash_cache: bool = True,
               max_archive_members: int = DEFAULT_MAX_MEMBERS, max_archive_bytes: int = DEFAULT_MAX_BYTES,
               max_hash_bytes: int = DEFAULT_MAX_HASH_BYTES, progress: Callable[[str, int], None] | None = None) -> AuditResult:
    """Scan every container at `path` and explain what grew."""
    containers = open_containers(path, bundle_id=bundle_id, max_archive_members=max_archive_members,
                                 max_archive_bytes=max_archive_bytes)
    # The hash cache is for live folders only: archives and backups are read once.
    cache = HashCache() if hash_cache and any(c.store.kind == "folder" and c.form != "backup"
                                              for c in containers) else None
    run = RunHashes(cache=cache, max_bytes=max_hash_bytes)
    audits = []
    try:
        for c in containers:
            scan = scan_container(c, progress=progress)
            fp = fingerprint(scan, run, progress=(lambda n: progress("hashed", n)) if progress else None)
            audits.append(ContainerAudit(scan, fp, diagnose(scan, fp, gather_evidence(scan))))
    finally:
        if cache is not None:
            cache.close()
            if cache.disabled_reason and audits:
                audits[0].container.notes.append(cache.disabled_reason)
    return AuditResult(str(path), audits, run)


def gather_evidence(scan: ScanResult) -> Evidence:
    """What the rules need from outside the container: for a live folder, which scratch-owning pids
    run. An offline copy (pulled, backed up, archived) needs nothing: no process can own its files."""
    if not scan.container.live:
        return OFFLINE
    from mlcache_audit.processes import pid_running

    pids = {a.detail["pid"] for a in scan.artifacts
            if a.kind in (SPECIALIZATION_PARTIAL, MPSGRAPH_SCRATCH_KIND) and "pid" in a.detail}
    return Evidence(running_pids=frozenset(p for p in pids if pid_running(p)))
