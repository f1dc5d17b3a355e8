"""Three views of every artifact: as Core ML sees it (path + metadata), by content, by model/config.

Hashing is the whole cost, so it is tiered: artifacts are grouped by structure (relative names and
sizes) first; only groups of two or more get a partial read (first and last 4 KiB of each file); only
groups still alike after that get a full xxh3-128 hash. A file is hashed at most once per run (memo
keyed by inode or path) and, in live folders, at most once across runs (the hash cache). One
exception to "hash only candidates": a compressed tar's regular files are hashed as its one index
pass inflates them (sources/tarpass.py says why); only the digests of candidates are used and counted.
"""

from __future__ import annotations

import mmap
import sys
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import xxhash

from mlcache_audit.hashcache import HashCache
from mlcache_audit.scan import MODEL_KINDS, Artifact, ScanResult, artifact_identity
from mlcache_audit.sources.base import Container, Entry, display_path
from mlcache_audit.workers import hash_threads

PARTIAL_BYTES = 4096
CHUNK = 1 << 20
DEFAULT_MAX_HASH_BYTES = 64 * 1024**3  # ~20 s of warm reads; a sparse 1 TB file must not take hours


@dataclass
class HashStats:
    files_hashed: int = 0
    bytes_hashed: int = 0
    partial_reads: int = 0
    cache_hits: int = 0


@dataclass
class RunHashes:
    """What one run has hashed, shared by every container it scans: nothing is hashed twice."""

    cache: HashCache | None = None
    full: dict[tuple, str] = field(default_factory=dict)
    partial: dict[tuple, str] = field(default_factory=dict)
    asked: set[tuple] = field(default_factory=set)  # keys already looked up in the cache this run
    hit: set[tuple] = field(default_factory=set)  # keys of the files whose digest the cache gave (stats)
    stats: HashStats = field(default_factory=HashStats)
    max_bytes: int = DEFAULT_MAX_HASH_BYTES  # bytes read in full for hashing, in the whole run
    over_budget: int = 0  # files left unhashed because of max_bytes

    keys: dict[str, tuple] = field(default_factory=dict)  # this container's keys by path (see key)

    def key(self, c: Container, e: Entry) -> tuple:
        """The cache key of a file of `c`, worked out once per file and container."""
        k = self.keys.get(e.path)
        if k is None:
            k = self.keys[e.path] = _key(c, e)
        return k

    def affordable(self, size: int) -> bool:
        """May a file of `size` bytes still be hashed in full? Past the budget, it is left unjudged."""
        if self.stats.bytes_hashed + size <= self.max_bytes:
            return True
        self.over_budget += 1
        return False


@dataclass
class Fingerprints:
    """Per artifact path: structure id, content hash (or why none was needed), model/config key."""

    structure: dict[str, str]
    content: dict[str, str]
    content_basis: dict[str, str]  # full | unique-structure | unique-partial | unreadable
    metadata: dict[str, str]
    model_key: dict[str, str]
    notes: list[str] = field(default_factory=list)  # this stage's own: what could not be hashed, and why


def metadata_identity(a: Artifact) -> str:
    """How Core ML tells models apart: path, size and modification time (not content)."""
    return xxhash.xxh3_64_hexdigest(f"{a.path}\0{a.bytes}\0{a.newest_mtime}".encode("utf-8", "surrogateescape"))


def structure_id(a: Artifact) -> str:
    """Relative names and sizes of the artifact's files, folded in tree order during the scan."""
    if a.structure is None:  # an artifact made outside a walk (tests)
        a.finish_structure()
    return a.structure


def model_key(a: Artifact) -> str | None:
    """What the model is, independent of bytes: type, class, inputs and outputs."""
    m = a.model
    if not m:
        return None
    parts = [m.get("type"), m.get("class_name"), m.get("spec_version"), m.get("inputs"), m.get("outputs")]
    return xxhash.xxh3_64_hexdigest(repr(parts).encode())


