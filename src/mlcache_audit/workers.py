"""Worker processes: one parallelism budget, and pools whose workers never outlive the run.

The budget: the CPUs this process may run on (`os.sched_getaffinity` where it exists, else
`os.cpu_count()`). Path workers (`--jobs`) times walk workers never exceed it (the parent not
counted): `--jobs` above it is clamped, and a path worker splits its own walk only with what is left
(`walk_workers`). Hashing threads take the same share.

The lifetime: every worker ignores SIGINT (Ctrl-C reaches the whole process group; the parent
alone answers it, ends every worker and exits 130, so no worker prints a traceback), and notices
its parent's death portably: it blocks on a pipe whose only write end the parent holds, and exits
when the read reaches EOF (`kill -9` of mlcache included). A worker started by spawn (macOS's
default for --jobs) cannot inherit the pipe; it watches `os.getppid()` instead, which changes when
the parent dies on every POSIX system.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

_share = {"walk": None}  # set in a path worker: the walk workers its share of the budget allows


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def walk_workers() -> int:
    """How many processes one walk may split into: at most 2 (measured: a third does not pay on
    2-vCPU machines' disks), within what the budget leaves this process."""
    share = _share["walk"]
    return min(2, cpus()) if share is None else share


def hash_threads() -> int:
    return max(1, min(2, walk_workers()))


def clamp_jobs(jobs: int) -> tuple[int, str | None]:
    """`--jobs` within the budget, and a note when it was lowered."""
    n = cpus()
    if jobs > n:
        return n, f"--jobs {jobs} lowered to {n}: this process may run on {n} CPU(s)"
    return jobs, None


@contextlib.contextmanager
def process_pool(n: int, *, context=None, share: int | None = None) -> Iterator:
    """A ProcessPoolExecutor of `n` workers that end with the run: on any exception in the block
    (KeyboardInterrupt included) every worker is terminated before it propagates. `share` is the
    walk budget each worker gets (default: what the budget leaves after `n` workers)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = context or multiprocessing.get_context()
    r, w = os.pipe()
    walk = share if share is not None else max(1, cpus() // max(1, n))
    pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_start_worker,
                               initargs=(ctx.get_start_method() == "fork", r, w, os.getpid(), walk))
    try:
        yield _Masked(pool)
    except BaseException:
        # Ending the workers closes the pipes the pool's own threads write to; the run is ending, so
        # a write there must not kill it with SIGPIPE (which main() sets to its default for `| head`).
        if hasattr(signal, "SIGPIPE") and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        pool.shutdown(wait=False, cancel_futures=True)
        end_children()
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        os.close(r)
        os.close(w)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT held back while workers are started (a fork or spawn happens inside submit): a worker
    then starts with it blocked and ignores it before unblocking, so a Ctrl-C that lands while it
    starts never reaches it; the parent gets it as soon as the submit returns."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = mask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


class _Masked:
    """The pool, with every submit (where workers are started) under `_sigint_blocked`."""

    def __init__(self, pool):
        self._pool = pool

    def submit(self, fn, *args, **kwargs):
        with _sigint_blocked():
            return self._pool.submit(fn, *args, **kwargs)

    def map(self, fn, *iterables, ahead: int | None = None):
        """Results in order. With `ahead`, at most that many tasks are submitted and not yet taken:
        a task is handed out as the caller takes a result, so results the caller has not asked for
        stay bounded (workers walking a home's 600 containers faster than this process reports
        them held every container's walk at once: peak memory grew with the home)."""
        if ahead is None:
            with _sigint_blocked():
                futures = [self._pool.submit(fn, *args) for args in zip(*iterables, strict=False)]
            return (f.result() for f in futures)
        return self._bounded(fn, zip(*iterables, strict=False), max(1, ahead))

    def _bounded(self, fn, jobs, ahead: int):
        import collections
        import itertools

        futures: collections.deque = collections.deque()

        def fill() -> None:
            with _sigint_blocked():
                futures.extend(self._pool.submit(fn, *args) for args in itertools.islice(jobs, ahead - len(futures)))

        def results():
            while futures:
                first = futures.popleft()
                fill()  # before waiting: the workers never idle while this process takes a result
                yield first.result()

        fill()  # now, as map does: the workers start before the first result is asked for
        return results()


def end_children(timeout: float = 3.0) -> None:
    """Terminate every worker process this process started, then kill what is left after `timeout`."""
    import multiprocessing

    children = multiprocessing.active_children()
    for p in children:
        with contextlib.suppress(OSError):
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in children:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            with contextlib.suppress(OSError):
                p.kill()
            p.join(1.0)


def _start_worker(forked: bool, r: int, w: int, parent: int, walk: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent while it started us
    _share["walk"] = walk
    if forked:
        os.close(w)  # only the parent holds the write end: its death is EOF here
        threading.Thread(target=_exit_at_eof, args=(r,), daemon=True).start()
    else:
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_at_eof(r: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(r, 1):
            pass
    os._exit(1)


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)
