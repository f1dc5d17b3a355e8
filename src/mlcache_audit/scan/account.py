"""Accounting as the walk passes: a file's counted size (a hardlink once), an artifact's members,
sums and state, and the per-entry walk of any store's entries (`walk_entries`)."""

from __future__ import annotations

from collections import defaultdict

import xxhash

from mlcache_audit.domain import (
    MODEL_KINDS,
    SPECIALIZATION,
)
from mlcache_audit.gcpause import collector_paused
from mlcache_audit.scan.classify import HEX_ANY, classify_entry
from mlcache_audit.scan.model import CACHE_KINDS, UNKEPT_NS, Artifact, Part, area_of
from mlcache_audit.sources.base import FILE, Entry


def counted_size(e: Entry, seen: set[tuple], links: dict[tuple, int] | None = None) -> int:
    """Size of a file, counting a hardlinked inode once per container (as `du` does)."""
    if e.nlink > 1 and e.inode is not None:
        key = (e.dev, e.inode)
        if key in seen:
            return 0
        seen.add(key)
        if links is not None:
            links[key] = e.size
    return e.size


def start_artifact(a: Artifact, top: Entry, plan_state: bool = True) -> None:
    a.top = top
    if plan_state:
        from mlcache_audit.state import StateHasher

        a.state = StateHasher(top.mtime_ns)
    else:
        a.state = None
    a.hasher = xxhash.xxh3_64()
    if a.kind in CACHE_KINDS:
        a.layout = set()


def add_member(a: Artifact, e: Entry, size: int, days: dict[int, int]) -> None:
    """Count a file into an artifact; `size` is 0 for a second link to an inode already counted.
    Only models keep their files (their contents are compared later); a cache entry's files are
    folded into its structure id and layout here and then dropped."""
    rel = e.path[len(a.path) + 1:] if a.is_dir else ""
    kind = a.kind
    if kind in MODEL_KINDS:
        a.members.append(e)
    elif kind in CACHE_KINDS:
        a.layout.add(HEX_ANY.sub("<hex>", rel))
    a.hasher.update(f"{rel}\0{e.size}\n".encode("utf-8", "surrogateescape"))
    mtime = e.mtime
    if mtime is not None:
        days[int(mtime // 86400)] += e.size
    a.bytes += size
    a.disk_bytes += (e.disk or 0) if size else 0  # a second link to a counted inode adds no blocks
    if e.nlink > 1 and e.inode is not None:
        links, blocks, here = a.linked.get((e.dev, e.inode), (e.nlink, e.disk or 0, 0))
        a.linked[(e.dev, e.inode)] = (links, blocks, here + 1)
    else:
        a.private_disk += e.disk or 0
    a.files += 1
    if e.mtime_ns is not None and e.ctime_ns is not None and -UNKEPT_NS <= e.mtime_ns - e.ctime_ns <= UNKEPT_NS:
        a.unkept_times += 1
    if mtime is not None:
        if a.oldest_mtime is None or mtime < a.oldest_mtime:
            a.oldest_mtime = mtime
        if a.newest_mtime is None or mtime > a.newest_mtime:
            a.newest_mtime = mtime


def walk_entries(entries, plan_state: bool, notes: list[str] | None = None) -> Part:
    """Classify and account for a stream of entries in tree order (the whole container, or a part)."""
    seen_inodes: set[tuple] = set()
    part = Part([], notes=notes if notes is not None else [])
    stack: list[Artifact] = []
    other: dict[str, int] = defaultdict(int)
    days: dict[int, int] = defaultdict(int)
    total = files = total_disk = 0
    with collector_paused():
        for e in entries:
            while stack and not e.path.startswith(stack[-1].prefix):
                stack.pop().finish_structure()  # everything below it has passed
            # Only a specialization entry can hold another artifact; inside anything else, nothing to classify.
            new = classify_entry(e, stack[-1]) if stack and stack[-1].kind == SPECIALIZATION else \
                None if stack else classify_entry(e, None)
            if plan_state:  # everything below an artifact is part of its state (nested ones too), for a plan
                for outer in stack:
                    outer.state.add(e.path[len(outer.path) + 1:], e.type, e.size, e.mtime_ns, e.target, e.nlink)
            if new is not None:
                start_artifact(new, e, plan_state)
                if stack:
                    stack[-1].detail["interrupted_writes"] = stack[-1].detail.get("interrupted_writes", 0) + 1
                part.artifacts.append(new)
                if new.is_dir:
                    stack.append(new)
                else:
                    size = counted_size(e, seen_inodes, part.links)
                    add_member(new, e, size, days)
                    new.finish_structure()
                    total += size
                    total_disk += (e.disk or 0) if size else 0
                    files += 1
                continue
            if e.type != FILE:
                continue
            files += 1
            size = counted_size(e, seen_inodes, part.links)
            total += size
            total_disk += (e.disk or 0) if size else 0
            if stack:
                add_member(stack[-1], e, size, days)
            else:
                other[area_of(e.path)] += size
        for a in stack:
            a.finish_structure()
    part.total, part.files, part.other, part.days, part.total_disk = total, files, dict(other), dict(days), total_disk
    return part
