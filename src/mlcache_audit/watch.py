"""Growth as it happens: snapshots around each launch of a process (or each interval), what every
launch added, and the launch history that proves re-specializations (rules.Evidence.launches).

The history lives in the state folder (`watch/<sha1 of the client>.jsonl`), keyed by bundle id or
client name: never by the container's UUID (it changes on every install), never inside a container.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mlcache_audit.docfields import load_json
from mlcache_audit.errors import DocumentInvalid
from mlcache_audit.journal import default_state_dir

WATCH_SCHEMA = "mlcache.watch/2"
MIN_PROJECTION_SECONDS = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class Snapshot:
    """Per artifact (client, path): bytes, the rules of the findings naming it, its newest mtime."""

    artifacts: dict[tuple[str, str], tuple[int, tuple[str, ...], float]]
    at: float

    @classmethod
    def of(cls, audit) -> Snapshot:
        arts: dict[tuple[str, str], tuple[int, tuple[str, ...], float]] = {}
        for ca in audit.containers:
            client = ca.container.client or ca.container.label
            rules: dict[str, list[str]] = {}
            for f in ca.diagnosis.findings:
                for p in f.paths:
                    rules.setdefault(p, []).append(f.rule)
            for a in ca.scan.artifacts:
                arts[(client, a.path)] = (a.bytes, tuple(sorted(rules.get(a.path, ()))), a.newest_mtime or 0.0)
        return cls(arts, time.time())

    def without(self, keys) -> Snapshot:
        keys = set(keys)
        return Snapshot({k: v for k, v in self.artifacts.items() if k not in keys}, self.at)


def change(before: Snapshot, after: Snapshot) -> dict:
    """Bytes and paths added and removed between two snapshots (grown artifacts count as added)."""
    added, removed, findings = [], [], set()
    added_bytes = removed_bytes = 0
    for key, (size, rules, _) in after.artifacts.items():
        old = before.artifacts.get(key)
        if old is None:
            added.append(key)
            added_bytes += size
            findings.update(rules)
        elif size > old[0]:
            added_bytes += size - old[0]
        elif size < old[0]:
            removed_bytes += old[0] - size
    for key, (size, _, _) in before.artifacts.items():
        if key not in after.artifacts:
            removed.append(key)
            removed_bytes += size
    return {"added_bytes": added_bytes, "removed_bytes": removed_bytes, "added": [p for _, p in sorted(added)],
            "removed": [p for _, p in sorted(removed)], "findings": sorted(findings), "_added_keys": sorted(added)}


def history_file(client: str, state_dir: Path | None = None) -> Path:
    import hashlib

    name = hashlib.sha1(client.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return (state_dir or default_state_dir()) / "watch" / f"{name}.jsonl"


def record_launch(added_keys: list[tuple[str, str]], state_dir: Path | None = None) -> str | None:
    """Append one launch's added paths to each client's history; why it could not be, if so."""
    by_client: dict[str, list[str]] = {}
    for client, path in added_keys:
        by_client.setdefault(client, []).append(path)
    for client, paths in by_client.items():
        f = history_file(client, state_dir)
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            with open(f, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"client": client, "at": _iso(time.time()), "added": paths}) + "\n")
        except OSError as exc:
            return f"launch history not saved ({exc.strerror or exc}): it cannot prove re-specializations"
    return None


def launches_reader(state_dir: Path | None = None) -> Callable[[str | None], dict[str, int]]:
    """`launches_of` for one audit of many containers: where the state folder is, and whether
    `watch` ever ran here, is worked out once (an audit writes no history; 600 clients of a home
    asked it 600 times)."""
    state = state_dir or default_state_dir()
    if not (state / "watch").is_dir():
        return lambda client: {}  # `watch` never ran here: no history to read (nor hashlib to import)
    return lambda client: _history(client, state)


def launches_of(client: str | None, state_dir: Path | None = None) -> dict[str, int]:
    """path -> launch number (1, 2, ...) from a client's watch history; {} when there is none."""
    return launches_reader(state_dir)(client)


