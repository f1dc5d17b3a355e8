"""The scan's walk of a folder: fd-relative and no-follow like `fsio.walk_at`, classifying as it goes.

`scan._walk_part` takes any store's entries one `Entry` at a time and finds which artifact each
belongs to by comparing path prefixes. On a live folder of 300,000 files that costs more than the
system calls. This walk knows, for each folder it opens, which artifact the folder lies in (or which
area, outside every artifact), so the common files go straight into their sums:

- a plain file inside an artifact is counted into it in place: a cache entry's (a specialization,
  most files of a container) is folded into its sums, structure id and layout without an `Entry`;
  a model's is kept as an `Entry` built here, for its contents to be compared;
- a plain file in a quiet folder (one where only a `*.mlmodel` can start an artifact, as
  `scan.quiet_folder` says) is added to its area's bytes;
- everything else (folders, links, special files, odd names, hardlinked files, the files of the
  caches' and tmp/'s own levels) becomes an `Entry` and takes exactly the steps `walk_entries` takes.

Each folder's names are handled in one inner loop up to its next subfolder; a cache entry's
structure lines are hashed a folder's run at a time (in tree order: the hash is the same) and its
layout names are shared strings, so a worker of a split walk sends back little.

Same order (a folder, then its subtree; siblings by name), same notes, same results as
`walk_entries(store.walk(...))`, plan states included: tests/test_folderwalk.py compares the two on
every fixture, the hostile corpus and random trees. Used for every whole folder, in one process or
in each worker of a split walk (`FolderWalk` takes several folders of one parent). An artifact's
running hashes (its structure id, its plan state) are closed as the walk leaves its folder.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from collections.abc import Callable

from mlcache_audit import fsio
from mlcache_audit.domain import MODEL_KINDS, SPECIALIZATION
from mlcache_audit.gcpause import collector_paused
from mlcache_audit.scan.account import add_member, counted_size, start_artifact
from mlcache_audit.scan.classify import (
    HEX_ANY,
    any_may_start,
    classify_entry,
    file_may_start,
    nests,
    quiet_folder,
)
from mlcache_audit.scan.model import CACHE_KINDS, UNKEPT_NS, Artifact, Part, area_of
from mlcache_audit.sources.base import DIR, FILE, Entry
from mlcache_audit.sources.folder import FolderStore, walk_notes

_MODEL_KINDS = frozenset(MODEL_KINDS)
_S_ISREG = stat.S_ISREG
_S_ISDIR = stat.S_ISDIR
_S_ISLNK = stat.S_ISLNK


_INF = float("inf")


def _settle(art: Artifact | None, area: str | None, other: dict[str, int], nbytes: int, nfiles: int, blocks: int,
            unkept: int, lo: float, hi: float, total: int, files: int, total_disk: int) -> tuple[int, int, int]:
    """A run of plain files of one folder, summed by the inner loop, into their artifact (with
    their oldest and newest mtime) or, outside every artifact, their area; the walk's new totals."""
    disk = blocks * 512
    if art is None:
        other[area] += nbytes
    else:
        art.bytes += nbytes
        art.files += nfiles
        art.disk_bytes += disk
        art.private_disk += disk  # one link each
        art.unkept_times += unkept
        if art.oldest_mtime is None or lo < art.oldest_mtime:
            art.oldest_mtime = lo
        if art.newest_mtime is None or hi > art.newest_mtime:
            art.newest_mtime = hi
    return total + nbytes, files + nfiles, total_disk + disk


class _Folder:
    """One open folder of the walk: its sorted names, where the next one is, and what it lies in."""

    __slots__ = ("fd", "rel", "names", "i", "plain", "art", "art_rel", "line_rel", "layout_rel", "area", "may_start",
                 "pending", "chain")

    def __init__(self, fd: int, rel: str, names: list[str], art: Artifact | None, art_rel: str,
                 chain: tuple = ()):
        self.fd, self.rel, self.names, self.i, self.art = fd, rel, names, 0, art
        # With plan states: every artifact this folder lies in, with the folder's path inside it ("" or
        # "sub/"), so each entry is folded into every enclosing artifact's state, as walk_entries does.
        self.chain = chain
        # Every name plain text (ASCII, printable): no name here needs a note (`/` is never in a name).
        joined = "/".join(names)
        self.plain = joined.isascii() and joined.isprintable()
        self.art_rel = art_rel  # this folder's path inside `art` ("" at its top)
        self.line_rel = f"{art_rel}/" if art_rel else ""
        # Inside a cache entry: the folder's part of each file's layout name, computed once.
        self.layout_rel = HEX_ANY.sub("<hex>", art_rel) + "/" if art is not None and art_rel else ""
        # Outside every artifact: the area of every plain file here, or None when each needs classify_entry.
        self.area = quiet_folder(rel) if art is None else None
        # In a quiet folder: may any file here start an artifact (else none needs file_may_start)?
        self.may_start = self.area is None or any_may_start(joined)
        self.pending: list[str] = []  # structure lines of `art` not yet hashed (fed in tree order)

    def flush(self) -> None:
        if self.pending:
            self.art.hasher.update("".join(self.pending).encode("utf-8", "surrogateescape"))
            self.pending.clear()