def fingerprint(scan: ScanResult, run: RunHashes, progress: Callable[[int], None] | None = None) -> Fingerprints:
    """Compute the three views; content hashes only for artifacts that might be copies of another."""
    c = scan.container
    run.keys = {}  # keys by path hold for one container only
    candidates = [a for a in scan.artifacts if a.kind in MODEL_KINDS and a.members]
    fp = Fingerprints({}, {}, {}, {}, {}, [])
    for a in scan.artifacts:
        fp.metadata[a.path] = metadata_identity(a)
        fp.structure[a.path] = structure_id(a)
        if (k := model_key(a)) is not None:
            fp.model_key[a.path] = k
    groups: dict[str, list[Artifact]] = defaultdict(list)
    for a in candidates:
        groups[fp.structure[a.path]].append(a)
    still: list[list[Artifact]] = []
    partial_ok = c.store.kind == "folder"  # a tail read in a compressed archive costs a full read
    known = _known_digests(c, [a for group in groups.values() if len(group) > 1 for a in group], run)
    for group in groups.values():
        if len(group) < 2:
            for a in group:
                fp.content_basis[a.path] = "unique-structure"
            continue
        if all(a.path in known for a in group):  # unchanged since their digests were worked out
            for a in group:
                fp.content[a.path] = known[a.path]
                fp.content_basis[a.path] = "full"
            continue
        if not partial_ok or _all_cached(c, group, run):
            still.append(group)
            continue
        by_partial: dict[str, list[Artifact]] = defaultdict(list)
        for a in group:
            by_partial[_artifact_partial(c, a, run)].append(a)
        for sub in by_partial.values():
            if len(sub) < 2:
                fp.content_basis[sub[0].path] = "unique-partial"
            else:
                still.append(sub)
    wanted = [e for group in still for a in group for e in a.members]
    _hash_full(c, wanted, run, progress, fp.notes)
    for group in still:
        for a in group:
            digest = _artifact_digest(c, a, run)
            if digest is None:
                fp.content_basis[a.path] = "not-hashed" if run.over_budget else "unreadable"
            else:
                fp.content[a.path] = digest
                fp.content_basis[a.path] = "full"
                if run.cache is not None and (identity := artifact_identity(c, a)):
                    run.cache.put_artifact(identity, digest)
    if run.cache is not None:
        run.cache.flush()
    return fp


def _key(c: Container, e: Entry) -> tuple:
    return c.hash_key(e) or ("path", c.label, e.path)


def _from_cache(keys, run: RunHashes) -> None:
    """Load cached full digests for keys not yet known; each key is looked up once per run."""
    if run.cache is None:
        return
    ask = [k for k in keys if k not in run.full and k not in run.asked and k[0] != "path"]
    if ask:
        run.asked.update(ask)
        hits = run.cache.get_many(ask)
        _count_hits(hits.keys(), run)
        run.full.update(hits)


def _count_hits(keys, run: RunHashes) -> None:
    """Count files whose digest came from the cache, each once per run."""
    new = set(keys) - run.hit
    run.hit |= new
    run.stats.cache_hits += len(new)


def _known_digests(c: Container, artifacts: list[Artifact], run: RunHashes) -> dict[str, str]:
    """Content digests, by path, of the artifacts whose identity the cache knows: their files are
    unchanged since the digest was worked out from them, so none is looked up or read again."""
    if run.cache is None or not artifacts:
        return {}
    identities = {a.path: i for a in artifacts if (i := artifact_identity(c, a))}
    digests = run.cache.get_artifacts(list(set(identities.values())))
    known = {p: digests[i] for p, i in identities.items() if i in digests}
    if known:
        keys = set()
        for a in artifacts:
            if a.path in known:
                keys.update(c.hash_keys(a.members))  # known: so it has keys
        _count_hits(keys.difference(run.full), run)
    return known


def _all_cached(c: Container, group: list[Artifact], run: RunHashes) -> bool:
    """True when every file's full digest is already known: the partial tier would be wasted reads."""
    keys = [run.key(c, e) for a in group for e in a.members]
    _from_cache(keys, run)
    return all(k in run.full for k in keys)


