"""The split walk: a large folder's top-level parts walked in worker processes (workers.py keeps
them within the parallelism budget and ends them with the run), the levels between in this one."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator

from mlcache_audit import fsio
from mlcache_audit.domain import (
    E5_CACHE,
)
from mlcache_audit.gcpause import collector_paused
from mlcache_audit.scan.account import walk_entries
from mlcache_audit.scan.classify import classify_entry
from mlcache_audit.scan.model import Part
from mlcache_audit.sources.base import Container, Entry, tree_key
from mlcache_audit.sources.base import join_rel as join

WALK_WORKERS: int | None = None  # None: the budget's (workers.walk_workers); tests set 1 or 2


def parallel_parts(container: Container) -> list[Part] | None:
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
    shallow, tasks = split_tasks(container, listed)
    if len(tasks) < 2 or not _worth_forking(store, container.root, tasks, listed):
        return None
    context = _fork_context()
    if context is None:
        return None

    groups = _groups(tasks, max(1, len(tasks) // (8 * n)))  # handed out as workers free up
    try:
        with workers.process_pool(n, context=context, share=1) as pool:
            parts = list(pool.map(walk_group, [store] * len(groups), [container.root] * len(groups),
                                  *zip(*groups, strict=True)))
    except (OSError, RuntimeError):  # no processes to be had: walk here instead
        return None
    notes: list[str] = []
    parts.insert(0, walk_entries(iter(shallow), False, notes))
    links: dict[tuple, int] = {}
    for part in parts:
        for key in part.links:
            if key in links:
                return None  # a file hardlinked across parts: one walk counts it once
            links[key] = 1
    return parts


def _fork_context():
    """multiprocessing's fork context (imported only when a walk is worth splitting), or None on a
    platform without fork."""
    import multiprocessing

    try:
        return multiprocessing.get_context("fork")
    except ValueError:
        return None


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


def build_folder(rel: str) -> bool:
    """Is `rel` a folder right inside a specialization cache (an OS build's, whose entries are artifacts)?"""
    return rel.rpartition("/")[0].rpartition("/")[2] == E5_CACHE


def split_tasks(container: Container, listed: dict[str, int] | None = None) -> tuple[list[Entry], list[str]]:
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
        return build_folder(rel) or (0 < dirs <= 4)  # a build folder's entries, or a chain of few folders

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
            # A build folder's entries: each folder is a task as the listing says (its worker stats it,
            # finds what it is and opens it no-follow, as walk_group does), with no stat or classify here.
            entries = build_folder(rel)
            for name, is_dir, _ in items:
                child = f"{rel}/{name}" if rel else name
                if entries and is_dir:
                    tasks.append(child)
                    continue
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                e = entry_from_stat(child, st)
                if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                    return [], []  # changed since the listing: one walk notes it
                if stat.S_ISDIR(st.st_mode) and classify_entry(e, None) is None:
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
    shallow.sort(key=lambda e: tree_key(e.path))
    return shallow, tasks


def walk_group(store, root: str, parent: str, names: list[str]) -> Part:
    """A worker's task: the folders `parent/name` (each its own entry first, then everything below
    it), in order, into one part."""
    from mlcache_audit.scan.walk import FolderWalk
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
        a.finish_structure()
    return part


def shrinking_tasks(items: list, n: int, least: int = 2, most: int = 12) -> list[list]:
    """`items` in order, cut into tasks of an eighth of what is left per worker pair (at least
    `least`, at most `most`): the workers start on large tasks and end on small ones, so at the end
    neither waits long for the other, and this process, which reports each container as its task
    comes back, has few left to report when the last one does. Tasks of one size (37 containers of
    a home's 600) left 74 to report after the walk: 0.056 s. `most` bounds what one result holds
    (with walking's look-ahead, what the walk holds at once does not grow with the home)."""
    tasks, i = [], 0
    while i < len(items):
        size = max(least, min(most, (len(items) - i) // (4 * n)))
        tasks.append(items[i:i + size])
        i += size
    return tasks


PARALLEL_MIN_CONTAINERS = 32  # a home's simulators: each too small to split, together worth two CPUs
LOOK_AHEAD = 2  # tasks a worker may have walked or queued ahead of this process's report, each


@contextlib.contextmanager
def walking(containers: list[Container], plan_state: bool) -> Iterator[Callable[[Container], list[Part] | None]]:
    """Many whole-folder containers (a home with its simulators' apps) walked in forked workers,
    a few containers to a task, each whole by one worker. One such container is too small to be
    worth splitting, and walked one after another they leave every CPU but one idle. Yields
    `parts_of(container)`: its walked parts, waiting for them (so this process works on the first
    containers while the workers walk the next), or None for one to walk here: each, when this
    cannot or should not be done (as parallel_parts). With `plan_state` (clean) each artifact's
    state comes back too, closed as the walk left the artifact (a Seen and its freed bytes: no
    running hash crosses processes). Measured on a home of 600 containers: 1.7 s in one process,
    1.15 s in workers. At most LOOK_AHEAD tasks a worker are handed out ahead of what this process
    has taken, so the walks waiting for their report stay bounded however large the home is."""
    from mlcache_audit import workers

    n = WALK_WORKERS if WALK_WORKERS is not None else workers.walk_workers()
    whole = [c for c in containers if c.is_whole_folder]
    context = _fork_context() if n >= 2 and len(whole) >= PARALLEL_MIN_CONTAINERS else None
    if context is None:
        yield lambda c: None
        return
    groups = shrinking_tasks(whole, n)  # handed out as workers free up
    with contextlib.ExitStack() as stack:  # an exception in the caller's loop ends every worker
        try:
            pool = stack.enter_context(workers.process_pool(n, context=context, share=1))
            results = pool.map(walk_wholes, [[(c.store, c.root) for c in g] for g in groups], [plan_state] * len(groups),
                               ahead=LOOK_AHEAD * n)
        except (OSError, RuntimeError):  # no processes to be had: each is walked here instead
            results = None
        done: dict[int, list[Part]] = {}
        pending = iter(groups)

        def parts_of(c: Container) -> list[Part] | None:
            while results is not None and c.is_whole_folder and id(c) not in done:
                group = next(pending, None)
                if group is None:
                    return None
                for member, part in zip(group, next(results), strict=True):
                    done[id(member)] = [part]
            return done.pop(id(c), None)

        yield parts_of


def walk_wholes(jobs: list[tuple], plan_state: bool = False) -> list[Part]:
    """A worker's task: each (store, root) walked whole, into a part of its own."""
    from mlcache_audit.scan.walk import walk_folder

    parts = []
    with collector_paused():  # for the whole task: re-enabled between containers, it scanned their parts again
        for store, root in jobs:
            part = walk_folder(store, root, [], plan_state=plan_state)
            for a in part.artifacts:  # hashers do not cross processes: send their digests
                a.finish_structure()
            parts.append(part)
    return parts