def walk_folder(store: FolderStore, rel: str, notes: list[str], prefix: str = "",
                progress: Callable[[int], None] | None = None, plan_state: bool = False) -> Part:
    """Everything below `rel` in `store` (paths starting with `prefix/` when given), classified and
    summed. `notes` hears what could not be read and what is odd; `progress(n)` of about every
    1,000 entries."""
    walk = FolderWalk(store, notes, progress, plan_state)
    top_fd = store.open_top(rel, notes)
    if top_fd is not None:
        with collector_paused():
            walk.folder(top_fd, rel, prefix)
    return walk.finish()


class FolderWalk:
    """One walk's sums, filled by one or more folders (a worker's share of a split walk: the
    folders of one parent, in order, so a hardlink between them is counted once, as one walk would)."""

    def __init__(self, store: FolderStore, notes: list[str], progress: Callable[[int], None] | None = None,
                 plan_state: bool = False):
        self.store, self.notes, self.progress, self.plan_state = store, notes, progress, plan_state
        self.part = Part([], notes=notes)
        self.seen: set[tuple] = set()
        self.other: dict[str, int] = defaultdict(int)
        self.days: dict[int, int] = defaultdict(int)
        # Layout names by folder layout and file name: cache entries repeat them, and one string per
        # name (not one per file) keeps the walk's memory and a worker's reply small.
        self.layouts: dict[str, dict[str, str]] = {}
        self.walked = 0

    def finish(self) -> Part:
        if self.progress is not None and self.walked:
            self.progress(self.walked)
        part = self.part
        part.other, part.days = dict(self.other), dict(self.days)
        return part

    def folder(self, top_fd: int | None, rel: str, prefix: str, top: Entry | None = None) -> None:
        """The folder open at `top_fd` (`rel` in the store, `prefix` from the container root) and
        everything below it; with `top`, the folder's own entry first (it may be an artifact, walked
        whole; with no `top_fd`, only that entry: the folder could not be opened). Closes `top_fd`."""
        part, seen, other, days, layouts, progress = self.part, self.seen, self.other, self.days, self.layouts, \
            self.progress
        outer = classify_entry(top, None) if top is not None else None
        if outer is not None:
            start_artifact(outer, top, self.plan_state)
            part.artifacts.append(outer)
        if top_fd is None:
            return
        make = self.store.entry_maker(rel, prefix, self.notes)
        on_error = walk_notes(self.notes)
        total, files, walked = part.total, part.files, self.walked
        total_disk = part.total_disk
        ostat, hex_sub, unkept = os.stat, HEX_ANY.sub, UNKEPT_NS
        states = self.plan_state
        stack = [_Folder(top_fd, prefix, fsio.sorted_names(top_fd, prefix, on_error), outer, "",
                         ((outer, ""),) if states and outer is not None and outer.is_dir else ())]
        try:
            while stack:
                f = stack[-1]
                fd, names, i, art, area, plain = f.fd, f.names, f.i, f.art, f.area, f.plain
                model = art is not None and art.kind in _MODEL_KINDS  # its files are kept, to be compared
                layout = art is not None and art.kind in CACHE_KINDS  # its files fold into its layout
                pend, line_rel, chain = f.pending.append, f.line_rel, f.chain
                forms = layouts.setdefault(f.layout_rel, {}) if layout else None
                lay_add = art.layout.add if layout else None
                keep = art.members.append if model else None
                may_start = f.may_start
                # This run's plain files are summed here and settled into `art` (or the area) as the run ends:
                # sums, minimum and maximum do not depend on order, and the per-entry steps read none of them.
                r_bytes = r_files = r_blocks = r_unkept = 0
                lo, hi = _INF, -_INF
                # The run's bytes by day, kept while its mtimes stay in one day [d_lo, d_hi) (as int(mtime //
                # 86400) says; a file outside it closes that day's bytes into `days` and opens its own).
                d_key, d_bytes, d_lo, d_hi = None, 0, 1.0, 0.0
                child = None
                start = i
                while i < len(names):  # this folder's names up to its next subfolder
                    name = names[i]
                    i += 1
                    try:
                        st = ostat(name, dir_fd=fd, follow_symlinks=False)
                    except OSError as exc:
                        on_error(f"{f.rel}/{name}" if f.rel else name, "cannot stat", exc.strerror)
                        start += 1  # not walked
                        continue
                    mode = st.st_mode
                    if _S_ISREG(mode) and st.st_nlink == 1 and (plain or (name.isascii() and name.isprintable())):
                        size = st.st_size
                        if art is not None:  # as add_member does
                            if chain:
                                for a, pre in chain:
                                    a.state.add(pre + name, FILE, size, st.st_mtime_ns, None, 1)
                            pend(f"{line_rel}{name}\0{size}\n")
                            if layout:
                                form = forms.get(name)
                                if form is None:
                                    form = forms[name] = f.layout_rel + hex_sub("<hex>", name)
                                lay_add(form)
                            elif model:
                                keep(Entry(f"{f.rel}/{name}", FILE, size, st.st_mtime, st.st_ino, st.st_dev, 1,
                                           st.st_mtime_ns, None, st.st_ctime_ns, name, st.st_blocks * 512))
                            mtime = st.st_mtime
                            if d_lo <= mtime < d_hi:
                                d_bytes += size
                            else:
                                if d_key is not None:
                                    days[d_key] += d_bytes
                                d_key, d_bytes = int(mtime // 86400), size
                                d_lo = d_key * 86400.0
                                d_hi = d_lo + 86400.0
                            r_bytes += size
                            r_files += 1
                            r_blocks += st.st_blocks
                            if -unkept <= st.st_mtime_ns - st.st_ctime_ns <= unkept:
                                r_unkept += 1
                            if mtime < lo:
                                lo = mtime
                            if mtime > hi:
                                hi = mtime
                            continue
                        if area is not None and not (may_start and file_may_start(name)):
                            r_bytes += size
                            r_files += 1
                            r_blocks += st.st_blocks
                            continue
                    # Everything else takes the per-entry steps of scan._walk_part.
                    path = f"{f.rel}/{name}" if f.rel else name
                    new = None
                    if art is not None and _S_ISDIR(mode) and (plain or (name.isascii() and name.isprintable())) \
                            and not nests(art, name):
                        # A plain folder inside the artifact starts nothing (classify_entry) and needs no
                        # Entry: its state line is the one walk_entries adds.
                        for a, pre in chain:
                            a.state.add(pre + name, DIR, 0, st.st_mtime_ns, None, st.st_nlink)
                    else:
                        target = None
                        if _S_ISLNK(mode):
                            try:
                                target = os.readlink(name, dir_fd=fd)
                            except OSError:
                                target = None
                        e = make(path, name, st, target)
                        for a, pre in chain:  # before the entry may start an artifact: as walk_entries does
                            a.state.add(pre + name, e.type, e.size, e.mtime_ns, e.target, e.nlink)
                        new = classify_entry(e, art) if art is None or art.kind == SPECIALIZATION else None
                        if new is not None:
                            start_artifact(new, e, states)
                            if art is not None:
                                art.detail["interrupted_writes"] = art.detail.get("interrupted_writes", 0) + 1
                            part.artifacts.append(new)
                            if not new.is_dir:
                                size = counted_size(e, seen, part.links)
                                add_member(new, e, size, days)
                                new.finish_structure()  # its one file: done with it
                                total += size
                                total_disk += (e.disk or 0) if size else 0
                                files += 1
                        elif e.type == FILE:
                            files += 1
                            size = counted_size(e, seen, part.links)
                            total += size
                            total_disk += (e.disk or 0) if size else 0
                            if art is not None:
                                f.flush()  # this file's line goes after the ones before it
                                add_member(art, e, size, days)
                            else:
                                other[area_of(path)] += size
                    if not _S_ISDIR(mode):
                        continue
                    sub = fsio.open_subfolder(fd, name, st, path, on_error)
                    if sub is None:
                        if new is not None and new.is_dir:
                            new.finish_structure()  # nothing below it can be walked: done with it
                        continue
                    if new is not None and new.is_dir:
                        inner, inner_rel = new, ""
                    elif art is not None:
                        inner, inner_rel = art, f"{f.art_rel}/{name}" if f.art_rel else name
                    else:
                        inner, inner_rel = None, ""
                    below = ()
                    if states:
                        below = tuple((a, f"{pre}{name}/") for a, pre in chain)
                        if new is not None and new.is_dir:
                            below += ((new, ""),)
                    child = _Folder(sub, path, fsio.sorted_names(sub, path, on_error), inner, inner_rel, below)
                    break
                if d_key is not None:
                    days[d_key] += d_bytes
                if r_files:
                    total, files, total_disk = _settle(art, area, other, r_bytes, r_files, r_blocks, r_unkept, lo, hi,
                                                       total, files, total_disk)
                f.i = i
                walked += i - start
                if progress is not None and walked >= 1000:
                    progress(walked)
                    walked = 0
                f.flush()  # a subfolder's lines come after this folder's files so far
                if child is not None:
                    stack.append(child)
                    continue
                stack.pop()
                if art is not None and not f.art_rel:  # the artifact's own folder, walked whole
                    art.finish_structure()
                if f.fd != top_fd:
                    os.close(f.fd)
        finally:
            for f in stack:
                if f.fd != top_fd:
                    os.close(f.fd)
            os.close(top_fd)
        self.walked = walked
        part.total, part.files, part.total_disk = total, files, total_disk