def _artifact_partial(c: Container, a: Artifact, run: RunHashes) -> str:
    """Head-and-tail signature of an artifact. Every artifact of a group must be signed the same way,
    so large files always contribute their head/tail digest (even when a full digest is cached) and
    small files their full digest (reading them whole costs no more than head and tail)."""

    def small(e: Entry) -> bool:
        return e.size <= 2 * PARTIAL_BYTES

    todo = [e for e in a.members
            if (small(e) and run.key(c, e) not in run.full) or (not small(e) and run.key(c, e) not in run.partial)]
    by_path = {e.path: e for e in todo}
    for path, fh in c.stream([e.path for e in todo]):
        e = by_path[path]
        key = run.key(c, e)
        if fh is None:
            run.partial[key] = "unreadable"
            continue
        try:
            if small(e):
                data = fh.read()
                run.full[key] = _store_full(run, key, xxhash.xxh3_128_hexdigest(data), len(data))
            else:
                head = fh.read(PARTIAL_BYTES)
                fh.seek(-PARTIAL_BYTES, 2)
                run.partial[key] = xxhash.xxh3_128_hexdigest(head + fh.read(PARTIAL_BYTES))
                run.stats.partial_reads += 1
        except _read_errors():
            run.partial[key] = "unreadable"
    h = xxhash.xxh3_128()
    for e in sorted(a.members, key=lambda m: a.rel(m)):
        key = run.key(c, e)
        part = run.full.get(key) if small(e) else run.partial.get(key)
        h.update(f"{a.rel(e)}\0{e.size}\0{part}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _store_full(run: RunHashes, key: tuple, digest: str, size: int) -> str:
    run.stats.files_hashed += 1
    run.stats.bytes_hashed += size
    if run.cache is not None and key[0] != "path":
        run.cache.put(key, digest)
    return digest


def _hash_full(c: Container, entries: list[Entry], run: RunHashes, progress, notes: list[str]) -> None:
    todo: dict[str, Entry] = {}
    for e in entries:
        key = run.key(c, e)
        if key not in run.full and e.path not in todo:
            todo[e.path] = e
    _from_cache([run.key(c, e) for e in todo.values()], run)
    wanted = [p for p, e in todo.items() if run.key(c, e) not in run.full]
    before = run.over_budget
    wanted = [p for p in wanted if run.affordable(todo[p].size)]
    if run.over_budget > before:
        notes.append(f"{run.over_budget - before} file(s) not hashed: the run reached --max-hash-bytes "
                       f"({run.max_bytes} bytes); copies among them are not judged")
    unique: dict[tuple, str] = {}
    for p in wanted:  # a hardlink to a file already in this batch is hashed once
        unique.setdefault(run.key(c, todo[p]), p)
    paths = list(unique.values())
    threads = HASH_THREADS or hash_threads()
    if c.store.kind == "folder" and len(paths) > 1 and threads > 1:
        # Folders: files are opened on their own, so two threads read and hash at once (xxhash and
        # read release the GIL); archives stream in their own order on one thread.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            results = pool.map(lambda p: _hash_one(c, p), paths)
            for path, result in zip(paths, results, strict=True):
                _keep(c, todo[path], path, result, run, progress, notes)
    else:
        rest = []
        for path in paths:  # a compressed tar's members were hashed as its index pass went by them
            if (passed := c.passed_digest(path)) is not None:
                _keep(c, todo[path], path, passed, run, progress, notes)
            else:
                rest.append(path)
        for path, fh in c.stream(rest):
            _keep(c, todo[path], path, _hash_handle(fh), run, progress, notes)


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading a member may raise: an archive's errors when one was opened (the archive module
    is imported only then), else a folder's."""
    archive = sys.modules.get("mlcache_audit.sources.archive")
    return archive.READ_ERRORS if archive is not None else (OSError, EOFError, RuntimeError)


HASH_THREADS: int | None = None  # None: the parallelism budget's share (workers.hash_threads)
_buffers = threading.local()


def _buffer() -> mmap.mmap:
    """One reused, page-aligned read buffer per thread (no fresh bytes object per read)."""
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = mmap.mmap(-1, CHUNK)
    return buf


def _hash_one(c: Container, path: str) -> tuple[str, int] | str | None:
    for _, fh in c.stream([path]):
        return _hash_handle(fh)
    return None


def _hash_handle(fh) -> tuple[str, int] | str | None:
    """(digest, bytes) of an open file, an error text, or None when it could not be opened."""
    if fh is None:
        return None
    h = xxhash.xxh3_128()
    n = 0
    buf = _buffer()
    view = memoryview(buf)
    try:
        readinto = getattr(fh, "readinto", None)
        while True:
            if readinto is not None:
                got = readinto(buf)
                if not got:
                    break
                h.update(view[:got])
            else:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                got = len(chunk)
                h.update(chunk)
            n += got
    except _read_errors() as exc:
        return str(exc)
    finally:
        view.release()
    return h.hexdigest(), n


def _keep(c: Container, e: Entry, path: str, result, run: RunHashes, progress, notes: list[str]) -> None:
    key = run.key(c, e)
    if result is None:
        notes.append(f"cannot read {display_path(path)}: not hashed")
    elif isinstance(result, str):
        notes.append(f"cannot read {display_path(path)}: {result}")
    else:
        digest, n = result
        run.full[key] = _store_full(run, key, digest, n)
        if progress:
            progress(n)


def _artifact_digest(c: Container, a: Artifact, run: RunHashes) -> str | None:
    lines = []
    full = run.full
    for e in sorted(a.members, key=a.rel):
        rel = a.rel(e)
        digest = full.get(run.key(c, e))
        if digest is None:
            return None
        lines.append(f"{rel}\0{e.size}\0{digest}\n")
    return xxhash.xxh3_128_hexdigest("".join(lines).encode("utf-8", "surrogateescape"))  # as line by line
