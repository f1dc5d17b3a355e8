"""Several PATHs in one run: each read once (overlaps folded by container identity), in worker
processes with --jobs (within the CPU budget), one that cannot be read reported and the rest done."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Progress = Callable[[str, int], None] | None


@dataclass(frozen=True)
class PathFailure:
    """One PATH of several that could not be read: the rest are still done, and the run exits 2."""

    path: str
    reason: str

    def to_dict(self) -> dict:
        from mlcache_audit.fsio import path_fields, readable

        return {**path_fields(self.path), "reason": readable(self.reason)}


@dataclass(frozen=True)
class Batch:
    """Several PATHs' documents (path, document) in PATH order, the PATHs that failed, and notes
    (overlapping PATHs folded, --jobs lowered to the budget)."""

    done: list[tuple[str, dict]]
    failed: list[PathFailure]
    notes: list[str]


def each_path(paths: tuple[str, ...], work: Callable[..., object], source, *,
              jobs: int = 1, progress: Progress = None):
    """(path, document or PathFailure) for every path, as each finishes: with `jobs` > 1 in that many
    processes (a support desk's many exports at once; workers.process_pool), else one after the
    other in this process. With several paths, one that cannot be read is its PathFailure and the
    rest go on; a single path's error is raised as it is. `source` may be a dict of per-path options."""
    def options(p):
        return source[p] if isinstance(source, dict) else source

    if len(paths) <= 1:
        for p in paths:
            yield p, work(p, options(p), progress)
        return
    if jobs <= 1:
        for p in paths:
            yield p, _guarded(work, p, options(p), progress)
        return
    from concurrent.futures import as_completed

    from mlcache_audit.workers import process_pool

    with process_pool(min(jobs, len(paths))) as pool:
        futures = {pool.submit(_guarded, work, p, options(p)): p for p in paths}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _guarded(work, path: str, source, progress: Progress = None):
    from mlcache_audit.errors import MlcacheError

    try:
        return work(path, source, progress)
    except MlcacheError as exc:
        return PathFailure(path, str(exc))


def run_batch(paths: tuple[str, ...], work, source, *, jobs: int = 1,
              progress: Progress = None) -> Batch:
    """Every path's document, overlapping paths folded so each container is counted once, --jobs
    within the parallelism budget; failures and notes said."""
    from mlcache_audit.workers import clamp_jobs

    jobs, jobs_note = clamp_jobs(jobs)
    kept, options, notes = fold_overlaps(paths, source)
    done: dict[str, dict] = {}
    failed = []
    for p, doc in each_path(kept, work, options, jobs=jobs, progress=progress):
        if isinstance(doc, PathFailure):
            failed.append(doc)
        else:
            done[p] = doc
    order = {p: i for i, p in enumerate(paths)}
    failed.sort(key=lambda f: order.get(f.path, 0))
    return Batch([(p, done[p]) for p in kept if p in done], failed, ([jobs_note] if jobs_note else []) + notes)


def fold_overlaps(paths: tuple[str, ...], source) -> tuple[tuple[str, ...], dict, list[str]]:
    """(paths to read, options per path, notes): a PATH named twice is read once, and a container
    that two PATHs reach (one inside the other) is counted by the first only, by its identity
    (identity.py), not its path. Detection alone runs for the nested ones, before any scan."""
    import dataclasses
    import os

    from mlcache_audit.fsio import readable

    real = {p: os.path.realpath(p) for p in paths}
    kept: list[str] = []
    notes: list[str] = []
    for p in paths:
        same = next((k for k in kept if real[k] == real[p]), None)
        if same is not None:
            notes.append(f"{readable(p)} is {readable(same)} again: read once")
        else:
            kept.append(p)
    nested = {p for p in kept for q in kept if p != q and
              (real[p].startswith(real[q].rstrip(os.sep) + os.sep) or real[q].startswith(real[p].rstrip(os.sep) + os.sep))}
    options: dict = {p: source for p in kept}
    if nested:
        seen: dict[str, str] = {}  # container identity -> the PATH that counts it
        for p in kept:
            if p not in nested:
                continue
            mine = _identities(p, source)
            taken = {i for i in mine if i in seen}
            for i in mine - taken:
                seen[i] = p
            if taken:
                options[p] = dataclasses.replace(source, exclude=frozenset(taken))
                owners = sorted({seen[i] for i in taken})
                notes.append(f"{readable(p)} overlaps {', '.join(readable(o) for o in owners)}: "
                             f"{len(taken)} container(s) counted once, under the first")
    return tuple(kept), options, notes


def _identities(path: str, source) -> set[str]:
    from mlcache_audit.errors import MlcacheError
    from mlcache_audit.sources import open_containers
    from mlcache_audit.sources.detect import identity_text

    try:
        return {identity_text(c) for c in open_containers(path, bundle_id=source.bundle_id,
                                                          max_containers=source.max_containers)}
    except MlcacheError:
        return set()  # its scan will say why


