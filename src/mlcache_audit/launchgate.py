"""The growth gate per launch: run the app N times, measure what each launch adds to its ML caches,
and fail only on growth that repeats, as reassure gates a noisy runtime figure (repeat the run,
judge the typical change, not the worst one).

d1..dN are the signed changes of `coreml_bytes` launch by launch. d1 is shown but never gated (a
first launch compiles and specializes legitimately). The gate fails exactly when the median of
d2..dN is above the budget *and* at least ceil((N-1)/2) of them are; a negative delta (a purge)
never counts as over. `--stability` runs the same launches on a container that should not grow and
suggests a budget: the largest delta plus the spread.

The launch command is a shell command line given on the command line only (never from a config
file): it runs in its own process group, which a timeout or Ctrl-C ends whole.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median

from mlcache_audit.errors import MlcacheError

MIN_LAUNCHES = 3
DEFAULT_LAUNCHES = 5
DEFAULT_TIMEOUT = 600.0


class LaunchFailed(MlcacheError):
    """The launch command exited non-zero or ran past --launch-timeout: nothing was measured."""


@dataclass(frozen=True)
class Verdict:
    """What the deltas say against a budget (pure: property-tested)."""

    deltas: tuple[int, ...]
    budget: int | None
    gated: tuple[int, ...]  # d2..dN
    median: float
    spread: int  # max - min of the gated deltas
    over: int  # how many gated deltas are above the budget (a negative one never is)
    needed: int  # ceil((N-1)/2)
    passed: bool
    why: str


def judge(deltas: list[int], budget: int | None) -> Verdict:
    """The gate over d1..dN (N >= 3): fail exactly when the median of d2..dN is above the budget and
    at least ceil((N-1)/2) of them are. With no budget (stability), it passes."""
    if len(deltas) < MIN_LAUNCHES:
        raise ValueError("at least 3 launches")
    gated = tuple(deltas[1:])
    mid = float(median(gated))
    spread = max(gated) - min(gated)
    needed = math.ceil(len(gated) / 2)
    over = sum(1 for d in gated if budget is not None and d > 0 and d > budget)
    if budget is None:
        return Verdict(tuple(deltas), None, gated, mid, spread, 0, needed, True, "no budget: stability run")
    failed = mid > budget and over >= needed
    if failed:
        why = (f"median growth {_size(mid)} per launch is above the budget {_budget(budget)}, and {over} of "
               f"{len(gated)} launches after the first were over it (the gate needs {needed})")
    elif mid > budget:
        why = (f"median growth {_size(mid)} is above the budget, but only {over} of {len(gated)} launches were "
               f"over it (the gate needs {needed}): noise, not a leak")
    elif over:
        why = (f"{over} launch(es) grew past the budget, but the median {_size(mid)} is within "
               f"{_budget(budget)}: a single jump, not growth on every launch")
    else:
        why = f"median growth {_size(mid)} per launch is within the budget {_budget(budget)}"
    return Verdict(tuple(deltas), budget, gated, mid, spread, over, needed, not failed, why)


def suggested_budget(v: Verdict) -> int:
    """For a stability run: the largest delta after the first, plus the spread (never below 0)."""
    return max(0, max(v.gated)) + v.spread


def _size(n: float) -> str:
    from mlcache_audit.units import format_signed_size

    return format_signed_size(int(round(n)))


def _budget(n: int) -> str:
    from mlcache_audit.units import format_size

    return format_size(n)


@dataclass(frozen=True)
class Launch:
    n: int
    seconds: float
    coreml_bytes: int
    delta: int
    grew: list[dict] = field(default_factory=list)  # what this launch added: rule, kind, model, producer, path, bytes


def run_launches(command: str, launches: int, measure: Callable[[], tuple[int, dict]], *,
                 timeout: float = DEFAULT_TIMEOUT, env: dict | None = None) -> tuple[int, list[Launch]]:
    """(coreml_bytes before, one Launch per run of `command`). `measure()` is (coreml_bytes, {path:
    (bytes, rule, kind, model, producer)}) of the container now."""
    first, arts = measure()
    before = first
    out = []
    for n in range(1, launches + 1):
        started = time.monotonic()
        _run_once(command, n, timeout, env)
        now, now_arts = measure()
        grew = [{"path": p, "bytes": b - (arts.get(p, (0,))[0]), "rule": r, "kind": k, "model": m, "producer": pr}
                for p, (b, r, k, m, pr) in sorted(now_arts.items()) if b > arts.get(p, (0,))[0]]
        grew.sort(key=lambda g: (-g["bytes"], g["path"]))
        out.append(Launch(n, round(time.monotonic() - started, 3), now, now - before, grew[:20]))
        before, arts = now, now_arts
    return first, out


def _run_once(command: str, n: int, timeout: float, env: dict | None) -> None:
    """One launch: `command` in a shell of its own process group, waited for; a non-zero exit or a
    timeout is LaunchFailed (exit 2, naming the launch); Ctrl-C ends the whole group, then goes on up."""
    proc = subprocess.Popen(command, shell=True, start_new_session=True, env=env,  # noqa: S602 - the user's own command line
                            stdin=subprocess.DEVNULL)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_group(proc)
        raise LaunchFailed(f"launch {n} ran past --launch-timeout {timeout:g} s: {command}",
                           hint="raise --launch-timeout, or make the command end the app and return") from None
    except BaseException:  # Ctrl-C: the launched command's whole group goes with us
        _end_group(proc)
        raise
    if code != 0:
        raise LaunchFailed(f"launch {n} failed: `{command}` exited with code {code}",
                           hint="the launch command must exit 0 once the app has run and ended")


def _end_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue


def gate_document(command: str, first: int, runs: list[Launch], verdict: Verdict, budget: int | None,
                  stability: bool) -> dict:
    """The `launches` section of `mlcache.check/3`: every launch's figures, the verdict and why."""
    return {
        "command": command, "count": len(runs), "budget_bytes": budget, "stability": stability,
        "before_bytes": first,
        "runs": [{"launch": r.n, "seconds": r.seconds, "coreml_bytes": r.coreml_bytes, "delta_bytes": r.delta,
                  "gated": r.n > 1, "over": r.n > 1 and budget is not None and r.delta > 0 and r.delta > budget,
                  "grew": r.grew} for r in runs],
        "median_bytes": round(verdict.median), "spread_bytes": verdict.spread, "over": verdict.over,
        "needed": verdict.needed, "passed": verdict.passed, "why": verdict.why,
        "suggested_budget_bytes": suggested_budget(verdict) if stability else None,
    }


