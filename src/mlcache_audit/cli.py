"""Command line: parses options, calls one function of commands.py, renders its result."""

from __future__ import annotations

import errno
import os
import shlex
import signal
import sys
from pathlib import Path

import click

from mlcache_audit import __version__
from mlcache_audit.cli_options import (
    _nonempty_file,
    _path_argument,
    _path_option,
    _paths_argument,
    acting_options,
    output_option,
    source_options,
    why_option,
)
from mlcache_audit.docfields import write_output
from mlcache_audit.domain import RULES
from mlcache_audit.errors import BudgetConfigError, ExitCode, MlcacheError
from mlcache_audit.helptext import RULES_HELP, epilog


class _Failure(click.ClickException):
    """A typed core error, shown as one line: `mlcache: error: ...`."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        from mlcache_audit.fsio import printable

        click.echo(f"mlcache: error: {printable(self.message)}", err=True)


class MlcacheGroup(click.Group):
    """Turns core errors into one-line messages and exit codes; a traceback only with --debug."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MlcacheError as exc:
            raise _Failure(str(exc), int(exc.exit_code)) from None
        except KeyboardInterrupt:
            click.echo("mlcache: interrupted", err=True)
            raise click.exceptions.Exit(int(ExitCode.INTERRUPTED)) from None
        except OSError as exc:
            if exc.errno not in _OUTPUT_ERRNOS or ctx.obj and ctx.obj.get("debug"):
                raise _internal(ctx, exc) from None
            # standard output or error on a full disk (or a device that fails): the document is lost
            raise _Failure(f"cannot write the output: {exc.strerror or exc}", int(ExitCode.BAD_INPUT)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the one catch-all, at the top
            raise _internal(ctx, exc) from None


_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def _internal(ctx: click.Context, exc: Exception) -> Exception:
    if ctx.obj and ctx.obj.get("debug"):
        return exc
    return _Failure(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                    int(ExitCode.BAD_INPUT))


def _declare(inputs: list[tuple[str, object]], outputs: list[tuple[str, object]]) -> None:
    """What this command reads and writes (outputs.GUARD): an output over an input is exit 2 now."""
    from mlcache_audit.outputs import GUARD

    GUARD.declare(inputs=inputs, outputs=outputs)


def _paths_read(paths) -> list[tuple[str, object]]:
    return [("PATH", p) for p in paths]


def _batch_errors(term, doc: dict) -> None:
    """Several PATHs, some unreadable: each is named on stderr, after the rest was reported; exit 2."""
    errors = doc.get("errors") or []
    for e in errors:
        term.message(f"mlcache: error: {e['path']}: {e['reason']}")
    if errors:
        raise click.exceptions.Exit(int(ExitCode.BAD_INPUT))


def color_choice(option: str | None, environ) -> bool | None:
    """--color beats NO_COLOR, which beats FORCE_COLOR, which beats terminal detection (None)."""
    if option is not None:
        return {"always": True, "never": False, "auto": None}[option]
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    return None


def _terminal():
    from mlcache_audit.terminal import Terminal  # rich is imported only when something is drawn

    ctx = click.get_current_context(silent=True)
    color = (ctx.find_root().obj or {}).get("color") if ctx is not None else None
    return Terminal(click.get_text_stream("stdout"), click.get_text_stream("stderr"), color=color)


@click.group(cls=MlcacheGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=epilog("mlcache"))
@click.version_option(__version__, prog_name="mlcache")
@click.option("--debug", is_flag=True, help="Show a traceback for unexpected errors.")
@click.option("--color", "color", type=click.Choice(["auto", "always", "never"]), default=None,
              help="Colour in text output: auto (on a terminal), always or never. Default: never when NO_COLOR "
                   "is set, always when FORCE_COLOR is set, else auto.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, color: str | None) -> None:
    """Audit and clean on-device ML caches (Core ML, Core AI) in iOS and macOS app containers.

    PATH may be a data container pulled from a device, an .xcappdata, an Xcode Device Hub folder, a
    simulator tree, a macOS ~/Library/Containers/<id> folder, a device backup, or a zip or tar of any of them.

    Exit codes: 0 ok, 1 a budget was exceeded or an apply did not finish, 2 usage or unreadable input,
    130 interrupted.
    """
    ctx.ensure_object(dict)["debug"] = debug
    ctx.obj["color"] = color_choice(color, os.environ)
    from mlcache_audit.places import Places, using

    # Where this run writes outside its inputs, and whether a person can answer: read once, here.
    ctx.with_resource(using(Places.from_environ(stdin=click.get_text_stream("stdin"))))


@cli.command(short_help='Show every ML cache artifact, what it costs and why it grew.', epilog=epilog("scan"))
@_paths_argument
@click.option("--format", "fmt", type=click.Choice(["text", "json", "jsonl", "markdown", "html"]), default="text",
              show_default=True, help="text for people, json (mlcache.scan/3) for tools, jsonl to stream one "
                                      "container per line, markdown for tickets, html for one self-contained page.")
@click.option("--top", type=click.IntRange(1), default=10, show_default=True, help="How many of the largest artifacts to list.")
@why_option
@output_option
@source_options
def scan(paths: tuple[str, ...], jobs: int, fmt: str, top: int, why: bool, output: Path | None, source) -> None:
    """Show every ML cache artifact in PATH, what it costs, and why it grew.

    With no PATH: every ML cache of this Mac (simulators, sandboxed apps, per-process caches of tools
    such as python, MPSGraph scratch), one client each.
    """
    from mlcache_audit import commands
    from mlcache_audit.report import emit, stream

    _declare(_paths_read(paths), [("-o", output)])
    term = _terminal()
    if fmt == "jsonl":  # streamed: one line per container as each path finishes, nothing kept
        failed = []
        stream(term, commands.scan_lines(paths, source, jobs=jobs, failed=failed), output)
        return _batch_errors(term, {"errors": failed})
    with term.progress(f"Scanning {', '.join(paths) or 'this Mac'}") as progress:
        doc = commands.scan_many(paths, source, jobs=jobs, progress=progress).document if paths else \
            commands.scan(None, source, progress).document
    emit(term, "scan", fmt, doc, output=output, **({} if fmt == "json" else {"top": top, "why": why}))
    _batch_errors(term, doc)


@cli.command(short_help='Preview (default) or carry out the removal of what is safe.', epilog=epilog("clean", RULES_HELP))
@_path_argument("path", required=False)
@click.option("--apply", "do_apply", is_flag=True, help="Carry out the plan (asks first on a terminal).")
@click.option("--all-clients", is_flag=True, help="With no PATH: allow --apply to act on every discovered client.")
@acting_options
@_path_option("--plan-out",
              help="Write the plan (JSON) to this file for review and `mlcache apply`.")
@click.option("--include-persistent", is_flag=True,
              help="Also remove duplicate and old model copies in persistent places (the newest copy stays).")
@click.option("--only", multiple=True, type=click.Choice(list(RULES)), metavar="RULE",
              help="Act only on findings of this rule (repeatable; the rules are listed below).")
@click.option("--keep", multiple=True, type=click.Choice(list(RULES)), metavar="RULE",
              help="Never act on findings of this rule (repeatable; the rules --only lists).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "html"]), default="text",
              show_default=True, help="json prints the plan (mlcache.plan/2), or with --apply the outcome (mlcache.apply/2).")
@why_option
@output_option
@source_options
def clean(path: str | None, do_apply: bool, all_clients: bool, yes: bool, quarantine: Path | None, plan_out: Path | None,
          include_persistent: bool, only: tuple[str, ...], keep: tuple[str, ...], fmt: str, why: bool,
          output: Path | None, source) -> None:
    """Preview (default) or carry out the removal of what is safe to remove in PATH.

    Each rule acts only on evidence (docs/rules.md). Documents/, Library/Preferences/ and anything
    outside the container are never touched; a backup or an archive is previewed, never changed.
    """
    from mlcache_audit import commands

    _declare(_paths_read([path] if path else []), [("-o", output), ("--plan-out", plan_out)])
    term = _terminal()

    def save_plan(plan) -> None:
        write_output(plan_out, plan.to_json())
        if plan.containers and all(c.read_only for c in plan.containers):  # no command acts on evidence
            term.message(f"Plan written to {plan_out} (a preview: backups and archives are never changed).")
        else:
            term.message(f"Plan written to {plan_out}; carry it out with `mlcache apply {shlex.quote(str(plan_out))}`.")

    with term.progress(f"Scanning {path or 'this Mac'}") as progress:
        outcome = commands.clean(path, source=source, selection=commands.Selection(frozenset(only), frozenset(keep),
                                                                                    include_persistent),
                                 act=do_apply, quarantine=quarantine, confirm=term.plan_confirmer(yes, quarantine),
                                 plan_sink=save_plan if plan_out else None, progress=progress,
                                 all_clients=all_clients)
    _render_clean(term, outcome, fmt, output, plan_document=not do_apply, why=why)


@cli.command(name="apply", short_help='Carry out a plan saved by clean --plan-out.', epilog=epilog("apply"))
@click.argument("plan_file", type=click.Path(dir_okay=False), callback=_nonempty_file)
@acting_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@output_option
def apply_cmd(plan_file: Path, yes: bool, quarantine: Path | None, fmt: str, output: Path | None) -> None:
    """Carry out a plan saved by `mlcache clean --plan-out`, re-checking every entry first."""
    from mlcache_audit import commands

    _declare([("the plan file", plan_file)], [("-o", output)])
    term = _terminal()
    outcome = commands.apply(plan_file, quarantine=quarantine, confirm=term.plan_confirmer(yes, quarantine))
    _render_clean(term, outcome, fmt, output, plan_document=False)


def _render_clean(term, outcome, fmt: str, output: Path | None, *, plan_document: bool, why: bool = False) -> None:
    from mlcache_audit.report import emit
    from mlcache_audit.report.json import apply_document

    if not outcome.confirmed:
        return
    plan = outcome.plan.to_dict() if plan_document or fmt != "json" else None  # JSON of a run that acted: none
    emit(term, "clean", fmt, apply_document(outcome.result), output=output,
         **({"json_doc": plan} if fmt == "json" else {"plan": plan, "why": why}))
    if not outcome.result.complete:
        raise click.exceptions.Exit(int(ExitCode.CHECK_FAILED))


@cli.command(short_help='Put back what a --quarantine run moved aside.', epilog=epilog("restore"))
@click.argument("directory", type=click.Path(file_okay=False), callback=_nonempty_file)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def restore(directory: Path, fmt: str) -> None:
    """Put back everything a `--quarantine DIR` run moved aside, exactly where it was."""
    from mlcache_audit import commands
    from mlcache_audit.report import emit
    from mlcache_audit.report.json import restore_document

    term = _terminal()
    result = commands.restore(directory)
    emit(term, "restore", fmt, restore_document(result))
    if not result.complete:
        raise click.exceptions.Exit(int(ExitCode.CHECK_FAILED))


@cli.command(short_help='Record a compact JSON snapshot to compare later.', epilog=epilog("snapshot"))
@_paths_argument
@output_option
@source_options
def snapshot(paths: tuple[str, ...], jobs: int, output: Path | None, source) -> None:
    """Record a compact JSON snapshot (mlcache.snapshot/2) of PATH, to compare later."""
    from mlcache_audit import commands
    from mlcache_audit.report import emit

    _declare(_paths_read(paths), [("-o", output)])
    term = _terminal()
    with term.progress(f"Scanning {', '.join(paths) or 'this Mac'}") as progress:
        doc = commands.snapshot_many(paths, source, jobs=jobs, progress=progress)
    emit(term, "snapshot", "json", doc, output=output)
    _batch_errors(term, doc)


@cli.command(name="diff", short_help='Old, new and delta per artifact kind for one app.', epilog=epilog("diff"))
@_path_argument("old")
@_path_argument("new")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@output_option
@source_options(discovery=False)
def diff_cmd(old: str, new: str, fmt: str, output: Path | None, source) -> None:
    """Old, new and delta per artifact kind for one app; OLD and NEW are snapshots or containers."""
    from mlcache_audit import commands
    from mlcache_audit.report import emit

    _declare([("OLD", old), ("NEW", new)], [("-o", output)])
    term = _terminal()
    with term.progress("Comparing") as progress:
        doc = commands.diff(old, new, source, progress)
    emit(term, "diff", fmt, doc, output=output)


@cli.command(short_help='The CI gate: budgets in total, since a baseline, per launch.', epilog=epilog("check"))
@_paths_argument
@_path_option("--baseline", help="A snapshot to measure growth from.")
@click.option("--max-growth", help="Fail when ML caches grew by more than this since the baseline (500KB, 1MB, 2GiB).")
@click.option("--max-growth-pct", type=float, help="Fail when ML caches grew by more than N percent since the baseline.")
@click.option("--max-total", help="Fail when ML caches use more than this in total.")
@click.option("--max-copies", type=click.IntRange(0), help="Fail when one model has more than N copies in a container.")
@click.option("--fail-on", multiple=True, type=click.Choice(list(RULES)), metavar="RULE",
              help="Fail when a finding of this rule reclaims bytes (with --baseline: when they grew). Repeatable.")
@click.option("--allow-other-app", is_flag=True,
              help="Compare with a baseline of another app (an error otherwise: growth would compare different things).")
@_path_option("--config",
              help="Budgets file (default: the nearest mlcache.toml, else [tool.mlcache] in pyproject.toml, "
                   "searched upward from the current folder).")
@click.option("--launch", "launch_cmd", metavar="CMD",
              help="Run this shell command line once per launch (it starts the app, lets it run and ends it); "
                   "with --max-growth-per-launch, fail when the ML caches grow launch after launch. Never read "
                   "from a config file.")
@click.option("--launches", type=int, default=5, show_default=True,
              help="With --launch: how many launches (at least 3; the first is shown, never gated).")
@click.option("--max-growth-per-launch", help="With --launch: fail when the median growth of launches 2..N is "
              "above this (500KB, 1MB) and at least half of them are.")
@click.option("--launch-timeout", type=click.FloatRange(0.1), default=600.0, show_default=True,
              help="With --launch: seconds one launch may take; past it, exit 2 naming the launch.")
@click.option("--stability", is_flag=True, help="With --launch: measure how much the container moves on its own "
              "and suggest a --max-growth-per-launch budget (exit 0 unless the command fails).")
@_path_option("--junit", help="Write a JUnit XML report here (also when the check fails to run).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--github-annotations/--no-github-annotations", envvar="GITHUB_ACTIONS", default=False,
              help="Print ::error annotations (on by default under GitHub Actions).")
@_path_option("--step-summary", envvar="GITHUB_STEP_SUMMARY",
              help="Append a Markdown summary to this file (GITHUB_STEP_SUMMARY under GitHub Actions).")
@output_option
@source_options
def check(paths: tuple[str, ...], jobs: int, baseline: Path | None, max_growth: str | None, max_growth_pct: float | None,
          max_total: str | None, max_copies: int | None, fail_on: tuple[str, ...], allow_other_app: bool,
          config: Path | None, launch_cmd: str | None, launches: int, max_growth_per_launch: str | None, launch_timeout: float,
          stability: bool, junit: Path | None, fmt: str, github_annotations: bool, step_summary: Path | None,
          output: Path | None, source) -> None:
    """The CI gate: exit 1 when a budget is exceeded, 0 when all hold, 2 on bad input."""
    from mlcache_audit import commands
    from mlcache_audit.report import emit
    from mlcache_audit.report.github import publish, publish_error
    from mlcache_audit.report.junit import write_junit

    _declare(_paths_read(paths) + [("the baseline", baseline), ("the config file", config)],
             [("-o", output), ("--junit", junit), ("--step-summary", step_summary)])
    term = _terminal()
    options = commands.BudgetOptions(max_total, max_growth, max_growth_pct, max_copies, fail_on, baseline, config,
                                     allow_other_app)
    try:
        if launch_cmd is None and (max_growth_per_launch or stability):
            raise BudgetConfigError("--max-growth-per-launch and --stability go with --launch CMD")
        if launch_cmd is not None:
            if len(paths) > 1:
                raise BudgetConfigError("the launch gate measures one container: give one PATH (or --bundle-id)")
            doc = commands.check_launches(paths[0] if paths else None, commands.LaunchOptions(
                launch_cmd, launches, max_growth_per_launch, launch_timeout, stability), options, cwd=Path.cwd(),
                source=source).document
        else:
            with term.progress(f"Scanning {', '.join(paths) or 'this Mac'}") as progress:
                doc = commands.check(paths, options, cwd=Path.cwd(), source=source, progress=progress,
                                     jobs=jobs).document
    except MlcacheError as exc:
        if junit:  # a run that could not check anything still leaves a report that says so
            write_junit(junit, error=str(exc), checked=", ".join(paths) or "this Mac")
        publish_error(term, str(exc), annotate=github_annotations, step_summary=step_summary)
        raise
    if junit:
        write_junit(junit, doc)
    emit(term, "check", fmt, doc, output=output)
    publish(term, doc, annotate=github_annotations, step_summary=step_summary)
    _batch_errors(term, doc)  # exit 2 wins over 1: a PATH that could not be read was not checked
    if not doc["passed"]:
        raise click.exceptions.Exit(int(ExitCode.CHECK_FAILED))


@cli.command(short_help='Show what each launch of an app adds.', epilog=epilog("watch"))
@_path_argument("path")
@click.option("--process", help="Watch launches of the process with this name (as ps shows it).")
@click.option("--launches", type=click.IntRange(1), help="Stop after this many launches.")
@click.option("--interval", type=click.FloatRange(0.05), default=5.0, show_default=True,
              help="Without --process: seconds between snapshots.")
@click.option("--count", type=click.IntRange(1), help="Without --process: stop after this many changed intervals.")
@click.option("--poll", type=click.FloatRange(0.01), default=0.2, show_default=True, hidden=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json prints JSON Lines (mlcache.watch/2): one object per launch or interval, then a summary.")
@source_options(discovery=False)
def watch(path: str, process: str | None, launches: int | None, interval: float, count: int | None, poll: float,
          fmt: str, source) -> None:
    """Show what each launch of an app adds to PATH (Ctrl-C prints the summary).

    Entries that appear launch after launch are the recompile leak; the launch history is kept (by
    bundle id, in mlcache's state folder) as evidence for the re-specialization rule.
    """
    from mlcache_audit import commands
    from mlcache_audit.report import watch_event

    term = _terminal()
    what = f"launches of {process}" if process else f"changes every {interval:g} s"
    for event in commands.watch(path, process=process, launches=launches, interval=interval, count=count,
                                poll=poll, source=source,
                                ready=lambda: term.message(f"Watching {path} for {what} (Ctrl-C to stop)")):
        watch_event(term, fmt, event)


@cli.command(short_help="Print the JSON Schema of one of mlcache's documents.", epilog=epilog("schema"))
@click.argument("name", type=click.Choice(["scan", "scan-container", "scan-error", "plan", "apply", "restore", "snapshot", "diff",
                                          "check", "watch"]))
def schema(name: str) -> None:
    """Print the JSON Schema (draft 2020-12) of one of mlcache's documents."""
    from importlib import resources

    click.echo(resources.files("mlcache_audit").joinpath("schemas", f"{name}.schema.json").read_text("utf-8"), nl=False)


def main() -> None:
    """Entry point of the `mlcache` command."""
    # When the reader of our output goes away (`mlcache scan ... | head`), die of SIGPIPE as cat and
    # grep do (141 in a shell) instead of letting click exit 1, which here means "a budget was exceeded".
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        try:
            cli(prog_name="mlcache")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        # What is still buffered for standard output reaches it only now: a full disk (`> /dev/full`)
        # shows here, and is one line and exit 2, never the interpreter's "Exception ignored" at exit.
        sys.stdout.flush()
    except OSError as exc:  # also --version and --help, which click prints before any command runs
        if exc.errno not in _OUTPUT_ERRNOS:
            raise
        try:
            sys.stderr.write(f"mlcache: error: cannot write the output: {exc.strerror or exc}\n")
            sys.stderr.flush()
        except OSError:
            pass
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        code = int(ExitCode.BAD_INPUT)
    sys.exit(code)


if __name__ == "__main__":
    main()
