"""The apply journal: an fsynced JSON-lines record of one container's run, so an interrupted run
(Ctrl-C, a crash, a full disk) is reported and finished by the next one. apply.py writes it and
acts on what it reads back; this module only writes and reads the file.

It lives in the state folder (`~/.local/state/mlcache`, `~/Library/Application Support/mlcache` on
macOS; MLCACHE_STATE_DIR moves it), never inside a container, one file per container root.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mlcache_audit import fsio
from mlcache_audit.docfields import load_json
from mlcache_audit.errors import DocumentInvalid
from mlcache_audit.vocab import Event

MAX_JOURNAL_BYTES = 256 * 1024**2


def default_state_dir() -> Path:
    """The state folder of this run (places.py)."""
    from mlcache_audit.places import current

    return current().state


class Journal:
    """One container's journal; removed when the run ends cleanly."""

    def __init__(self, state_dir: Path, root: str, key: str | None = None):
        """`key` names the container when several share a root (per-process clients); default the root."""
        self.root = root
        import hashlib

        name = hashlib.sha1((key or root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        self.path = state_dir / "journals" / (name + ".jsonl")
        self._fh = None

    def read_back(self) -> tuple[dict[str, dict], list[str]]:
        """(entries an earlier run began but did not record as ended, path -> merged record; notes).

        Records are checked as they are read: a torn last line (the run died writing it) is passed
        over, as is a line that is JSON but not a record. A body that cannot be read (a line before the
        last that is not JSON, nested too deep, over the size cap, not a regular file) is never acted
        on: the file is set aside beside itself with a note that names the entries it had renamed
        aside, so the person can look, and the run goes on."""
        try:
            raw = fsio.read_regular(str(self.path), MAX_JOURNAL_BYTES + 1)
        except FileNotFoundError:
            return {}, []
        except OSError as exc:
            return {}, [self._set_aside(f"it cannot be read ({exc.strerror or exc})", [])]
        lines = raw.split(b"\n")
        records: list[dict] = []
        damaged = "" if len(raw) <= MAX_JOURNAL_BYTES else f"it is over the journal size cap ({MAX_JOURNAL_BYTES >> 20} MiB)"
        for n, line in enumerate(lines, 1):
            if not line.strip() or damaged:
                continue
            try:
                rec = load_json(line, f"line {n}")
            except DocumentInvalid as exc:
                if n < len(lines):  # the last line without its newline is a torn write: passed over
                    damaged = exc.message
                continue
            if isinstance(rec, dict):
                records.append(rec)
        begun: dict[str, dict] = {}
        notes: list[str] = []
        for rec in records:
            try:
                event, p = rec.get("event"), fsio.path_from(rec) if "path" in rec else None
            except ValueError:
                continue
            if p is None:
                continue
            if event in (Event.BEGIN, Event.RENAMED):
                begun[p] = {**begun.get(p, {}), **rec}
            elif event == Event.DONE:
                begun.pop(p, None)
                notes.append(f"{fsio.readable(p)}: removed by the interrupted run")
            elif event in (Event.FAILED, Event.SKIPPED):
                begun.pop(p, None)
        if damaged:
            aside = [f"{fsio.readable(p)} (as {fsio.readable(str(r['trash']))})" for p, r in sorted(begun.items())
                     if isinstance(r.get("trash"), str)]
            return {}, [self._set_aside(damaged, aside)]
        return begun, notes

    def _set_aside(self, why: str, aside: list[str]) -> str:
        """Rename a journal that cannot be trusted out of the way (never deleted), and say so."""
        target = self.path.with_name(f"{self.path.stem}.damaged-{os.getpid()}-{int(time.time())}.jsonl")
        try:
            os.rename(self.path, target)
            where = f"set aside as {fsio.readable(str(target))}"
        except OSError as exc:
            where = f"left where it is ({exc.strerror or exc})"
        items = (f"; entries it had renamed aside in {fsio.readable(self.root)} may still be there: "
                 + ", ".join(aside)) if aside else ""
        return f"the journal of an earlier run is damaged ({why}) and was not acted on; {where}{items}"

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def write(self, record: dict, sync: bool = True) -> None:
        """Append a record. Only the records recovery needs before the disk changes are fsynced: the
        run's start, and the BEGIN of each entry (it names the trash name the next step renames the
        entry to). BEGINs are written a group at a time (`begin`: `sync=False` each, then one fsync), all
        before any entry of the group is re-checked and acted on: a BEGIN whose entry is then
        skipped, or that a crash keeps from being reached, finds the entry at its own name, which
        recovery reports as not started, exactly as a crash between one BEGIN and its rename always
        did; no entry is renamed before its BEGIN is on disk. Every later record of an entry
        (RENAMED, DONE, SKIPPED, FAILED) is written and flushed but not fsynced: if a crash loses
        it, recovery still reads the truth from the disk itself: the trash name still there (finish
        the removal), the entry at its own name (not started, or put back), or neither (removed).
        So one fsync per group of entries instead of three per entry, and a crash at any point
        still recovers (tests/test_apply.py kills a run half way and checks the next run finishes it)."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(json.dumps({"event": Event.JOURNAL, **fsio.path_fields(self.root, "root")}) + "\n")
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if sync and record.get("event") in (Event.START, Event.BEGIN):
            os.fsync(self._fh.fileno())

    def begin(self, entries: dict) -> None:
        """The BEGIN of each entry (path -> where it will be renamed to), then one fsync for all."""
        for path, where in entries.items():
            self.write({"event": Event.BEGIN, **fsio.path_fields(path), **where}, sync=False)
        if entries:
            os.fsync(self._fh.fileno())

    def close(self, finished: bool) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            if finished:
                self.path.unlink()
