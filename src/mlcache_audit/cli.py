"""Command line: parses options, calls one stage function per command, renders the result."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from pathlib import Path

import click

from mlcache_audit import __version__
from mlcache_audit.docfields import read_document, write_output
from mlcache_audit.domain import RULES
from mlcache_audit.errors import ExitCode, MlcacheError, PathNotFound, PlanInvalid
from mlcache_audit.sources.archive import DEFAULT_MAX_MEMBERS
from mlcache_audit.units import parse_size


class _Failure(click.ClickException):
    """A typed core error, shown as one line: `mlcache: error: ...`."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"mlcache: error: {self.message}", err=True)


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
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the one catch-all, at the top
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise _Failure(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                           int(ExitCode.BAD_INPUT)) from None


def _terminal():
    from mlcache_audit.terminal import Terminal  # rich is imported only when something is drawn

    return Terminal(click.get_text_stream("stdout"), click.get_text_stream("stderr"),
                    color=None if not os.environ.get("NO_COLOR") else False)


def _nonempty_path(ctx, param, value):
    """An empty PATH (an unset shell variable) is an error, never the current folder."""
    if value == "":
        container = param.param_type_name == "argument" and param.name in ("path", "old", "new")
        raise PathNotFound(f"{param.human_readable_name} is empty (an unset shell variable?)",
                           hint="give a container folder, an .xcappdata, a backup or an archive" if container
                           else "give a file or folder name")
    return value


def _nonempty_file(ctx, param, value):
    """The same for a file or folder option, taken as text so that an empty value is seen as empty."""
    return None if value is None else Path(_nonempty_path(ctx, param, value))


def source_options(fn):
    """Options shared by every command that reads a container."""
    @click.option("--bundle-id", help="Only the container of this app (a backup or simulator holds many).")
    @click.option("--no-hash-cache", is_flag=True,
                  help="Do not read or write the content-hash cache (~/.cache/mlcache, ~/Library/Caches/mlcache "
                       "on macOS; MLCACHE_CACHE_DIR moves it).")
    @click.option("--max-archive-members", type=click.IntRange(1), default=DEFAULT_MAX_MEMBERS, show_default=True,
                  help="Refuse archives with more members than this (zip-bomb guard).")
    @click.option("--max-archive-bytes", default="256GiB", show_default=True,
                  help="Refuse archives that declare more uncompressed bytes than this (zip-bomb guard).")
    @click.option("--max-hash-bytes", default="64GiB", show_default=True,
                  help="Hash at most this many bytes in one run; past it, possible copies are left unjudged.")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


def _audit(term, path: str, *, bundle_id: str | None = None, no_hash_cache: bool = False,
           max_archive_members: int = DEFAULT_MAX_MEMBERS, max_archive_bytes: str = "256GiB",
           max_hash_bytes: str = "64GiB"):
    from mlcache_audit.audit import audit_path

    with term.progress(f"Scanning {path}") as progress:
        return audit_path(path, bundle_id=bundle_id, hash_cache=not no_hash_cache,
                          max_archive_members=max_archive_members, max_archive_bytes=parse_size(max_archive_bytes),
                          max_hash_bytes=parse_size(max_hash_bytes), progress=progress)


def _source_opts(kwargs: dict) -> dict:
    """Take the shared source options out of a command's keyword arguments, for `_audit`."""
    return {k: kwargs.pop(k) for k in ("bundle_id", "no_hash_cache", "max_archive_members", "max_archive_bytes",
                                   "max_hash_bytes")}


