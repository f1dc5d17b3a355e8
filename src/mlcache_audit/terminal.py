"""The terminal: one object owns stdout and stderr. JSON goes to stdout alone; messages and progress
to stderr. rich is imported only when something is drawn, so `--format json` never pays for it."""

from __future__ import annotations

import sys
from collections import defaultdict
from contextlib import contextmanager
from typing import TextIO

from mlcache_audit.units import format_size, plural
from mlcache_audit.vocab import Stage

UNLIMITED_WIDTH = 10_000  # off a terminal: wide enough that no table column is ever folded


class Terminal:
    """Owns stdout and stderr, so tests can hand in streams and colour can be turned off."""

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None, *, color: bool | None = None):
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self._color = color
        self._out = None  # rich consoles, made on first use
        self._err = None

    @property
    def out(self):
        from rich.console import Console

        if self._out is None:
            # Off a terminal (pipes, files, CI logs) nothing is cut or folded: full paths, one line per
            # message, no fixed width, so a saved report keeps everything and can be grepped.
            tty = self.stdout_is_terminal
            self._out = Console(file=self.stdout, highlight=False, soft_wrap=not tty,
                                width=None if tty else UNLIMITED_WIDTH, **self._color_args())
        return self._out

    @property
    def stdout_is_terminal(self) -> bool:
        return is_terminal(self.stdout)

    @property
    def err(self):
        from rich.console import Console

        if self._err is None:
            self._err = Console(file=self.stderr, highlight=False,
                                width=None if is_terminal(self.stderr) else UNLIMITED_WIDTH, **self._color_args())
        return self._err

    def _color_args(self) -> dict:
        """`color` True (always), False (never) or None: rich then decides from the terminal alone,
        cli.py having already applied --color, NO_COLOR and FORCE_COLOR in that order."""
        if self._color is True:
            return {"force_terminal": True, "no_color": False}
        if self._color is False:  # never: no escape sequence at all (no colour, no bold), whatever the env
            return {"no_color": True, "force_terminal": False}
        return {"no_color": False}  # auto: colour only on a terminal (rich's own detection)

    def write(self, text: str) -> None:
        """A finished document (JSON, Markdown, HTML, XML) to stdout, as it is: a MiB at a time, so a
        large one is never encoded whole into a second copy (UTF-8 encodes each piece the same)."""
        step = 1 << 20
        if len(text) <= step:
            self.stdout.write(text)
            return
        for i in range(0, len(text), step):
            self.stdout.write(text[i:i + step])

    def message(self, text: str) -> None:
        """One line to stderr; what it names is made printable (fsio.printable) on the way."""
        from mlcache_audit.fsio import printable

        self.stderr.write(printable(text) + "\n")

    @contextmanager
    def progress(self, label: str):
        """A live counter on stderr when it is a terminal; nothing otherwise."""
        if not is_terminal(self.stderr):
            yield None
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=self.err, transient=True) as bar:
            self._live = bar  # stopped before a question is asked, so the spinner never draws over it
            task = bar.add_task(label)
            counts: dict[str, int] = defaultdict(int)

            def update(stage: str, n: int) -> None:
                if stage not in (Stage.WALKED, Stage.HASHED):  # a step that takes a while: say what it is
                    bar.update(task, description=f"{label}: {stage}")
                    return
                counts[stage] += n
                walked = counts.get(Stage.WALKED, 0)
                hashed = counts.get(Stage.HASHED, 0)
                bar.update(task, description=f"{label}: {walked} entries walked, {format_size(hashed)} hashed")

            yield update


    def plan_confirmer(self, yes: bool, quarantine):
        """The question asked before acting on a plan: never asked with --yes or with nothing to do;
        refused (never asked) when no person can answer, since standard input is not a terminal."""
        def confirm(plan) -> bool:
            import click

            from mlcache_audit.errors import PlanInvalid

            n = sum(len(c.actions) for c in plan.containers if not c.read_only)
            if yes or n == 0:
                return True
            if not stdin_is_terminal():
                raise PlanInvalid("refusing to act without confirmation: standard input is not a terminal",
                                  hint="review with `mlcache clean PATH`, then pass --yes")
            if getattr(self, "_live", None) is not None:
                self._live.stop()
            verb = f"Move {plural(n, 'entry')} into {quarantine}" if quarantine else f"Delete {plural(n, 'entry')}"
            self.message(f"{verb} ({format_size(plan.reclaimable_bytes)}):")
            for line in what_would_go(plan):
                self.message(line)
            if click.confirm("Go ahead?", default=False, show_default=True, err=True):
                return True
            self.message("Nothing was changed.")
            return False
        return confirm


def what_would_go(plan, per_rule: int = 3) -> list[str]:
    """The plan, collapsed as the dry run collapses it: per container and rule, how many entries and
    bytes, and the first few paths."""
    from mlcache_audit.fsio import printable

    lines = []
    for c in plan.containers:
        if c.read_only or not c.actions:
            continue
        lines.append(f"  {printable(c.bundle_id or c.client or c.root)}:")
        by_rule: dict[str, list] = defaultdict(list)
        for a in c.actions:
            by_rule[a.rule].append(a)
        for rule, actions in sorted(by_rule.items(), key=lambda kv: -sum(a.bytes for a in kv[1])):
            shown = ", ".join(printable(a.path) for a in actions[:per_rule])
            more = f" and {len(actions) - per_rule} more" if len(actions) > per_rule else ""
            lines.append(f"    {rule}: {len(actions)} entr{'y' if len(actions) == 1 else 'ies'}, "
                         f"{format_size(sum(a.bytes for a in actions))} ({shown}{more})")
    return lines


def stdin_is_terminal() -> bool:
    """Prompts only when a person can answer; never when standard input is a pipe or /dev/null
    (places.py records it once per command)."""
    from mlcache_audit.places import _current

    return _current[-1].stdin_is_terminal if _current else is_terminal(sys.stdin)


def is_terminal(stream) -> bool:
    """True for an interactive terminal; False for pipes, files, /dev/null and closed streams."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
