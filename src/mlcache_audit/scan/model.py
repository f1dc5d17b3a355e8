"""The scan's data types: an artifact, a container's scan result, a walked part, the areas."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING

from mlcache_audit.domain import (
    COREAI_SPECIALIZATION,
    KINDS,
    SPECIALIZATION,
    SPECIALIZATION_PARTIAL,
)
from mlcache_audit.sources.base import Container, Entry
from mlcache_audit.vocab import AREAS

UNKEPT_NS = 2_000_000_000  # an mtime this close to its ctime was (re)written then, as by a copy without times

if TYPE_CHECKING:  # state.py is imported only when a plan records states (clean)
    from mlcache_audit.state import StateHasher


CACHE_KINDS = frozenset((SPECIALIZATION, SPECIALIZATION_PARTIAL, COREAI_SPECIALIZATION))
NO_LAYOUT: frozenset[str] = frozenset()  # every other artifact's layout (an empty set is 216 bytes)
LAYOUT_MEMO_NAMES = 256  # real entries hold a few to tens of layout names


def layout_memo(fn):
    """`fn(layout)` worked out once per layout (a cache's entries repeat a few layouts thousands of
    times; callers share its one result). At most 1,024 layouts of at most LAYOUT_MEMO_NAMES names
    are kept, so a long run (watch) over hostile entries of many names cannot grow the memo; a
    larger layout is worked out each time. `.memo` is the bounded cache."""
    memo = lru_cache(maxsize=1024)(fn)

    def of(layout):
        return memo(layout) if len(layout) <= LAYOUT_MEMO_NAMES else fn(layout)

    of.memo = memo
    of.__doc__ = fn.__doc__
    return of


@layout_memo
def _first_of(layout: frozenset[str]) -> frozenset[str]:
    return layout


def shared_layout(names: set[str]) -> frozenset[str]:
    """An entry's layout names as the first frozenset of them seen (bounded by layout_memo). A
    cache's entries repeat a few layouts thousands of times, and each held a set of its own from
    the walk to describe: 2 KB an entry of 40 files, 3 MB more at the peak of a 1,500-entry scan."""
    return _first_of(frozenset(names)) if names else NO_LAYOUT


def disk_freed(artifacts) -> int:
    """Allocated bytes that removing all of `artifacts` gives back: every file with one link, and a
    file with several links only when all of its links are among them (counted once)."""
    total = 0
    seen: dict[tuple, list] = {}
    for a in artifacts:
        total += a.private_disk
        for key, (links, blocks, here) in a.linked.items():
            entry = seen.setdefault(key, [links, blocks, 0])
            entry[2] += here
    return total + sum(blocks for links, blocks, here in seen.values() if here >= links)


def area_of(path: str) -> str:
    """The standard container area a path lies in (`other` for anything outside them)."""
    for area in AREAS:
        if path == area or path.startswith(area + "/"):
            return area
    return "other"


@dataclass(slots=True)
class Artifact:
    """One Core ML thing on disk: a bundle, a cache entry, a leftover file."""

    kind: str
    path: str
    is_dir: bool
    producer: str | None = None
    bytes: int = 0
    disk_bytes: int = 0  # allocated bytes (st_blocks), each inode once; meaningful only where the store has blocks
    private_disk: int = 0  # allocated bytes of its files with one link: what removing it frees on disk for sure
    linked: dict = field(default_factory=dict)  # (dev, inode) -> (links, allocated, links here) of files with several
    files: int = 0
    oldest_mtime: float | None = None
    newest_mtime: float | None = None
    unkept_times: int = 0  # files whose mtime lies within 2 s of their ctime (as a copy without times leaves them)
    model: dict = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    members: list[Entry] = field(default_factory=list)  # the files counted in `bytes`
    top: Entry | None = None  # the entry the artifact is (its folder, or its one file)
    # Folded in during the walk, so that cache entries (most files of a container) keep no per-file
    # record: the plan's state of everything below, the structure id, and the inner layout.
    state: StateHasher | None = None
    structure: str | None = None  # an xxh3_64 digest over (relative name, size) of its files, in tree order
    hasher: object = None  # the running xxh3_64 of `structure` while the walk passes (None once finished)
    layout: set[str] | frozenset[str] = NO_LAYOUT  # a cache entry's set while walked (start_artifact), then shared
    identity: str | None = None  # see artifact_identity ("" when the store has no such keys)

    def finish_structure(self) -> None:
        """The walk is done with this artifact: its structure id is final (a string, which crosses
        processes; the running hasher does not), and so is its plan state. Each walk calls this as it
        leaves the artifact's folder (or right after its one file): a running xxh3 state is about 700
        bytes of C memory, and 15,000 cache entries held two each until the scan's end (21 MB)."""
        if self.hasher is not None:
            self.structure = self.hasher.hexdigest()
            self.hasher = None
        if self.state is not None and self.top is not None:
            self.state.close(self.top)
        if type(self.layout) is set:  # its names are final too: one frozenset shared by every equal layout
            self.layout = shared_layout(self.layout)

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
    artifacts: list[Artifact]  # in tree order (a folder, then its subtree; siblings by name)
    total_bytes: int
    file_count: int
    other_bytes_by_area: dict[str, int]
    index_keys: dict  # ExecuTorch's index: {"executorch": its keys (None: unreadable), "executorch_db": present}
    days: dict[int, int] = field(default_factory=dict)  # ML bytes by UTC day of modification
    notes: list[str] = field(default_factory=list)  # this stage's own: what the walk and the reads could not
    total_disk_bytes: int | None = None  # allocated bytes; None where the store has no blocks (archives, backups)

    def _by_kind(self, figure: str) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for a in self.artifacts:
            out[a.kind] += getattr(a, figure)
        return {k: out[k] for k in KINDS if k in out}

    @property
    def bytes_by_kind(self) -> dict[str, int]:
        return self._by_kind("bytes")

    @property
    def disk_bytes_by_kind(self) -> dict[str, int]:
        return self._by_kind("disk_bytes")

    @property
    def coreml_bytes(self) -> int:
        return sum(a.bytes for a in self.artifacts)

    @property
    def coreml_disk_bytes(self) -> int:
        return sum(a.disk_bytes for a in self.artifacts)

    def timeline(self) -> list[tuple[str, int]]:
        """ML cache bytes added per UTC day, from file modification times."""
        return [(datetime.fromtimestamp(d * 86400, timezone.utc).date().isoformat(), n)
                for d, n in sorted(self.days.items())]


@dataclass
class Part:
    """What walking one part of a container found: its artifacts and its byte accounting."""

    artifacts: list[Artifact]
    total: int = 0
    total_disk: int = 0
    files: int = 0
    other: dict[str, int] = field(default_factory=dict)
    days: dict[int, int] = field(default_factory=dict)
    links: dict[tuple, int] = field(default_factory=dict)  # (dev, inode) -> size of hardlinked files counted
    notes: list[str] = field(default_factory=list)
