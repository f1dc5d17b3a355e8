"""One run of the pipeline for a path: open its containers, scan, fingerprint, diagnose."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlcache_audit.domain import MPSGRAPH_SCRATCH_KIND, SPECIALIZATION_PARTIAL
from mlcache_audit.fingerprint import DEFAULT_MAX_HASH_BYTES, Fingerprints, RunHashes, fingerprint
from mlcache_audit.fsio import path_fields, readable
from mlcache_audit.hashcache import HashCache
from mlcache_audit.rules import OFFLINE, Diagnosis, Evidence, diagnose
from mlcache_audit.scan import ScanResult, scan_container
from mlcache_audit.sources import open_containers
from mlcache_audit.sources.archive import DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBERS
from mlcache_audit.sources.base import Container
from mlcache_audit.units import iso_utc

SCAN_SCHEMA = "mlcache.scan/2"


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

    def to_dict(self) -> dict:
        return {
            "schema": SCAN_SCHEMA,
            "path": readable(self.path),
            "containers": [container_dict(c) for c in self.containers],
            "hashing": {
                "files_hashed": self.hashes.stats.files_hashed,
                "bytes_hashed": self.hashes.stats.bytes_hashed,
                "partial_reads": self.hashes.stats.partial_reads,
                "cache_hits": self.hashes.stats.cache_hits,
                "cache": str(self.hashes.cache.path) if self.hashes.cache else None,
            },
        }


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
            scan = scan_container(c, progress=(lambda n: progress("walked", n)) if progress else None)
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


def container_dict(ca: ContainerAudit) -> dict:
    scan, fp, dx = ca.scan, ca.fingerprints, ca.diagnosis
    c = scan.container
    return {
        "bundle_id": c.bundle_id,
        "form": c.form,
        "source": c.source,
        **path_fields(c.label, "root"),
        "cleanable": c.cleanable_in_place,
        "total_bytes": scan.total_bytes,
        "file_count": scan.file_count,
        "coreml_bytes": scan.coreml_bytes,
        "reclaimable_bytes": dx.reclaimable_bytes,
        "reclaimable_opt_in_bytes": dx.reclaimable_opt_in_bytes,
        "not_observable": list(c.not_observable),
        "bytes_by_kind": scan.bytes_by_kind,
        "other_bytes_by_area": dict(sorted(scan.other_bytes_by_area.items())),
        "info": c.info,
        "notes": list(c.notes),
        "timeline": [{"date": d, "bytes": b} for d, b in scan.timeline()],
        "artifacts": [{
            "kind": a.kind,
            **path_fields(a.path),
            "bytes": a.bytes,
            "files": a.files,
            "area": a.area,
            "oldest_mtime": iso_utc(a.oldest_mtime),
            "newest_mtime": iso_utc(a.newest_mtime),
            "producer": a.producer,
            "model": a.model or None,
            "detail": {k: v for k, v in a.detail.items() if k != "layout"} or None,
            "fingerprint": {
                "metadata": fp.metadata.get(a.path),
                "structure": fp.structure.get(a.path),
                "content": fp.content.get(a.path),
                "content_basis": fp.content_basis.get(a.path),
                "model": fp.model_key.get(a.path),
            },
            "notes": a.notes,
        } for a in scan.artifacts],
        "findings": [{
            "rule": f.rule,
            "severity": f.severity,
            "title": f.title,
            "summary": f.summary,
            "paths": [readable(p) for p in f.paths],
            "reclaimable_paths": [readable(p) for p in f.reclaimable_paths],
            "reclaimable_bytes": f.reclaimable_bytes,
            "opt_in": f.opt_in,
            "evidence": {k: readable(v) if isinstance(v, str) else v for k, v in f.evidence.items()},
            "explanation": f.explanation,
            "remedy": f.remedy,
        } for f in dx.findings],
    }
