"""Where mlcache may write what it was asked to: never over one of its inputs, never inside what it reads.

Inputs are the PATH arguments, plans, baselines and configs a command names, and every container
root it opens; outputs are `-o`, `--plan-out`, `--junit` and `--step-summary`. An output that is (or
resolves to) an input, or lies inside a PATH folder or a container root, is refused with exit 2
before anything is opened for writing: `-o` naming the archive being scanned would destroy the
evidence (with `--format jsonl` it was truncated to 0 bytes before it was read), and a report
written into a container would be scanned, planned and perhaps removed as part of it.

One guard per command run: cli.py declares the inputs and outputs when the command starts, the
audit adds each container root as it opens them (and checks again), and every output is checked
once more when it is opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mlcache_audit.errors import OutputNotWritable
from mlcache_audit.fsio import readable


@dataclass
class Guard:
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (what, real path)
    roots: list[str] = field(default_factory=list)  # real container roots
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (option, path as given)

    def declare(self, *, inputs: list[tuple[str, object]], outputs: list[tuple[str, object]]) -> None:
        """Start a command: what it reads and what it will write (None entries are left out)."""
        self.inputs = [(what, os.path.realpath(str(p))) for what, p in inputs if p is not None]
        self.roots = []
        self.outputs = [(opt, str(p)) for opt, p in outputs if p is not None]
        self.check()

    def add_input(self, what: str, path: object) -> None:
        """An input found while running (the nearest config file); outputs are checked against it."""
        self.inputs.append((what, os.path.realpath(str(path))))
        self.check()

    def add_roots(self, roots: list[str]) -> None:
        """Container roots the command opened; every declared output is checked against them now."""
        self.roots.extend(os.path.realpath(r) for r in roots)
        self.check()

    def check(self, path: object | None = None) -> None:
        """OutputNotWritable (exit 2) when an output (`path`, or every declared one) would overwrite
        an input or lie inside a PATH folder or a container root."""
        for option, out in ([("the output", str(path))] if path is not None else self.outputs):
            problem = self.problem(out)
            if problem:
                raise OutputNotWritable(f"{option} {readable(out)} {problem}; nothing was written",
                                        hint="write it outside what mlcache reads")

    def problem(self, out: str) -> str | None:
        real = os.path.realpath(out)
        for what, p in self.inputs:
            if real == p or _same_file(real, p):
                return f"is {what} {readable(p)}, which this run reads"
        for what, p in self.inputs:
            if os.path.isdir(p) and _inside(real, p):
                return f"lies inside {what} {readable(p)}, which this run reads"
        for root in self.roots:
            if _inside(real, root) or real == root:
                return f"lies inside the container {readable(root)}"
        return None


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


GUARD = Guard()  # the running command's; cli.py declares it afresh for each command
