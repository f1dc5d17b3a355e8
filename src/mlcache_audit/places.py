"""Every place mlcache writes outside its inputs, and whether a person can answer a prompt: one
object, built once per command in cli.py (httpie's `Environment`, pipx's `paths.ctx`).

- state: journals (an interrupted run's record), locks (one run per container), watch histories;
  `~/Library/Application Support/mlcache` on macOS, `$XDG_STATE_HOME/mlcache` or
  `~/.local/state/mlcache` elsewhere; MLCACHE_STATE_DIR moves it.
- cache: the content-hash cache; `~/Library/Caches/mlcache` on macOS, `$XDG_CACHE_HOME/mlcache` or
  `~/.cache/mlcache` elsewhere; MLCACHE_CACHE_DIR moves it.

Never inside a container. Library code asks `current()`; a command's run sets it (`using`), and
code called without one (tests, the library used directly) reads the environment afresh.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Places:
    state: Path
    cache: Path
    stdin_is_terminal: bool = False

    @property
    def journals(self) -> Path:
        return self.state / "journals"

    @property
    def locks(self) -> Path:
        return self.state / "locks"

    @property
    def watch(self) -> Path:
        return self.state / "watch"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, *, platform: str | None = None,
                     home: Path | None = None, stdin=None) -> Places:
        env = os.environ if environ is None else environ
        mac = (platform or sys.platform) == "darwin"
        home = home or Path.home()
        state = Path(env["MLCACHE_STATE_DIR"]) if env.get("MLCACHE_STATE_DIR") else (
            home / "Library" / "Application Support" / "mlcache" if mac
            else Path(env.get("XDG_STATE_HOME") or home / ".local" / "state") / "mlcache")
        cache = Path(env["MLCACHE_CACHE_DIR"]) if env.get("MLCACHE_CACHE_DIR") else (
            home / "Library" / "Caches" / "mlcache" if mac
            else Path(env.get("XDG_CACHE_HOME") or home / ".cache") / "mlcache")
        from mlcache_audit.terminal import is_terminal

        return cls(state, cache, is_terminal(stdin if stdin is not None else sys.stdin))


_current: list[Places] = []


def current() -> Places:
    """The running command's places, or the environment's now."""
    return _current[-1] if _current else Places.from_environ()


@contextlib.contextmanager
def using(places: Places) -> Iterator[Places]:
    _current.append(places)
    try:
        yield places
    finally:
        _current.pop()
