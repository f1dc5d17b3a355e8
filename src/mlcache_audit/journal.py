"""The apply journal: an fsynced JSON-lines record of one container's run, so an interrupted run
(Ctrl-C, a crash, a full disk) is reported and finished by the next one. apply.py writes it and
acts on what it reads back; this module only writes and reads the file.

It lives in the state folder (`~/.local/state/mlcache`, `~/Library/Application Support/mlcache` on
macOS; MLCACHE_STATE_DIR moves it), never inside a container, one file per container root.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mlcache_audit import fsio

MAX_JOURNAL_BYTES = 256 * 1024**2


def default_state_dir() -> Path:
    if env := os.environ.get("MLCACHE_STATE_DIR"):
        return Path(env)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "mlcache"
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "mlcache"


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

        Records are checked as they are read: a torn last line (the run died writing it) or one that
        is not a record is passed over; paths come back exact (path_b64)."""
        try:
            raw = fsio.read_regular(str(self.path), MAX_JOURNAL_BYTES)
        except FileNotFoundError:
            return {}, []
        except OSError as exc:
            return {}, [f"the journal of an interrupted run could not be read: {exc.strerror or exc}"]
        begun: dict[str, dict] = {}
        notes: list[str] = []
        for line in raw.splitlines():
            try:
                rec = json.loads(line)
                event, p = rec.get("event"), fsio.path_from(rec) if "path" in rec else None
            except (ValueError, UnicodeDecodeError, AttributeError):
                continue
            if p is None:
                continue
            if event in ("begin", "renamed"):
                begun[p] = {**begun.get(p, {}), **rec}
            elif event == "done":
                begun.pop(p, None)
                notes.append(f"{fsio.readable(p)}: removed by the interrupted run")
            elif event in ("failed", "skipped"):
                begun.pop(p, None)
        return begun, notes

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def write(self, record: dict) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(json.dumps({"event": "journal", **fsio.path_fields(self.root, "root")}) + "\n")
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self, finished: bool) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            if finished:
                self.path.unlink()