def _history(client: str | None, state: Path) -> dict[str, int]:
    """launches_of in a state folder whose watch/ exists. A damaged line is passed over: this is
    evidence, read defensively."""
    if not client:
        return {}
    from mlcache_audit import fsio

    try:
        raw = fsio.read_regular(str(history_file(client, state)), 64 * 1024**2)
    except OSError:
        return {}
    out: dict[str, int] = {}
    n = 0
    for line in raw.splitlines():
        try:
            rec = load_json(line, "a watch history line")
            paths = rec["added"] if rec.get("client") == client else None
        except (DocumentInvalid, KeyError, TypeError, AttributeError):
            continue  # a torn or damaged line of the history is passed over: it is evidence, never fatal
        if not isinstance(paths, list):
            continue
        n += 1
        for p in paths:
            if isinstance(p, str):
                out.setdefault(p, n)
    return out


def running_instances(name: str) -> dict[int, float]:
    """pid -> start time of every live process named `name` (by process name or executable file
    name), mlcache's own process and workers left out; zombies have ended."""
    import psutil

    from mlcache_audit.processes import processes_named

    out = {}
    for pid, _ in processes_named({name}):
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                out[pid] = proc.create_time()
        except psutil.Error:
            continue
    return out


def follow(snapshot: Callable[[], Snapshot], *, process: str | None, launches: int | None, interval: float,
           count: int | None, poll: float = 0.2, record: bool = True, state_dir: Path | None = None,
           sleep: Callable[[float], None] = time.sleep, ready: Callable[[], None] | None = None) -> Iterator[dict]:
    """Yield one event per launch of `process` (or per interval that changed), then a summary.
    `ready()` is called once the first snapshot is taken: launches from then on are seen whole.
    Ctrl-C (KeyboardInterrupt) ends the watch with the summary, as reaching `launches`/`count` does."""
    start = time.time()
    base = snapshot()
    if ready is not None:
        ready()
    n = 0
    total_added = 0
    alive: dict[int, float] = {}  # instances of `process` seen running, pid -> start time
    try:
        while True:
            if process is not None:
                if launches is not None and n >= launches:
                    break
                pid, started = _next_exit(process, alive, poll, sleep)
                after = snapshot()
                # Another instance runs (relaunched while the snapshot was taken, or overlapping this
                # one): what it wrote since it started is its own launch's.
                next_start = min(running_instances(process).values(), default=None)
                if next_start is not None:
                    later = [k for k, v in after.artifacts.items() if k not in base.artifacts and v[2] >= next_start]
                    after = after.without(later)
                delta = change(base, after)
                n += 1
                event = {"schema": WATCH_SCHEMA, "type": "launch", "launch": n, "pid": pid, "started": _iso(started),
                         "ended": _iso(time.time())}
            else:
                if count is not None and n >= count:
                    break
                sleep(interval)
                after = snapshot()
                delta = change(base, after)
                if not (delta["added"] or delta["removed"] or delta["added_bytes"] or delta["removed_bytes"]):
                    continue
                n += 1
                event = {"schema": WATCH_SCHEMA, "type": "interval", "interval": n, "at": _iso(time.time())}
            keys = delta.pop("_added_keys")
            if record and process is not None and keys:
                problem = record_launch(keys, state_dir)
                if problem:
                    event["note"] = problem
            total_added += delta["added_bytes"]
            base = after
            yield {**event, **delta}
    except KeyboardInterrupt:
        pass
    seconds = time.time() - start
    yield {"schema": WATCH_SCHEMA, "type": "summary", "launches": n if process is not None else 0,
           "intervals": 0 if process is not None else n, "added_bytes": total_added,
           "added_bytes_per_launch": round(total_added / n) if process is not None and n else None,
           # A rate per day is projected only from at least an hour seen: 1 MB in 5 s is not 16 GB a day.
           "added_bytes_per_day": round(total_added / seconds * DAY) if seconds >= MIN_PROJECTION_SECONDS and n
           else None,
           "mode": "launches" if process is not None else "intervals",
           "observed_seconds": round(seconds, 3)}


def _next_exit(name: str, alive: dict[int, float], poll: float, sleep) -> tuple[int, float]:
    """(pid, start time) of the next instance of `name` to end: every instance is one launch, so
    three overlapping launches are three, however their pids are ordered. `alive` carries the
    instances seen so far from one call to the next."""
    while True:
        now = running_instances(name)
        for pid, started in now.items():
            if alive.get(pid) != started:  # new, or a recycled pid: a new instance
                alive[pid] = started
        gone = [pid for pid in alive if pid not in now]
        if gone:
            pid = min(gone, key=alive.__getitem__)
            return pid, alive.pop(pid)
        sleep(poll)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")
