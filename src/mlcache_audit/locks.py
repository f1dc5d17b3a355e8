"""One run acts on a container at a time: an OS file lock per container identity, in the state
folder (never inside a container), taken by `clean --apply`, `apply` and `restore`.

The lock is `flock(LOCK_EX | LOCK_NB)` on `<state>/locks/<key>.lock`: the OS drops it when the holder
exits or is killed, so a crash never leaves a container locked. The file holds the holder's pid and
start time for the message the second run prints; it is never deleted (deleting a lock file lets two
runs lock two different files of one name).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from mlcache_audit import fsio
from mlcache_audit.docfields import Fields, load_json
from mlcache_audit.errors import ContainerBusy, DocumentInvalid, StateNotWritable
from mlcache_audit.identity import ContainerKey


def state_folder_ready(state_dir: Path, sub: str) -> Path:
    """`state_dir/sub`, made if missing and proven writable; else StateNotWritable (exit 2), raised
    before anything is acted on."""
    folder = state_dir / sub
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | fsio.NOFOLLOW, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StateNotWritable(f"mlcache's state folder {fsio.readable(str(state_dir))} cannot be written "
                               f"({exc.strerror or exc}); nothing was done",
                               hint="set MLCACHE_STATE_DIR to a folder you can write") from None
    return folder


@contextlib.contextmanager
def holding(state_dir: Path, keys: list[ContainerKey], what: str) -> Iterator[None]:
    """Hold the lock of every container in `keys` (in key order) for the block; if another run holds
    one, raise ContainerBusy naming its pid and start time before anything is done."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks on this platform: nothing to hold (mlcache runs on macOS and Linux)
        yield
        return
    folder = state_folder_ready(state_dir, "locks")
    held: list[int] = []
    try:
        for key in sorted(set(keys)):
            path = folder / (hashlib.sha1(key.text.encode("utf-8", "surrogateescape")).hexdigest()[:20] + ".lock")
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | fsio.NOFOLLOW, 0o600)
            except OSError as exc:
                raise StateNotWritable(f"cannot make the lock file {fsio.readable(str(path))} ({exc.strerror or exc}); "
                                       "nothing was done", hint="set MLCACHE_STATE_DIR to a folder you can write") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder(fd)
                os.close(fd)
                raise ContainerBusy(f"another mlcache run ({holder}) is acting on this container; nothing was done",
                                    hint="wait for it to finish, then run again") from None
            held.append(fd)
            record = json.dumps({"pid": os.getpid(), "started": datetime.now(timezone.utc).isoformat(),
                                 "what": what, "container": key.text}).encode()
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, record, 0)
            except OSError:
                pass  # the lock holds without its note; a second run then says "pid unknown"
        yield
    finally:
        for fd in held:
            os.close(fd)  # closing the descriptor releases the lock


def _holder(fd: int) -> str:
    """Who holds the lock, from the note it wrote, read as any document is (docfields: anyone may have
    edited a file of the state folder): "pid unknown" when the note is missing or not one mlcache
    writes, and the start time made printable, so the message stays one line."""
    f = Fields("the lock's note")
    try:
        doc = f.obj(load_json(os.pread(fd, 4096, 0) or b"{}", "the lock's note"), "the note")
        pid = f.integer(doc, "pid", "the note", low=1, high=2**31 - 1)
        started = f.text(doc, "started", "the note")[:19].replace("T", " ")
    except (OSError, DocumentInvalid):
        return "pid unknown"
    return f"pid {pid}, started {fsio.printable(started)} UTC"
