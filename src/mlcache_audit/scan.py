"""Recognise Core ML artifacts in a container's entries and account for every byte of it.

Walking is cheap; this stage reads only what recognition needs (metadata.json, manifests, the head of
model.mil, source model specs). Layout facts come from shared/domain/COREML-ON-DISK.md; anything under
a Core ML cache whose layout is not known is reported as `unrecognised`, never guessed into a delete.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import attrgetter
from typing import TYPE_CHECKING

import xxhash

from mlcache_audit import fsio, models
from mlcache_audit.domain import (
    COMPILE_LEFTOVER,
    COMPILED_MODEL,
    COREAI_CACHE,
    COREAI_SPECIALIZATION,
    E5_CACHE,
    EXECUTORCH_ASSET,
    EXECUTORCH_COREAI,
    EXECUTORCH_COREML,
    EXECUTORCH_SCRATCH,
    KINDS,
    METAL_CACHE,
    MODEL_KINDS,
    MPSGRAPH_SCRATCH,
    MPSGRAPH_SCRATCH_KIND,
    SOURCE_MODEL,
    SPECIALIZATION,
    SPECIALIZATION_PARTIAL,
    UNRECOGNISED,
    is_build,
)
from mlcache_audit.gcpause import collector_paused
from mlcache_audit.sources.base import DIR, FILE, Container, Entry
from mlcache_audit.sources.base import join_rel as join

if TYPE_CHECKING:  # state.py is imported only when a plan records states (clean)
    from mlcache_audit.state import StateHasher

__all__ = ["KINDS", "MODEL_KINDS", "Artifact", "ScanResult", "scan_container", "area_of"]

_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
# NSProcessInfo.globallyUniqueString: <UUID>-<pid>-<16 hex>, as the TFLite Core ML delegate names files.
GUS = re.compile(rf"^({_UUID})-(\d+)-([0-9A-Fa-f]{{16}})$")
_ORT = re.compile(rf"^onnxruntime-{_UUID}-(\d+)-[0-9A-Fa-f]{{16}}")
_STEM_UUID = re.compile(rf"^(.+)_({_UUID})\.mlmodelc$")
_LEGACY_PID = re.compile(r"^model_(\d+)_.*\.mlmodelc$")
_HEX64 = re.compile(r"^[0-9A-Fa-f]{64}$")
# An interrupted E5RT write: <64 hex>.tmp.<pid>_<n>.bundle, or .tmp.<pid>.bundle (FIELD-EVIDENCE.md).
_TMP_BUNDLE = re.compile(r"\.tmp\.(\d+)(?:_(\d+))?\.bundle$")
_HEX_ANY = re.compile(r"[0-9A-Fa-f]{64}")
_PATH = attrgetter("path")
_MPSGRAPH = re.compile(r"^mpsgraph-(\d+)-(.+)$")
_TORCH_LEGACY = re.compile(r"^([0-9a-f]{64})(\.mlmodelc|\.version)?$")  # PTMCoreMLCompiler.mm: sha256 of the spec
_COMPUTE_UNITS = re.compile(r"_(all|cpu_only|cpu_and_gpu|cpu_and_ne)$")
# Files of an E5RT pointer entry (no bundle of its own): FIELD-EVIDENCE.md, "Entry contents vary".
_POINTER_FILES = ("model.milhash", "model.anehash", "universal.bundle")
_CACHE_KINDS = frozenset((SPECIALIZATION, SPECIALIZATION_PARTIAL, COREAI_SPECIALIZATION))

# ExecuTorch's newer model cache writes this and never assets.db (ETCoreMLModelCache.h).
EXECUTORCH_VERSION_FILE = f"Library/Caches/{EXECUTORCH_COREML}/version.txt"

AREAS = ("Documents", "Library/Application Support", "Library/Caches", "Library/Preferences", "Library", "tmp")


def area_of(path: str) -> str:
    """The standard container area a path lies in (`other` for anything outside them)."""
    for area in AREAS:
        if path == area or path.startswith(area + "/"):
            return area
    return "other"


@dataclass
class Artifact:
    """One Core ML thing on disk: a bundle, a cache entry, a leftover file."""

    kind: str
    path: str
    is_dir: bool
    producer: str | None = None
    bytes: int = 0
    files: int = 0
    oldest_mtime: float | None = None
    newest_mtime: float | None = None
    model: dict = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    members: list[Entry] = field(default_factory=list)  # the files counted in `bytes`
    top: Entry | None = None  # the entry the artifact is (its folder, or its one file)
    # Folded in during the walk, so that cache entries (most files of a container) keep no per-file
    # record: the plan's state of everything below, the structure id, and the inner layout.
    state: StateHasher | None = None
    structure: object = None  # an xxh3_64 over (relative name, size) of its files, in tree order
    layout: set[str] = field(default_factory=set)
    identity: str | None = None  # see artifact_identity ("" when the store has no such keys)

    @property
    def area(self) -> str:
        return area_of(self.path)

    @property
    def prefix(self) -> str:
        return self.path + "/"

    def rel(self, entry: Entry) -> str:
        """A member's path relative to the artifact ("" for a single-file artifact: its outer name,
        like a bundle's, is not part of what the model is)."""
        return entry.path[len(self.path) + 1:] if self.is_dir else ""


