"""One run of the pipeline for a path: open its containers, scan, fingerprint, diagnose."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mlcache_audit.clones import reclaimable_on_disk
from mlcache_audit.domain import MPSGRAPH_SCRATCH_KIND, SPECIALIZATION_PARTIAL
from mlcache_audit.fingerprint import DEFAULT_MAX_HASH_BYTES, Fingerprints, RunHashes, fingerprint
from mlcache_audit.gcpause import collector_paused
from mlcache_audit.hashcache import HashCache
from mlcache_audit.rules import OFFLINE, Diagnosis, Evidence, diagnose
from mlcache_audit.scan import ScanResult, scan_container
from mlcache_audit.scan.split import walking
from mlcache_audit.sources import open_containers
from mlcache_audit.sources.base import Container
from mlcache_audit.sources.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_CONTAINERS, DEFAULT_MAX_MEMBERS
from mlcache_audit.vocab import Form, Stage, StoreKind


@dataclass(frozen=True)
class ContainerAudit:
    scan: ScanResult
    fingerprints: Fingerprints
    diagnosis: Diagnosis
    notes: tuple[str, ...] = ()  # the audit's own (the hash cache turned off for the run)
    # What the default rules give back on disk, and whether clone sharing was measured (clones.py).
    reclaimable_disk_bytes: int | None = None
    clone_sharing: str = "unknown"

    @property
    def all_notes(self) -> list[str]:
        """Every stage's notes in pipeline order: detection's, the scan's, fingerprinting's, the audit's."""
        return [*self.container.notes, *self.scan.notes, *self.fingerprints.notes, *self.notes]

    @property
    def container(self) -> Container:
        return self.scan.container


@dataclass(frozen=True)
class AuditResult:
    path: str
    containers: list  # each one's ContainerAudit, or what audit_containers' `keep` made of it (a document)
    hashes: RunHashes
    discovery: dict | None = None  # {"home", "tmpdir"} when the containers were discovered
    system: list[dict] = field(default_factory=list)  # places shown, never cleaned (the system ANE cache)
    held: dict | None = None  # with discovery: deleted files running processes hold open there (held.py)
    plan_state: bool = True  # made with what a plan needs (the state below each artifact)


def audit_path(path: str, *, bundle_id: str | None = None, hash_cache: bool = True,
               max_archive_members: int = DEFAULT_MAX_MEMBERS, max_archive_bytes: int = DEFAULT_MAX_BYTES,
               max_hash_bytes: int = DEFAULT_MAX_HASH_BYTES, progress: Callable[[str, int], None] | None = None,
               plan_state: bool = True, max_containers: int = DEFAULT_MAX_CONTAINERS,
               exclude: frozenset[str] = frozenset(), keep: Callable | None = None) -> AuditResult:
    """Scan every container at `path` and explain what grew. `plan_state=False` skips what only a
    plan needs (the state of everything below each artifact), for scan, snapshot and check.
    Containers whose identity is in `exclude` are counted by another PATH of the run: left out."""
    containers = open_containers(path, bundle_id=bundle_id, max_archive_members=max_archive_members,
                                 max_archive_bytes=max_archive_bytes, max_containers=max_containers)
    if exclude:
        from mlcache_audit.sources.detect import identity_text

        containers = [c for c in containers if identity_text(c) not in exclude]
    return audit_containers(str(path), containers, hash_cache=hash_cache, max_hash_bytes=max_hash_bytes,
                            progress=progress, plan_state=plan_state, keep=keep)