@click.group(cls=MlcacheGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlcache")
@click.option("--debug", is_flag=True, help="Show a traceback for unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Audit and clean Core ML caches in iOS and macOS app containers.

    PATH may be a data container pulled from a device, an .xcappdata, an Xcode Device Hub folder, a
    simulator tree, a macOS ~/Library/Containers/<id> folder, a device backup, or a zip or tar of any of them.

    Exit codes: 0 ok, 1 a budget was exceeded or an apply did not finish, 2 usage or unreadable input,
    130 interrupted.
    """
    ctx.ensure_object(dict)["debug"] = debug


@cli.command()
@click.argument("path", callback=_nonempty_path)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text for people, json (schema mlcache.scan/2) for tools.")
@click.option("--top", type=click.IntRange(1), default=10, show_default=True, help="How many of the largest artifacts to list.")
@source_options
def scan(path: str, fmt: str, top: int, **kwargs) -> None:
    """Show every Core ML artifact in PATH, what it costs, and why it grew."""
    term = _terminal()
    result = _audit(term, path, **_source_opts(kwargs))
    doc = result.to_dict()
    if fmt == "json":
        term.json(doc)
    else:
        from mlcache_audit.report import render_scan

        render_scan(term, doc, top=top)


def _rule_choice():
    return click.Choice(list(RULES))


@cli.command()
@click.argument("path", callback=_nonempty_path)
@click.option("--apply", "do_apply", is_flag=True, help="Carry out the plan (asks first on a terminal).")
@click.option("--yes", is_flag=True, help="Do not ask; needed to act when standard input is not a terminal.")
@click.option("--quarantine", callback=_nonempty_file,
              help="Move entries into this folder (with a manifest) instead of deleting them.")
@click.option("--plan-out", callback=_nonempty_file,
              help="Write the plan (JSON) to this file for review and `mlcache apply`.")
@click.option("--include-persistent", is_flag=True,
              help="Also remove duplicate and old model copies in persistent places (the newest copy stays).")
@click.option("--only", multiple=True, type=_rule_choice(), help="Act only on findings of this rule (repeatable).")
@click.option("--keep", multiple=True, type=_rule_choice(), help="Never act on findings of this rule (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json prints the plan (mlcache.plan/1), or with --apply the outcome (mlcache.apply/1).")
@source_options
def clean(path: str, do_apply: bool, yes: bool, quarantine: Path | None, plan_out: Path | None,
          include_persistent: bool, only: tuple[str, ...], keep: tuple[str, ...], fmt: str, **kwargs) -> None:
    """Preview (default) or carry out the removal of what is safe to remove in PATH.

    Removed by default: compile leftovers in tmp/, specializations of older OS builds, redundant
    specializations (the newest stays), interrupted writes, and ExecuTorch assets its index forgot.
    Documents/, Library/Preferences/ and anything outside the container are never touched.
    """
    from mlcache_audit.plan import make_plan

    term = _terminal()
    result = _audit(term, path, **_source_opts(kwargs))
    plan = make_plan(result, only=set(only) or None, keep=set(keep), include_persistent=include_persistent)
    if plan_out:
        write_output(plan_out, plan.to_json())
        term.message(f"Plan written to {plan_out}; carry it out with `mlcache apply {plan_out}`.")
    if not do_apply:
        if fmt == "json":
            term.json(plan.to_dict())
            return
        _run_apply(term, plan, dry_run=True, quarantine=quarantine, fmt=fmt)
        return
    _confirm(term, plan, yes, quarantine)
    _run_apply(term, plan, dry_run=False, quarantine=quarantine, fmt=fmt)


@cli.command(name="apply")
@click.argument("plan_file", callback=_nonempty_file)
@click.option("--yes", is_flag=True, help="Do not ask; needed when standard input is not a terminal.")
@click.option("--quarantine", callback=_nonempty_file,
              help="Move entries into this folder (with a manifest) instead of deleting them.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def apply_cmd(plan_file: Path, yes: bool, quarantine: Path | None, fmt: str) -> None:
    """Carry out a plan saved by `mlcache clean --plan-out`, re-checking every entry first."""
    from mlcache_audit.plan import Plan

    term = _terminal()
    try:
        doc = json.loads(read_document(plan_file, "plan file"))
    except (ValueError, UnicodeDecodeError):
        raise PlanInvalid(f"{plan_file} is not JSON; expected a plan from `mlcache clean --plan-out`") from None
    plan = Plan.from_dict(doc, source=str(plan_file))
    _confirm(term, plan, yes, quarantine)
    _run_apply(term, plan, dry_run=False, quarantine=quarantine, fmt=fmt)


def stdin_is_terminal() -> bool:
    """Prompts only when a person can answer; never when standard input is a pipe or /dev/null."""
    from mlcache_audit.terminal import is_terminal

    return is_terminal(sys.stdin)


def _confirm(term, plan, yes: bool, quarantine: Path | None) -> None:
    from mlcache_audit.units import format_size

    n = sum(len(c.actions) for c in plan.containers)
    if yes or n == 0:
        return
    if not stdin_is_terminal():
        raise PlanInvalid("refusing to act without confirmation: standard input is not a terminal",
                          hint="review with `mlcache clean PATH`, then pass --yes")
    verb = f"Move {n} entries into {quarantine}" if quarantine else f"Delete {n} entries"
    if not click.confirm(f"{verb} ({format_size(plan.reclaimable_bytes)})?", default=False, err=True):
        term.message("Nothing was changed.")
        raise click.exceptions.Exit(int(ExitCode.OK))


def _run_apply(term, plan, *, dry_run: bool, quarantine: Path | None, fmt: str) -> None:
    from mlcache_audit.apply import apply_plan
    from mlcache_audit.report import render_apply

    outcome = apply_plan(plan, dry_run=dry_run, quarantine=quarantine)
    if fmt == "json":
        term.json(outcome.to_dict())
    else:
        render_apply(term, outcome.to_dict(), plan.to_dict())
    if not outcome.complete:
        raise click.exceptions.Exit(int(ExitCode.CHECK_FAILED))


@cli.command()
@click.argument("directory", callback=_nonempty_file)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def restore(directory: Path, fmt: str) -> None:
    """Put back everything a `--quarantine DIR` run moved aside, exactly where it was."""
    from mlcache_audit.apply import restore_quarantine
    from mlcache_audit.report import render_restore

    term = _terminal()
    if not directory.is_dir():
        raise PathNotFound(f"no such quarantine folder: {directory}")
    result = restore_quarantine(directory)
    render_restore(term, result.to_dict()) if fmt == "text" else term.json(result.to_dict())
    if not result.complete:
        raise click.exceptions.Exit(int(ExitCode.CHECK_FAILED))


@cli.command()
@click.argument("path", callback=_nonempty_path)
@click.option("-o", "--output", callback=_nonempty_file,
              help="Write the snapshot here (default: standard output).")
@source_options
def snapshot(path: str, output: Path | None, **kwargs) -> None:
    """Record a compact JSON snapshot (mlcache.snapshot/1) of PATH, to compare later."""
    from mlcache_audit.gate import snapshot as make_snapshot

    term = _terminal()
    doc = make_snapshot(_audit(term, path, **_source_opts(kwargs)))
    if output:
        write_output(output, json.dumps(doc, indent=2) + "\n")
        term.message(f"Snapshot written to {output}")
    else:
        term.json(doc)


def _snapshot_of(term, path: str) -> dict:
    from mlcache_audit.gate import is_snapshot_file, load_snapshot
    from mlcache_audit.gate import snapshot as make_snapshot

    p = Path(path)
    if is_snapshot_file(p):
        return load_snapshot(p)
    return make_snapshot(_audit(term, path))


@cli.command(name="diff")
@click.argument("old", callback=_nonempty_path)
@click.argument("new", callback=_nonempty_path)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def diff_cmd(old: str, new: str, fmt: str) -> None:
    """Old, new and delta per artifact kind; OLD and NEW are snapshots or containers."""
    from mlcache_audit.gate import diff_dict
    from mlcache_audit.report import render_diff

    term = _terminal()
    doc = diff_dict(_snapshot_of(term, old), _snapshot_of(term, new))
    term.json(doc) if fmt == "json" else render_diff(term, doc)


@cli.command()
@click.argument("path", callback=_nonempty_path)
@click.option("--baseline", callback=_nonempty_file, help="A snapshot to measure growth from.")
@click.option("--max-growth", help="Fail when Core ML grew by more than this since the baseline (500KB, 1MB, 2GiB).")
@click.option("--max-growth-pct", type=float, help="Fail when Core ML grew by more than N percent since the baseline.")
@click.option("--max-total", help="Fail when Core ML uses more than this in total.")
@click.option("--max-copies", type=click.IntRange(0), help="Fail when one model has more than N copies.")
@click.option("--fail-on", multiple=True, type=_rule_choice(), help="Fail when a finding of this rule exists (repeatable).")
@click.option("--config", callback=_nonempty_file,
              help="Budgets file (default: mlcache.toml, else [tool.mlcache] in pyproject.toml).")
@click.option("--junit", callback=_nonempty_file, help="Write a JUnit XML report here.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@source_options
def check(path: str, baseline: Path | None, max_growth: str | None, max_growth_pct: float | None,
          max_total: str | None, max_copies: int | None, fail_on: tuple[str, ...], config: Path | None,
          junit: Path | None, fmt: str, **kwargs) -> None:
    """The CI gate: exit 1 when a budget is exceeded, 0 when all hold, 2 on bad input.

    Under GitHub Actions it also prints one ::error line per exceeded budget and appends a Markdown
    summary to $GITHUB_STEP_SUMMARY.
    """
    from mlcache_audit.errors import BudgetConfigError
    from mlcache_audit.gate import (
        budgets_from,
        github_annotations,
        junit_xml,
        load_config,
        load_snapshot,
        write_github_summary,
    )
    from mlcache_audit.gate import (
        check as run_check,
    )
    from mlcache_audit.gate import (
        snapshot as make_snapshot,
    )
    from mlcache_audit.report import render_check

    term = _terminal()
    settings, _ = load_config(config, Path.cwd())
    budgets = budgets_from(settings, max_total=max_total, max_growth=max_growth, max_growth_pct=max_growth_pct,
                           max_copies=max_copies, fail_on=list(fail_on), baseline=baseline)
    if not budgets.any():
        raise BudgetConfigError("no budget given", hint="use --max-total, --max-growth with --baseline, --max-copies "
                                                        "or --fail-on, or a [tool.mlcache] config")
    base = load_snapshot(budgets.baseline) if budgets.baseline else None
    current = make_snapshot(_audit(term, path, **_source_opts(kwargs)))
    result = run_check(current, budgets, base)
    if junit:
        write_output(junit, junit_xml(result))
    if fmt == "json":
        term.json(result.to_dict())
    else:
        render_check(term, result.to_dict())
        if os.environ.get("GITHUB_ACTIONS") == "true":
            for line in github_annotations(result):
                term.stdout.write(line + "\n")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        write_github_summary(result)
    if not result.passed:
        raise click.exceptions.Exit(int(ExitCode.CHECK_FAILED))


def main() -> None:
    """Entry point of the `mlcache` command."""
    # When the reader of our output goes away (`mlcache scan ... | head`), die of SIGPIPE as cat and
    # grep do (141 in a shell) instead of letting click exit 1, which here means "a budget was exceeded".
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    cli(prog_name="mlcache")


if __name__ == "__main__":
    main()
