"""Recognise Core ML artifacts in a container's entries and account for every byte of it.

Walking is cheap; this stage reads only what recognition needs (metadata.json, manifests, the head of
model.mil, source model specs). Layout facts come from shared/domain/COREML-ON-DISK.md; anything under
a Core ML cache whose layout is not known is reported as `unrecognised`, never guessed into a delete.

The stage is a package, one job a module, imports one way (tests/test_layers.py keeps it so):
model (the types) <- classify (pure) <- account (sums as the walk passes) <- walk (the fast fd walk)
and split (worker processes); describe reads what recognition needs; identity names an artifact's
files for the hash cache. Only this module ties them together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from mlcache_audit.domain import COREAI_SPECIALIZATION, EXECUTORCH_ASSET, KINDS, MODEL_KINDS, SOURCE_MODEL
from mlcache_audit.scan.account import walk_entries
from mlcache_audit.scan.describe import bundle_key, describe, read_indexes
from mlcache_audit.scan.identity import artifact_identity
from mlcache_audit.scan.model import AREAS, UNKEPT_NS, Artifact, Part, ScanResult, area_of, disk_freed
from mlcache_audit.scan.split import parallel_parts
from mlcache_audit.sources.base import Container, tree_key
from mlcache_audit.vocab import Form, Stage, StoreKind

__all__ = ["AREAS", "KINDS", "MODEL_KINDS", "Artifact", "Part", "ScanResult", "area_of", "artifact_identity", "disk_freed",
           "scan_container"]


def scan_container(container: Container, progress: Callable[[str, int], None] | None = None,
                   model_cache=None, plan_state: bool = True, parts: list[Part] | None = None) -> ScanResult:
    """Walk the container once, recognise artifacts, and account for every byte. `progress(stage, n)`
    hears of entries walked ("walked", n) and of slow steps by name (n = 0).

    The walk is streamed: an entry outside every artifact is counted into its area and dropped, so
    memory grows with the artifacts (what the output holds), not with the files. Without plan states
    (scan, snapshot, check) a large folder's top-level parts are walked in two forked processes,
    which send back only their artifacts and sums. clean walks one container here: its 15,000
    targets sent back at once cost 8 MB more at the peak for 0.08 s less (measured), and its peak
    has a target. Many containers (split.walking) are walked in workers for clean too."""
    notes: list[str] = []  # this stage's, in the order they arise: the walk's, then the reads'
    if parts is None and not plan_state:  # (parts: walked already, with many others: split.walking)
        parts = parallel_parts(container)
    if parts is not None and progress:  # walked in workers: their files, heard of at once
        progress(Stage.WALKED, sum(p.files for p in parts))
    if parts is None and container.is_whole_folder:
        from mlcache_audit.scan.walk import walk_folder

        parts = [walk_folder(container.store, container.root, [],
                             progress=(lambda n: progress(Stage.WALKED, n)) if progress else None,
                             plan_state=plan_state)]
    if parts is None:
        parts = [walk_entries(container.iter_entries((lambda n: progress(Stage.WALKED, n)) if progress else None,
                                                     notes=notes), plan_state)]
    artifacts = [a for part in parts for a in part.artifacts]
    for a in artifacts:
        a.finish_structure()
    artifacts.sort(key=lambda a: tree_key(a.path))  # tree order, as one walk finds them
    other: dict[str, int] = defaultdict(int)
    days: dict[int, int] = defaultdict(int)
    for part in parts:
        for area, n in part.other.items():
            other[area] += n
        for day, n in part.days.items():
            days[day] += n
        notes.extend(part.notes)  # each part's walk notes (a worker's come back with its part)
    total = sum(p.total for p in parts)
    files = sum(p.files for p in parts)
    names = {id(a): {e.path[len(a.path) + 1:] for e in a.members} if a.is_dir else ({""} if a.members else set())
             for a in artifacts}  # each artifact's files, relative to it (as Artifact.rel)
    keys = {id(a): bundle_key(container, a, names[id(a)]) for a in artifacts} if model_cache is not None else {}
    known = model_cache.get_bundles([k for k in keys.values() if k]) if model_cache is not None else {}
    for a in artifacts:
        describe(container, a, names[id(a)], keys.get(id(a)), known, progress, model_cache)
    indexes = {}
    if any(a.kind == EXECUTORCH_ASSET and a.detail.get("backend") == "coreml" for a in artifacts):
        # Each asset's store is told from its own files (executorch_stores); version.txt is no evidence:
        # ExecuTorch writes it on every load since April 2026, whichever store is in use.
        clocks = _executorch_clocks(container, artifacts)
        if executorch_stores(artifacts, None, clocks):  # some asset may be the asset store's: its index decides
            indexes = read_indexes(container, artifacts, notes)
            executorch_stores(artifacts, indexes.get("executorch_db", False), clocks)
        else:
            executorch_stores(artifacts, False, clocks)
    verify_coreai_sources(container, artifacts, notes)
    reset = times_look_reset(artifacts, container.live)
    if reset:
        notes.append(reset)
    # Archive members and backup records have no blocks (a backup's files are stored under hashed names).
    has_blocks = container.store.kind == StoreKind.FOLDER and container.form != Form.BACKUP
    return ScanResult(container, artifacts, total, files, dict(other), indexes, days=dict(days),
                      notes=notes, total_disk_bytes=sum(p.total_disk for p in parts) if has_blocks else None)


RESET_MIN_FILES = 20
RESET_SPAN_SECONDS = UNKEPT_NS / 1e9  # the same 2 s as a file's mtime against its ctime


def verify_coreai_sources(container: Container, artifacts: list[Artifact], notes: list[str]) -> None:
    """For each source .aimodel that a Core AI entry here names by main.hash: is its main.hash the
    SHA-256 of its main.mlirb? (A half-copied package poisons its entry.) Read once, streamed; only
    these files, because only they can make an entry poisoned."""
    named = {a.detail.get("main_hash") for a in artifacts if a.kind == COREAI_SPECIALIZATION}
    sources = [a for a in artifacts if a.kind == SOURCE_MODEL and a.detail.get("main_hash") in named]
    if sources:
        import hashlib  # only when a Core AI entry names a source here
    for a in sources:
        rel = f"{a.path}/main.mlirb"
        if not any(e.path == rel for e in a.members):
            a.detail["main_hash_ok"] = False
            continue
        if (passed := container.passed_digest(rel, "sha256")) is not None:  # a compressed tar's one pass
            a.detail["main_hash_ok"] = passed[0] == a.detail["main_hash"]
            continue
        for _, stream in container.stream([rel]):
            if stream is None:
                notes.append(f"{a.path}: main.mlirb unreadable, its main.hash not verified")
                continue
            h = hashlib.sha256()
            for chunk in iter(lambda s=stream: s.read(1 << 20), b""):
                h.update(chunk)
            a.detail["main_hash_ok"] = h.hexdigest() == a.detail["main_hash"]


def _executorch_clocks(container: Container, artifacts: list[Artifact]) -> set[str]:
    """Asset ids with an `<id>.accessed` clock beside them (one listing per models folder)."""
    import posixpath

    folders = {posixpath.dirname(a.path) for a in artifacts
               if a.kind == EXECUTORCH_ASSET and a.detail.get("backend") == "coreml"}
    out: set[str] = set()
    for folder in folders:
        names = container.store.list_dir(posixpath.join(container.root, folder) if container.root else folder) or {}
        out |= {n.removesuffix(".accessed") for n, is_dir in names.items() if not is_dir and n.endswith(".accessed")}
    return out


def executorch_stores(artifacts: list[Artifact], db_exists: bool | None, clocks: set[str]) -> bool:
    """Which of ExecuTorch's two stores each Core ML asset belongs to, from its own files
    (ETCoreMLModelCache.mm, ETCoreMLAssetManager.mm): an `<id>.accessed` clock beside it means the
    model cache (live, never an orphan); a compute-unit suffix and no clock, the asset store; neither,
    the asset store when assets.db exists, else unknown (nothing is said of it). With `db_exists`
    None (not read yet), says only whether any asset lacks a clock (then the index is worth reading)."""
    ets = [a for a in artifacts if a.kind == EXECUTORCH_ASSET and a.detail.get("backend") == "coreml"]
    if db_exists is None:
        return any(a.detail["asset_id"] not in clocks for a in ets)
    for a in ets:
        if a.detail["asset_id"] in clocks:
            a.detail["store"] = "model_cache"
        elif a.detail.get("compute_units") or db_exists:
            a.detail["store"] = "asset_store"
        else:
            a.detail["store"] = "unknown"
    return True


def times_look_reset(artifacts: list[Artifact], live: bool) -> str | None:
    """A note when the ML caches' modification times look reset by a copy that did not keep them:
    at least 20 ML-cache files, and either all modified within 2 s of each other, or (in a copy, not a
    live container, where a file written once has its ctime at its mtime) every one modified within 2 s
    of its own ctime, the moment it was copied. Growth per day and re-specializations paired with loads
    rest on those times, so they cannot be judged. No figure changes."""
    files = sum(a.files for a in artifacts)
    if files < RESET_MIN_FILES:
        return None
    times = [t for a in artifacts for t in (a.oldest_mtime, a.newest_mtime) if t is not None]
    if times and max(times) - min(times) <= RESET_SPAN_SECONDS:
        why = f"the modification times of all {files} ML-cache files lie within {RESET_SPAN_SECONDS:g} s"
    elif not live and sum(a.unkept_times for a in artifacts) == files:
        why = (f"each of the {files} ML-cache files was modified within {RESET_SPAN_SECONDS:g} s of its "
               "status change (when it was copied here)")
    else:
        return None
    return (f"{why}: this container "
            "may have been copied without times, so time-based evidence (growth per day, re-specializations "
            "paired with loads) is unavailable; copy it with `cp -Rp` or `ditto`, which keep times")