@dataclass
class ScanResult:
    """A container's artifacts and its byte accounting."""

    container: Container
    artifacts: list[Artifact]
    total_bytes: int
    file_count: int
    other_bytes_by_area: dict[str, int]
    index_keys: dict[str, set[str] | None]  # store name -> keys its index knows (None: unreadable)
    days: dict[int, int] = field(default_factory=dict)  # ML bytes by UTC day of modification
    layout: dict[str, bool] = field(default_factory=dict)  # facts about stores (ExecuTorch cache version)

    @property
    def bytes_by_kind(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for a in self.artifacts:
            out[a.kind] += a.bytes
        return {k: out[k] for k in KINDS if k in out}

    @property
    def coreml_bytes(self) -> int:
        return sum(a.bytes for a in self.artifacts)

    def timeline(self) -> list[tuple[str, int]]:
        """ML cache bytes added per UTC day, from file modification times."""
        return [(datetime.fromtimestamp(d * 86400, timezone.utc).date().isoformat(), n)
                for d, n in sorted(self.days.items())]


@dataclass
class _Part:
    """What walking one part of a container found: its artifacts and its byte accounting."""

    artifacts: list[Artifact]
    total: int = 0
    files: int = 0
    other: dict[str, int] = field(default_factory=dict)
    days: dict[int, int] = field(default_factory=dict)
    has_version: bool = False
    links: dict[tuple, int] = field(default_factory=dict)  # (dev, inode) -> size of hardlinked files counted
    notes: list[str] = field(default_factory=list)


WALK_WORKERS: int | None = None  # None: the budget's (workers.walk_workers); tests set 1 or 2


def scan_container(container: Container, progress: Callable[[str, int], None] | None = None,
                   model_cache=None, plan_state: bool = True) -> ScanResult:
    """Walk the container once, recognise artifacts, and account for every byte. `progress(stage, n)`
    hears of entries walked ("walked", n) and of slow steps by name (n = 0).

    The walk is streamed: an entry outside every artifact is counted into its area and dropped, so
    memory grows with the artifacts (what the output holds), not with the files. Without plan states
    (scan, snapshot, check) a folder's top-level parts are walked in two forked processes, which send
    back only their artifacts and sums; clean walks in one, keeping each artifact's state."""
    parts = _parallel_parts(container) if not plan_state else None
    if parts is None and not plan_state and container.is_whole_folder:
        from mlcache_audit.folderwalk import walk_folder

        parts = [walk_folder(container.store, container.root, [],
                             progress=(lambda n: progress("walked", n)) if progress else None)]
    if parts is None:
        parts = [_walk_part(container.iter_entries((lambda n: progress("walked", n)) if progress else None),
                            plan_state)]
    artifacts = [a for part in parts for a in part.artifacts]
    artifacts.sort(key=lambda a: a.path.split("/"))  # tree order, as one walk finds them
    other: dict[str, int] = defaultdict(int)
    days: dict[int, int] = defaultdict(int)
    for part in parts:
        for area, n in part.other.items():
            other[area] += n
        for day, n in part.days.items():
            days[day] += n
        container.notes.extend(part.notes)  # a worker's walk notes (one walk writes into the container's)
    total = sum(p.total for p in parts)
    files = sum(p.files for p in parts)
    names = {id(a): {e.path[len(a.path) + 1:] for e in a.members} if a.is_dir else ({""} if a.members else set())
             for a in artifacts}  # each artifact's files, relative to it (as Artifact.rel)
    keys = {id(a): _bundle_key(container, a, names[id(a)]) for a in artifacts} if model_cache is not None else {}
    known = model_cache.get_bundles([k for k in keys.values() if k]) if model_cache is not None else {}
    for a in artifacts:
        _describe(container, a, names[id(a)], keys.get(id(a)), known, progress, model_cache)
    layout = {}
    if any(a.kind == EXECUTORCH_ASSET and a.detail.get("backend") == "coreml" for a in artifacts):
        # ExecuTorch's newer model cache writes version.txt and never assets.db (ETCoreMLModelCache.h).
        layout["executorch_model_cache"] = any(p.has_version for p in parts)
    indexes = {} if layout.get("executorch_model_cache") else _read_indexes(container, artifacts)
    return ScanResult(container, artifacts, total, files, dict(other), indexes, layout=layout, days=dict(days))


def _walk_part(entries, plan_state: bool, notes: list[str] | None = None) -> _Part:
    """Classify and account for a stream of entries in tree order (the whole container, or a part)."""
    seen_inodes: set[tuple] = set()
    part = _Part([], notes=notes if notes is not None else [])
    stack: list[Artifact] = []
    other: dict[str, int] = defaultdict(int)
    days: dict[int, int] = defaultdict(int)
    total = files = 0
    has_version = False
    with collector_paused():
        for e in entries:
            while stack and not e.path.startswith(stack[-1].prefix):
                stack.pop()
            # Only a specialization entry can hold another artifact; inside anything else, nothing to classify.
            new = _classify(e, stack[-1]) if stack and stack[-1].kind == SPECIALIZATION else \
                None if stack else _classify(e, None)
            if plan_state:  # everything below an artifact is part of its state (nested ones too), for a plan
                for outer in stack:
                    outer.state.add(e.path[len(outer.path) + 1:], e.type, e.size, e.mtime_ns, e.target, e.nlink)
            if new is not None:
                _start(new, e, plan_state)
                if stack:
                    stack[-1].detail["interrupted_writes"] = stack[-1].detail.get("interrupted_writes", 0) + 1
                part.artifacts.append(new)
                if new.is_dir:
                    stack.append(new)
                else:
                    size = _counted_size(e, seen_inodes, part.links)
                    _add_member(new, e, size, days)
                    total += size
                    files += 1
                continue
            if e.type != FILE:
                continue
            files += 1
            size = _counted_size(e, seen_inodes, part.links)
            total += size
            if stack:
                _add_member(stack[-1], e, size, days)
            else:
                other[area_of(e.path)] += size
                has_version = has_version or e.path == EXECUTORCH_VERSION_FILE
    part.total, part.files, part.other, part.days, part.has_version = total, files, dict(other), dict(days), has_version
    return part


def _parallel_parts(container: Container) -> list[_Part] | None:
    """The container walked as its top-level folders (and Library's), in forked worker processes;
    the entries between them (the root's and Library's own files) in this one. None when this
    cannot or should not be done: no fork on this platform, one core, not a folder, a scoped client,
    or a hardlink shared by two parts (counted once only by one walk)."""
    from mlcache_audit import workers

    store = container.store
    n = WALK_WORKERS if WALK_WORKERS is not None else workers.walk_workers()
    if n < 2 or not container.is_whole_folder:
        return None
    listed: dict[str, int] = {}
    shallow, tasks = _split(container, listed)
    if len(tasks) < 2 or not _worth_forking(store, container.root, tasks, listed):
        return None
    import multiprocessing

    try:
        context = multiprocessing.get_context("fork")
    except ValueError:
        return None

    groups = _groups(tasks, max(1, len(tasks) // (8 * n)))  # handed out as workers free up
    try:
        with workers.process_pool(n, context=context, share=1) as pool:
            parts = list(pool.map(_walk_group, [store] * len(groups), [container.root] * len(groups),
                                  *zip(*groups, strict=True)))
    except (OSError, RuntimeError):  # no processes to be had: walk here instead
        return None
    notes: list[str] = []
    parts.insert(0, _walk_part(iter(shallow), False, notes))
    links: dict[tuple, int] = {}
    for part in parts:
        for key in part.links:
            if key in links:
                return None  # a file hardlinked across parts: one walk counts it once
            links[key] = 1
    return parts


def _groups(tasks: list[str], size: int) -> list[tuple[str, list[str]]]:
    """Tasks as (parent, names) runs of at most `size` names: a worker opens each parent once."""
    groups: list[tuple[str, list[str]]] = []
    for rel in tasks:
        parent, _, name = rel.rpartition("/")
        if groups and groups[-1][0] == parent and len(groups[-1][1]) < size:
            groups[-1][1].append(name)
        else:
            groups.append((parent, [name]))
    return groups


PARALLEL_MIN_TASKS = 100  # the split opened a large cache into this many entries: a big tree
PARALLEL_MIN_ENTRIES = 20_000  # or this many names one level into the parts


def _worth_forking(store, root: str, tasks: list[str], listed: dict[str, int] | None = None) -> bool:
    """Starting the workers costs about as much as walking 30,000 entries, so only a tree that looks
    large is split: many parts (a specialization cache opened into its entries), or many names one
    level down (`listed`: the counts of the parts the split already listed). Measured: a 7,000-entry
    tree walks in 0.05 s in one process, 0.15 s split."""
    if len(tasks) >= PARALLEL_MIN_TASKS:
        return True
    seen = 0
    for rel in tasks:
        if listed and rel in listed:
            seen += listed[rel]
            if seen >= PARALLEL_MIN_ENTRIES:
                return True
            continue
        try:
            fd = store._open_dir(join(root, rel))  # noqa: SLF001
        except OSError:
            continue
        try:
            seen += len(os.listdir(fd))
        except OSError:
            continue  # unreadable: the walk notes it
        finally:
            os.close(fd)
        if seen >= PARALLEL_MIN_ENTRIES:
            return True
    return False


MAX_SPLIT_DEPTH = 8


def _split(container: Container, listed: dict[str, int] | None = None) -> tuple[list[Entry], list[str]]:
    """(entries walked here: the folders the split passes through and the files beside them;
    folders walked by workers, each with its whole subtree), all relative to the container root.

    The split opens the root and Library, follows chains of few folders (Library/Caches/<id>/...),
    and opens a specialization cache's build folders into their entries, which are artifacts walked
    whole; it never opens an artifact. Anything odd up here (a link, a special file, an odd name)
    leaves the whole walk to one process, which notes it as it goes. `listed` hears how many names
    each part it listed but did not open holds."""
    from mlcache_audit.sources.folder import entry_from_stat

    store = container.store
    shallow: list[Entry] = []
    tasks: list[str] = []

    def opens(rel: str, dirs: int, depth: int) -> bool:
        if depth == 0 or rel == "Library":
            return True
        if depth >= MAX_SPLIT_DEPTH:
            return False
        parent = rel.rpartition("/")[0].rpartition("/")[2]
        return parent == E5_CACHE or (0 < dirs <= 4)  # a build folder's entries, or a chain of few folders

    queue = [("", 0)]
    while queue:
        rel, depth = queue.pop(0)
        try:
            fd = store._open_dir(join(container.root, rel) if rel else container.root)  # noqa: SLF001
        except OSError:
            return [], []  # unreadable: the one walk reports it and goes on
        try:
            # Types from the folder listing (no stat per name): a level that is not opened costs one read.
            with os.scandir(fd) as it:
                items = sorted((d.name, d.is_dir(follow_symlinks=False), d.is_file(follow_symlinks=False)) for d in it)
            if not all((is_dir or is_file) and n.isascii() and n.isprintable() for n, is_dir, is_file in items):
                return [], []
            if not opens(rel, sum(is_dir for _, is_dir, _ in items), depth):
                tasks.append(rel)
                if listed is not None:
                    listed[rel] = len(items)
                continue
            for name, _, _ in items:
                child = f"{rel}/{name}" if rel else name
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                e = entry_from_stat(child, st)
                if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                    return [], []  # changed since the listing: one walk notes it
                if stat.S_ISDIR(st.st_mode) and _classify(e, None) is None:
                    shallow.append(e)
                    queue.append((child, depth + 1))
                elif stat.S_ISDIR(st.st_mode):
                    tasks.append(child)  # an artifact: walked whole, by one worker
                else:
                    shallow.append(e)
        except OSError:
            return [], []
        finally:
            os.close(fd)
    shallow.sort(key=lambda e: e.path.split("/"))
    return shallow, tasks


def _walk_group(store, root: str, parent: str, names: list[str]) -> _Part:
    """A worker's task: the folders `parent/name` (each its own entry first, then everything below
    it), in order, into one part."""
    from mlcache_audit.folderwalk import FolderWalk
    from mlcache_audit.sources.folder import entry_from_stat, walk_notes

    walk = FolderWalk(store, [])
    on_error = walk_notes(walk.notes)
    pfd = store._open_dir(join(root, parent) if parent else root)  # noqa: SLF001
    try:
        for name in names:  # as the one walk would meet them: the entry, then its folder's names
            rel = f"{parent}/{name}" if parent else name
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                top = entry_from_stat(rel, st)
            except OSError as exc:
                on_error(rel, "cannot stat", exc.strerror)
                continue
            fd = fsio.open_subfolder(pfd, name, st, rel, on_error)  # swapped since the split saw it: noted
            with collector_paused():
                walk.folder(fd, join(root, rel), rel, top)  # with no fd: only the folder's own entry
    finally:
        os.close(pfd)
    part = walk.finish()
    for a in part.artifacts:  # hashers do not cross processes: send their digests
        a.structure = a.structure.hexdigest()
    return part


def _counted_size(e: Entry, seen: set[tuple], links: dict[tuple, int] | None = None) -> int:
    """Size of a file, counting a hardlinked inode once per container (as `du` does)."""
    if e.nlink > 1 and e.inode is not None:
        key = (e.dev, e.inode)
        if key in seen:
            return 0
        seen.add(key)
        if links is not None:
            links[key] = e.size
    return e.size


def _start(a: Artifact, top: Entry, plan_state: bool = True) -> None:
    a.top = top
    if plan_state:
        from mlcache_audit.state import StateHasher

        a.state = StateHasher(top.mtime_ns)
    else:
        a.state = None
    a.structure = xxhash.xxh3_64()


def _add_member(a: Artifact, e: Entry, size: int, days: dict[int, int]) -> None:
    """Count a file into an artifact; `size` is 0 for a second link to an inode already counted.
    Only models keep their files (their contents are compared later); a cache entry's files are
    folded into its structure id and layout here and then dropped."""
    rel = e.path[len(a.path) + 1:] if a.is_dir else ""
    kind = a.kind
    if kind in MODEL_KINDS:
        a.members.append(e)
    elif kind in _CACHE_KINDS:
        a.layout.add(_HEX_ANY.sub("<hex>", rel))
    a.structure.update(f"{rel}\0{e.size}\n".encode("utf-8", "surrogateescape"))
    mtime = e.mtime
    if mtime is not None:
        days[int(mtime // 86400)] += e.size
    a.bytes += size
    a.files += 1
    if mtime is not None:
        if a.oldest_mtime is None or mtime < a.oldest_mtime:
            a.oldest_mtime = mtime
        if a.newest_mtime is None or mtime > a.newest_mtime:
            a.newest_mtime = mtime


def _classify(e: Entry, parent: Artifact | None) -> Artifact | None:
    """Does this entry start an artifact? Only directories and regular files can."""
    if e.type not in (FILE, DIR):
        return None
    is_dir = e.type == DIR
    name = e.name
    if parent is not None:
        # The one nesting allowed: an interrupted write inside a specialization entry.
        if parent.kind == SPECIALIZATION and is_dir and (m := _TMP_BUNDLE.search(name)):
            return Artifact(SPECIALIZATION_PARTIAL, e.path, True, "Core ML (e5rt)",
                            detail={**parent.detail, **_pid_detail(m)})
        return None
    parts = e.path.split("/")
    if E5_CACHE in parts[:-1]:
        return _classify_e5(e, parts, is_dir)
    in_caches = parts[:2] == ["Library", "Caches"]
    # coreai-cache sits in a container's Library/Caches, or at the top of a per-process client rooted there.
    if COREAI_CACHE in parts[:-1] and (in_caches or parts[0] == COREAI_CACHE):
        return _classify_coreai(e, parts, is_dir)
    if in_caches and len(parts) >= 4 and parts[2] == EXECUTORCH_COREML:
        return _classify_executorch(e, parts, is_dir)
    if in_caches and len(parts) >= 4 and parts[2] == EXECUTORCH_COREAI:
        return _classify_executorch_coreai(e, parts, is_dir)
    if is_dir and name in ("com.apple.metal", "com.apple.metalfe") and in_caches:
        return Artifact(METAL_CACHE, e.path, True, "Metal")
    if parts[0] == MPSGRAPH_SCRATCH:  # the top of a temp folder ($TMPDIR on a Mac)
        return _classify_tmp(e, ["tmp", *parts], is_dir)
    if parts[0] == "tmp":
        leftover = _classify_tmp(e, parts, is_dir)
        if leftover is not None:
            return leftover
    if is_dir and name.endswith(".mlmodelc"):
        producer = "Hugging Face hub" if "huggingface" in parts else None
        return Artifact(COMPILED_MODEL, e.path, True, producer)
    if is_dir and name.endswith(".aimodelc"):
        return Artifact(COMPILED_MODEL, e.path, True, "Core AI", detail={"format": "aimodelc"})
    if is_dir and name.endswith(".aimodel"):
        return Artifact(SOURCE_MODEL, e.path, True, "Core AI", detail={"format": "aimodel"})
    if (is_dir and name.endswith(".mlpackage")) or (not is_dir and name.endswith(".mlmodel")):
        return Artifact(SOURCE_MODEL, e.path, is_dir, detail={"format": "mlpackage" if is_dir else "mlmodel"})
    return None


def quiet_folder(folder: str) -> str | None:
    """The area of the regular files in `folder` (a path from the container root) when, outside
    every artifact, `_classify` starts one from a file there only if it is named `*.mlmodel`; None
    for the folders whose files need all of `_classify`: the root and Library (a file there may be an
    area of its own), tmp/ and the top-level MPSGraph scratch, and anything in a Core ML, Core AI
    or ExecuTorch cache. The folder walk's fast path; tests/test_folderwalk.py holds it to `_classify`."""
    if folder in ("", "Library"):
        return None
    parts = folder.split("/")
    if parts[0] in ("tmp", MPSGRAPH_SCRATCH) or E5_CACHE in parts or COREAI_CACHE in parts:
        return None
    if len(parts) >= 3 and parts[0] == "Library" and parts[1] == "Caches" and parts[2] in (EXECUTORCH_COREML,
                                                                                          EXECUTORCH_COREAI):
        return None
    return area_of(folder + "/")


def _pid_detail(m: re.Match) -> dict:
    return {"pid": int(m.group(1)), **({"write": int(m.group(2))} if m.group(2) else {})}


def _classify_e5(e: Entry, parts: list[str], is_dir: bool) -> Artifact | None:
    """`<cache>/<OS build>/<64 hex>/...`: one artifact per entry; anything else is unrecognised."""
    idx = parts.index(E5_CACHE)
    depth = len(parts) - 1 - idx
    build = parts[idx + 1]
    if is_dir and depth >= 2 and (m := _TMP_BUNDLE.search(e.name)):
        return Artifact(SPECIALIZATION_PARTIAL, e.path, True, "Core ML (e5rt)", detail={"build": build, **_pid_detail(m)})
    if depth == 1:
        if is_dir and is_build(e.name):
            return None  # the build folder itself: its entries are the artifacts
        return Artifact(UNRECOGNISED, e.path, is_dir, detail={"reason": "not an OS build folder"})
    if depth == 2 and is_dir and _HEX64.match(e.name) and is_build(build):
        return Artifact(SPECIALIZATION, e.path, True, "Core ML (e5rt)", detail={"build": build, "entry": e.name})
    return Artifact(UNRECOGNISED, e.path, is_dir, detail={"reason": "unknown specialization cache layout"})


def _classify_coreai(e: Entry, parts: list[str], is_dir: bool) -> Artifact | None:
    """`coreai-cache/<OS build>/<client>/<main.hash hex>/<options key>/model.aimodelx/...`: one
    artifact per (model, options) folder. A build folder that is not a build (one beta wrote
    `unknown/`) still holds entries: they are reported and never called old."""
    idx = parts.index(COREAI_CACHE)
    depth = len(parts) - 1 - idx
    if depth <= 2 and is_dir:
        return None  # the build and client folders
    if depth == 3 and is_dir and _HEX64.match(e.name):
        return None  # the model's main.hash folder
    if depth == 4 and is_dir:
        build, client, main_hash = parts[idx + 1], parts[idx + 2], parts[idx + 3]
        return Artifact(COREAI_SPECIALIZATION, e.path, True, "Core AI",
                        detail={"build": build, "client": client, "main_hash": main_hash.lower(), "options": e.name})
    return Artifact(UNRECOGNISED, e.path, is_dir, detail={"reason": "unknown Core AI cache layout"})


def _classify_executorch(e: Entry, parts: list[str], is_dir: bool) -> Artifact | None:
    """ExecuTorch's Core ML backend under Library/Caches/executorchcoreml/ (ETCoreMLStrings.mm,
    ETCoreMLModelCache.h): `models/<id>.mlmodelc` assets (the asset store's or the model cache's),
    `models/<id>.accessed` LRU clocks, `staging/<UUID>/` and `temp/<UUID>/` scratch."""
    area, name = parts[3], e.name
    if len(parts) != 5:
        return None
    if area == "models":
        if not is_dir and name.endswith(".accessed"):
            return None  # the model cache's LRU clock: part of the cache, not an asset
        asset_id = name.removesuffix(".mlmodelc")
        detail = {"backend": "coreml", "asset_id": asset_id}
        if m := _COMPUTE_UNITS.search(asset_id):
            detail["compute_units"] = m.group(1)
        return Artifact(EXECUTORCH_ASSET, e.path, is_dir, "ExecuTorch", detail=detail)
    if area in ("staging", "temp"):
        return Artifact(EXECUTORCH_SCRATCH, e.path, is_dir, "ExecuTorch", detail={"role": area})
    return None


def _classify_executorch_coreai(e: Entry, parts: list[str], is_dir: bool) -> Artifact | None:
    """ExecuTorch's Core AI backend under Library/Caches/executorch_coreai/ (its runtime README):
    `bookmarks/<key>.bookmark`, `staging/<key>/`, `locks/<key>.lock`, `.tmp-<UUID>` publications."""
    name = e.name
    if name.startswith(".tmp-"):
        return Artifact(EXECUTORCH_SCRATCH, e.path, is_dir, "ExecuTorch Core AI backend", detail={"role": "tmp"})
    if len(parts) != 5:
        return None
    area = parts[3]
    if area == "bookmarks" and not is_dir and name.endswith(".bookmark"):
        return Artifact(EXECUTORCH_ASSET, e.path, False, "ExecuTorch Core AI backend",
                        detail={"backend": "coreai", "role": "bookmark", "key": name.removesuffix(".bookmark")})
    if area == "staging" and is_dir:
        # Removed only with its key (the SDK entry, then staging, then the bookmark): never alone.
        return Artifact(EXECUTORCH_ASSET, e.path, True, "ExecuTorch Core AI backend",
                        detail={"backend": "coreai", "role": "staging", "key": name})
    if area == "locks":
        return None
    return Artifact(UNRECOGNISED, e.path, is_dir, detail={"reason": "unknown ExecuTorch Core AI layout"})


def _classify_tmp(e: Entry, parts: list[str], is_dir: bool) -> Artifact | None:
    """On-device compile output and scratch in tmp/ (producer tables in COREML-ON-DISK.md and
    FIELD-EVIDENCE.md)."""
    name = e.name
    if len(parts) >= 2 and parts[1] == "executorchcoreml":
        # Items in the trash folder (or its models/ folder), never the folders ExecuTorch recreates.
        if (len(parts) == 3 and parts[2] != "models") or (len(parts) == 4 and parts[2] == "models"):
            return Artifact(COMPILE_LEFTOVER, e.path, is_dir, "ExecuTorch", detail={"leftover": "trash"})
        return None
    if len(parts) >= 2 and parts[1] == MPSGRAPH_SCRATCH:
        if len(parts) != 3:
            return None
        if is_dir and (m := _MPSGRAPH.match(name)):
            return Artifact(MPSGRAPH_SCRATCH_KIND, e.path, True, "MPSGraph", detail={"pid": int(m.group(1))})
        return Artifact(UNRECOGNISED, e.path, is_dir, detail={"reason": "unknown MPSGraph scratch layout"})
    if len(parts) != 2:
        return None
    stem = name[: -len(".mlmodelc")] if name.endswith(".mlmodelc") else None
    if stem is not None and is_dir and (m := GUS.match(stem)):
        return Artifact(COMPILE_LEFTOVER, e.path, True, "TensorFlow Lite Core ML delegate",
                        detail={"leftover": "bundle", "pid": int(m.group(2))})
    if not is_dir and (m := GUS.match(name)):
        return Artifact(COMPILE_LEFTOVER, e.path, False, "TensorFlow Lite Core ML delegate",
                        detail={"leftover": "spec", "pid": int(m.group(2))})
    if m := _ORT.match(name):
        # onnxruntime-<GUS>.model.mlmodel (NN spec), onnxruntime-<GUS>/ (an ML package), or compiled output.
        leftover = "bundle" if name.endswith(".mlmodelc") else "package" if is_dir else "spec"
        return Artifact(COMPILE_LEFTOVER, e.path, is_dir, "ONNX Runtime Core ML EP",
                        detail={"leftover": leftover, "pid": int(m.group(1))})
    if (m := _TORCH_LEGACY.match(name)) and is_dir == (m.group(2) == ".mlmodelc"):
        leftover = {".mlmodelc": "bundle", ".version": "version"}.get(m.group(2) or "", "spec")
        return Artifact(COMPILE_LEFTOVER, e.path, is_dir, "PyTorch Core ML backend (legacy)",
                        detail={"leftover": leftover, "spec_sha256": m.group(1)})
    if is_dir and (m := _STEM_UUID.match(name)):
        return Artifact(COMPILE_LEFTOVER, e.path, True, "MLModel.compileModel(at:)",
                        detail={"leftover": "bundle", "stem": m.group(1)})
    if is_dir and (m := _LEGACY_PID.match(name)):
        return Artifact(COMPILE_LEFTOVER, e.path, True, "a per-process compile (model_<pid>_*)",
                        detail={"leftover": "bundle", "pid": int(m.group(1))})
    if is_dir and name.endswith(".mlmodelc"):
        return Artifact(COMPILE_LEFTOVER, e.path, True, "MLModel.compileModel(at:)", detail={"leftover": "bundle"})
    return None


def _is_bundle(a: Artifact, names: set[str]) -> bool:
    return a.is_dir and a.kind in (COMPILED_MODEL, COMPILE_LEFTOVER, EXECUTORCH_ASSET) and \
        (a.path.endswith(".mlmodelc") or "coremldata.bin" in names)


def _bundle_key(container: Container, a: Artifact, names: set[str]) -> str | None:
    """The hash-cache key of a compiled bundle's summary (None: not a bundle, or no key in this store):
    its identity, so the summary is read again when any of its files changed."""
    if not _is_bundle(a, names):
        return None
    return artifact_identity(container, a)


def artifact_identity(container: Container, a: Artifact) -> str | None:
    """What a model artifact is on disk, short of reading it: each file's path and cache key (device,
    inode, size, mtime_ns, ctime_ns), in walk order. An identity seen before means the same files,
    unchanged since, so what was read from them holds (a bundle's summary, the artifact's content
    digest). None when the store has no such keys (archives). Worked out once per artifact."""
    if a.identity is None:
        keys = container.hash_keys(a.members)
        # Pickled, not repr'd: 3x cheaper, and the same bytes for the same paths and numbers.
        a.identity = "" if keys is None else xxhash.xxh3_128_hexdigest(
            pickle.dumps((list(map(_PATH, a.members)), keys), 5))
    return a.identity or None


def _describe(container: Container, a: Artifact, names: set[str], key: str | None, known: dict,
              progress=None, model_cache=None) -> None:
    """Read what recognition needs to say what a bundle or source model is. `names`: the artifact's
    files, relative to it; `key`: its bundle key, and `known` the summaries cached under such keys."""
    if _is_bundle(a, names):
        if "coremldata.bin" not in names:
            a.notes.append("no coremldata.bin at the top: not a complete compiled bundle")
        cached = known.get(key) if key else None
        if cached is not None:  # the files read below are unchanged since they were last read
            summary, notes = cached
        else:
            summary, notes = _bundle_summary(container, a, names)
            if key:
                model_cache.put_bundle(key, summary, notes)
        a.notes.extend(notes)
        a.model = summary
        a.detail["bundle"] = True
    elif a.kind == SOURCE_MODEL and a.detail.get("format") == "aimodel":
        # main.hash is the SHA-256 of main.mlirb; Core AI's cache names the model's folder by it.
        if "main.hash" in names:
            a.detail["main_hash"] = _hash_text(container.read(f"{a.path}/main.hash", 1024))
        else:
            a.notes.append("main.hash missing: the package is incomplete")
        if "main.mlirb" not in names:
            a.notes.append("main.mlirb missing: the package is incomplete")
    elif a.kind == SOURCE_MODEL:
        # Only real source models are inspected (coremltools costs ~1 s to import); compile inputs in
        # tmp/ are grouped by content, which needs no parse.
        spec_path = a.path
        if a.is_dir:
            root, notes = models.mlpackage_root_model(
                container.read(f"{a.path}/Manifest.json") if "Manifest.json" in names else None)
            a.notes.extend(notes)
            spec_path = f"{a.path}/{root}" if root and root in names else None
        size = next((e.size for e in a.members if e.path == spec_path), 0) if spec_path else 0
        if spec_path and size > models.MAX_SPEC_BYTES:
            a.notes.append("source model not inspected: larger than 256 MB")
        elif spec_path:
            spec = next(e for e in a.members if e.path == spec_path)
            key = container.hash_key(spec) if model_cache is not None else None
            cached = model_cache.get_model(key) if key else None
            if cached is not None:  # read before, unchanged: coremltools is not imported at all
                a.model, notes = cached
                a.notes.extend(notes)
                return
            if progress and not models.coremltools_loaded():
                progress("loading coremltools to read a source model", 0)
            data = container.read(spec_path, models.MAX_SPEC_BYTES)
            if data is not None:
                a.model, notes = models.inspect_source_spec(data)
                a.notes.extend(notes)
                if key:
                    model_cache.put_model(key, a.model, notes)
    elif a.kind in (SPECIALIZATION, SPECIALIZATION_PARTIAL, COREAI_SPECIALIZATION):
        # The inner names carry the function, input shape and compute path (main_480x272/main_ane).
        a.detail["layout"] = sorted(a.layout)
        if a.kind == SPECIALIZATION:
            a.detail["contents"] = _entry_contents(a.layout) if a.layout or not a.detail.get("interrupted_writes") \
                else "interrupted"
            if a.detail["contents"] == "empty":
                a.notes.append("no bytes: folders emptied by a purge (APFS keeps them); not corruption")


def _bundle_summary(container: Container, a: Artifact, names: set[str]) -> tuple[dict, list[str]]:
    summary, notes = models.summarize_metadata(
        container.read(f"{a.path}/metadata.json") if "metadata.json" in names else None)
    if "analytics/coremldata.bin" in names and (h := models.net_hash(container.read(f"{a.path}/analytics/coremldata.bin"))):
        summary["net_hash"] = h
    if "model.mil" in names:
        summary.update(models.mil_build_info(container.read(f"{a.path}/model.mil", 4096)))
        summary.setdefault("type", "mlprogram")
    elif "model.espresso.net" in names:
        summary.setdefault("type", "neuralnetwork")
    if any(n.startswith("model0/") for n in names):
        summary.setdefault("type", "pipeline")
    return summary, notes


def _entry_contents(names: set[str]) -> str:
    """bundle (a specialization of its own), pointer (model.milhash, .e5, model.anehash,
    universal.bundle: it points at one held elsewhere), or empty (emptied by a purge); an entry
    holding only an interrupted write is `interrupted` (set by the caller)."""
    if not names:
        return "empty"
    tops = {n.split("/", 1)[0] for n in names}
    if all(t in _POINTER_FILES or t.endswith(".e5") for t in tops):
        return "pointer"
    return "bundle"


def _hash_text(data: bytes | None) -> str | None:
    """main.hash as lowercase hex: 32 raw bytes, or 64 hex digits as text."""
    if not data:
        return None
    text = data.strip()
    if len(text) == 64 and _HEX64.match(text.decode("ascii", "replace")):
        return text.decode("ascii").lower()
    return data.hex() if len(data) == 32 else None


def _read_indexes(container: Container, artifacts: list[Artifact]) -> dict[str, set[str] | None]:
    """Keys of the ExecuTorch asset store's index (`MODEL_ASSETS_STORE` in assets.db), if present."""
    if not any(a.kind == EXECUTORCH_ASSET and a.detail.get("backend") == "coreml" for a in artifacts):
        return {}
    import sqlite3

    data = container.read("Library/Application Support/executorchcoreml/assets.db", 256 * 1024**2)
    if not data or not data.startswith(b"SQLite format 3\x00"):
        container.notes.append("ExecuTorch assets.db missing or unreadable: orphaned assets cannot be told")
        return {"executorch": None}
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(data)
        keys = {row[0] for row in conn.execute("SELECT ENTRY_KEY FROM MODEL_ASSETS_STORE")}
    except sqlite3.DatabaseError:
        container.notes.append("ExecuTorch assets.db has no MODEL_ASSETS_STORE table: orphaned assets cannot be told")
        return {"executorch": None}
    finally:
        conn.close()
    return {"executorch": {str(k) for k in keys}}