def audit_discovered(places, *, bundle_id: str | None = None, hash_cache: bool = True,
                     max_hash_bytes: int = DEFAULT_MAX_HASH_BYTES,
                     progress: Callable[[str, int], None] | None = None, plan_state: bool = True,
                     keep: Callable | None = None) -> AuditResult:
    """Scan every client discovery finds in `places` (sources.discover)."""
    from mlcache_audit import held
    from mlcache_audit.sources.discover import discover

    found = discover(places, bundle_id=bundle_id)
    lsof = held.start()  # runs while the walk does
    try:
        result = audit_containers(str(places.home), found.containers, hash_cache=hash_cache,
                                  max_hash_bytes=max_hash_bytes, progress=progress, plan_state=plan_state, keep=keep)
    except BaseException:
        if not isinstance(lsof, str):
            lsof.kill()
            lsof.wait()
        raise

    looked = [str(places.home / "Library" / sub) for sub in ("Caches", "Containers", "Group Containers",
                                                             "Developer/CoreSimulator")]
    looked += [str(places.tmpdir)] if places.tmpdir else []
    return replace(result, system=found.system, held=held.held_open(looked, lsof), discovery={
        "home": str(places.home), "tmpdir": str(places.tmpdir) if places.tmpdir else None,
        "unreadable": found.unreadable, "skipped": found.skipped})


def audit_containers(path: str, containers: list[Container], *, hash_cache: bool = True,
                     max_hash_bytes: int = DEFAULT_MAX_HASH_BYTES,
                     progress: Callable[[str, int], None] | None = None, plan_state: bool = True,
                     keep: Callable[[ContainerAudit], object] | None = None) -> AuditResult:
    """Scan, fingerprint and diagnose the given containers, sharing one hash run. With `keep`, what
    it makes of each ContainerAudit (a scan's document of it) is kept in its place as each is done,
    and the audit itself let go: a home's 600 containers are not all held in both forms at the end.
    The first is kept last, once the run knows whether its note (the hash cache's) is owed."""
    from mlcache_audit.outputs import GUARD

    GUARD.add_roots([c.real_root for c in containers if c.store.kind == StoreKind.FOLDER])
    # The hash cache is for live folders only: archives and backups are read once.
    cache = HashCache() if hash_cache and any(c.store.kind == StoreKind.FOLDER and c.form != Form.BACKUP
                                              for c in containers) else None
    run = RunHashes(cache=cache, max_bytes=max_hash_bytes)
    from mlcache_audit.watch import launches_reader

    launches = launches_reader()
    audits = []
    try:
        with collector_paused(), walking(containers, plan_state) as parts_of:
            for c in containers:
                scan = scan_container(c, progress=progress, model_cache=cache, plan_state=plan_state,
                                      parts=parts_of(c))
                fp = fingerprint(scan, run, progress=(lambda n: progress(Stage.HASHED, n)) if progress else None)
                dx = diagnose(scan, fp, gather_evidence(scan, launches_of=launches))
                audits.append(ContainerAudit(scan, fp, dx, (), *reclaimable_on_disk(scan, dx)))
                if keep is not None and len(audits) > 1:
                    audits[-1] = keep(audits[-1])
    finally:
        if cache is not None:
            cache.close()
    if cache is not None and cache.disabled_reason and audits:  # said once, on the first container
        audits[0] = replace(audits[0], notes=(cache.disabled_reason,))
    if keep is not None and audits:
        audits[0] = keep(audits[0])
    return AuditResult(path, audits, run, plan_state=plan_state)


def gather_evidence(scan: ScanResult, *, launches_of: Callable[[str | None], dict] | None = None,
                    pid_running: Callable[[int], bool] | None = None) -> Evidence:
    """What the rules need from outside the container: the launches `mlcache watch` saw for this
    client (by bundle id or client name), and for a live folder which scratch-owning pids run. An
    offline copy (pulled, backed up, archived) has no running processes: none can own its files.
    The readers come in as arguments (tests hand in their own); by default, the watch history
    (watch.launches_of) and the process table (processes.pid_running)."""
    if launches_of is None:
        from mlcache_audit.watch import launches_of
    c = scan.container
    launches = launches_of(c.client or c.label)
    if not c.live:
        return Evidence(launches=launches) if launches else OFFLINE
    if pid_running is None:
        from mlcache_audit.processes import pid_running
    pids = {a.detail["pid"] for a in scan.artifacts
            if a.kind in (SPECIALIZATION_PARTIAL, MPSGRAPH_SCRATCH_KIND) and "pid" in a.detail}
    return Evidence(running_pids=frozenset(p for p in pids if pid_running(p)), launches=launches)