def per_launch_budget(verdict: Verdict, budget: int, runs: list[Launch]) -> dict:
    """The `max-growth-per-launch` budget row, with what grew behind a failure."""
    return {"name": "max-growth-per-launch", "scope": "total", "passed": verdict.passed,
            "actual": round(verdict.median), "limit": budget, "unit": "bytes per launch", "message": verdict.why,
            "findings": [] if verdict.passed else grown_per_launch(runs)}


def grown_per_launch(runs: list[Launch]) -> list[dict]:
    """What grew launch after launch (the first left out): rule, kind, model, producer, bytes."""
    from collections import defaultdict

    from mlcache_audit.domain import PRODUCER, remedy_of

    total: dict[tuple, int] = defaultdict(int)
    where: dict[tuple, str] = {}
    for r in runs[1:]:
        for g in r.grew:
            key = (g["rule"], g["kind"], g["model"], g["producer"])
            total[key] += g["bytes"]
            where.setdefault(key, g["path"])
    out = []
    for (rule, kind, model, producer), n in sorted(total.items(), key=lambda kv: -kv[1])[:5]:
        per = n // max(1, len(runs) - 1)
        from mlcache_audit.units import format_size

        out.append({"rule": rule or "growth", "kind": kind, "model": model, "producer": producer,
                    "path": where[(rule, kind, model, producer)], "reclaimable_bytes": 0,
                    "summary": f"{kind} grew by about {format_size(per)} per launch, for example "
                               f"{where[(rule, kind, model, producer)]}",
                    "remedy": remedy_of(producer) if producer in PRODUCER else remedy_of(None)})
    return out
