"""One function per command: typed options in, one frozen result out.

cli.py parses options, calls exactly one of these and renders the result; nothing here knows of
click or of an output format. A dry run returns the same type as a real run, so the two cannot
drift apart. Environment facts (the GitHub step-summary file, the current folder) come in as
arguments, never read here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlcache_audit.batch import PathFailure, each_path, fold_overlaps, run_batch
from mlcache_audit.fingerprint import DEFAULT_MAX_HASH_BYTES
from mlcache_audit.sources.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_CONTAINERS, DEFAULT_MAX_MEMBERS

Progress = Callable[[str, int], None] | None


@dataclass(frozen=True)
class SourceOptions:
    """How to read the containers at a path."""

    bundle_id: str | None = None
    hash_cache: bool = True
    max_archive_members: int = DEFAULT_MAX_MEMBERS
    max_archive_bytes: int = DEFAULT_MAX_BYTES
    max_hash_bytes: int = DEFAULT_MAX_HASH_BYTES
    home: str | None = None  # with no PATH: the home folder to discover in (--home, MLCACHE_HOME)
    tmpdir: str | None = None  # with no PATH: the temp folder holding MPSGraph scratch (--tmpdir)
    max_containers: int = DEFAULT_MAX_CONTAINERS  # the container search stops here, and says so
    exclude: frozenset[str] = frozenset()  # identities of containers another PATH of this run counts


def _audit(path: str | None, source: SourceOptions, progress: Progress, plan_state: bool = False, keep=None):
    """The containers at PATH, or with no PATH every client discovered on this Mac (or in --home);
    with `keep`, what it makes of each container's audit (audit.audit_containers)."""
    from mlcache_audit.audit import audit_discovered, audit_path

    if path is None:
        from mlcache_audit.sources.discover import default_places

        return audit_discovered(default_places(source.home, source.tmpdir), bundle_id=source.bundle_id,
                                hash_cache=source.hash_cache, max_hash_bytes=source.max_hash_bytes, progress=progress,
                                plan_state=plan_state, keep=keep)
    return audit_path(path, bundle_id=source.bundle_id, hash_cache=source.hash_cache,
                      max_archive_members=source.max_archive_members, max_archive_bytes=source.max_archive_bytes,
                      max_hash_bytes=source.max_hash_bytes, progress=progress, plan_state=plan_state,
                      max_containers=source.max_containers, exclude=source.exclude, keep=keep)


# -- scan -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanOutcome:
    document: dict  # mlcache.scan/3


def scan(path: str | None, source: SourceOptions = SourceOptions(), progress: Progress = None) -> ScanOutcome:
    from mlcache_audit.gcpause import collector_paused
    from mlcache_audit.report.json import container_document, scan_document

    result = _audit(path, source, progress, keep=container_document)  # each container's document, as it is done
    with collector_paused():  # a document of many artifacts: dicts without cycles
        return ScanOutcome(scan_document(result, documents=result.containers))


def _scan_document(path: str, source: SourceOptions, progress: Progress = None) -> dict:
    """One path's scan document (in a worker process: pickled back whole, containers, not files)."""
    return scan(path, source, progress).document


def _snapshot_document(path: str, source: SourceOptions, progress: Progress = None) -> dict:
    return snapshot(path, source, progress)


def scan_lines(paths: tuple[str, ...], source: SourceOptions = SourceOptions(), *, jobs: int = 1,
               failed: list | None = None):
    """`scan --format jsonl`: the text of one line per container, in pieces, as each path finishes
    (none: this Mac); a PATH of several that cannot be read is one `mlcache.scan-error/1` line, its
    document also put in `failed`, and the rest go on."""
    from mlcache_audit.report.json import error_line

    if not paths:
        for _, lines in each_path((None,), _scan_lines_of, source):
            yield from lines
        return
    from mlcache_audit.workers import clamp_jobs

    kept, options, _ = fold_overlaps(paths, source)
    for _, lines in each_path(kept, _scan_lines_of, options, jobs=clamp_jobs(jobs)[0]):
        if isinstance(lines, PathFailure):
            error = lines.to_dict()
            if failed is not None:
                failed.append(error)
            yield error_line(error)
        elif isinstance(lines, str):  # a worker's lines, sent back as their text
            yield lines
        else:
            yield from lines


def _scan_lines_of(path: str | None, source: SourceOptions, progress: Progress = None):
    """One path's finished JSON Lines (report.json.ContainerLines), made where it was scanned: in a
    worker they are encoded there and sent back as text."""
    from mlcache_audit.report.json import ContainerLines

    doc = _scan_document(path, source, progress)
    return ContainerLines(path if path is not None else doc["path"], doc)


def scan_many(paths: tuple[str, ...], source: SourceOptions = SourceOptions(), *, jobs: int = 1,
              progress: Progress = None) -> ScanOutcome:
    """One document holding the containers of every path (each container names its source path)."""
    from mlcache_audit.report.json import merge_scan_documents

    batch = run_batch(paths, _scan_document, source, jobs=jobs, progress=progress)
    return ScanOutcome(merge_scan_documents(batch.done, errors=[f.to_dict() for f in batch.failed],
                                            notes=batch.notes))


# -- clean, apply, restore ------------------------------------------------------------------------
@dataclass(frozen=True)
class CleanOutcome:
    """A plan and what happened to it: "would ..." outcomes for a dry run, the real ones otherwise."""

    plan: object  # plan.Plan
    result: object  # apply.ApplyResult
    confirmed: bool = True  # False when the person answered no: nothing was done


@dataclass(frozen=True)
class Selection:
    only: frozenset[str] = frozenset()
    keep: frozenset[str] = frozenset()
    include_persistent: bool = False


def clean(path: str | None, *, source: SourceOptions = SourceOptions(), selection: Selection = Selection(),
          act: bool = False, quarantine: Path | None = None, confirm: Callable[[object], bool] | None = None,
          plan_sink: Callable[[object], None] | None = None, progress: Progress = None,
          all_clients: bool = False) -> CleanOutcome:
    """Plan what can go; act on it only with `act` and after `confirm(plan)` says yes. Discovered
    clients (no PATH) are acted on only with `all_clients` too: an unset shell variable must never
    clean a whole Mac."""
    from mlcache_audit.errors import PlanInvalid

    if act and path is None and not all_clients:
        raise PlanInvalid("refusing to act on every ML cache of this Mac without --all-clients",
                          hint="preview with `mlcache clean`, then add --all-clients --apply, or give a PATH")
    from mlcache_audit.apply import apply_plan
    from mlcache_audit.plan import make_plan

    audit = _audit(path, source, progress, plan_state=True)
    homes = sorted({ca.container.home for ca in audit.containers if ca.container.home})
    if act and homes and not all_clients:  # a home named as PATH is discovery, as no PATH is
        raise PlanInvalid(f"refusing to act on every ML cache of the home folder {homes[0]} without --all-clients",
                          hint="preview with `mlcache clean`, then add --all-clients --apply, or give one client's "
                               "container as PATH")
    plan = make_plan(audit, only=set(selection.only) or None, keep=set(selection.keep),
                     include_persistent=selection.include_persistent)
    # The containers were detected for this plan a moment ago: apply re-checks each target and runs
    # the in-use check again (after the confirmation), but does not detect the containers twice.
    # The plan holds what acting needs; the audit's artifacts go before anything is acted on.
    known = [ca.container for ca in audit.containers]
    del audit
    if plan_sink is not None:
        plan_sink(plan)
    if act and confirm is not None and not confirm(plan):
        return CleanOutcome(plan, apply_plan(plan, dry_run=True, quarantine=quarantine), confirmed=False)
    return CleanOutcome(plan, apply_plan(plan, dry_run=not act, quarantine=quarantine, known=known))


def apply(plan_file: Path, *, quarantine: Path | None = None,
          confirm: Callable[[object], bool] | None = None) -> CleanOutcome:
    """Carry out a saved plan, re-checking every entry first."""
    from mlcache_audit.apply import apply_plan
    from mlcache_audit.docfields import load_json, read_document
    from mlcache_audit.errors import DocumentInvalid, PlanInvalid
    from mlcache_audit.fsio import readable
    from mlcache_audit.plan import Plan

    try:
        doc = load_json(read_document(plan_file, "plan file"), f"plan file {readable(str(plan_file))}")
    except DocumentInvalid as exc:
        raise PlanInvalid(exc.message, hint="expected a plan from `mlcache clean --plan-out`") from None
    plan = Plan.from_dict(doc, source=str(plan_file))
    if plan.schema == "mlcache.plan/1":
        plan = _with_evidence(plan)
    from mlcache_audit.outputs import GUARD

    GUARD.add_roots([c.root for c in plan.containers if not c.read_only])
    if confirm is not None and not confirm(plan):
        return CleanOutcome(plan, apply_plan(plan, dry_run=True, quarantine=quarantine), confirmed=False)
    return CleanOutcome(plan, apply_plan(plan, quarantine=quarantine))


def _with_evidence(old):
    """A plan/1 carries no evidence for its actions: re-plan its containers as it was made (same PATH or
    discovery, same rules) and give each action the new plan's evidence when the new plan holds it too
    (same container, path, rule and state); the others keep none, and apply skips them as
    "no evidence (plan/1)"."""
    from dataclasses import replace

    from mlcache_audit.plan import make_plan

    disc = old.discovery
    source = SourceOptions(home=disc["home"], tmpdir=disc["tmpdir"]) if disc else SourceOptions()
    new = make_plan(_audit(None if disc else old.path, source, None, plan_state=True), only=set(old.rules),
                    include_persistent=old.include_persistent)
    fresh = {(c.key, a.path, a.rule, a.seen): a.evidence for c in new.containers for a in c.actions}
    return replace(old, containers=tuple(
        replace(c, actions=tuple(replace(a, evidence=fresh.get((c.key, a.path, a.rule, a.seen))) for a in c.actions))
        for c in old.containers))


def restore(directory: Path):
    """Put back what a quarantine holds (apply.RestoreResult)."""
    from mlcache_audit.apply import restore_quarantine
    from mlcache_audit.errors import PathNotFound

    if not directory.is_dir():
        raise PathNotFound(f"no such quarantine folder: {directory}")
    return restore_quarantine(directory)


# -- CI -------------------------------------------------------------------------------------------
def snapshot(path: str | None, source: SourceOptions = SourceOptions(), progress: Progress = None) -> dict:
    """`mlcache.snapshot/2` of PATH."""
    from mlcache_audit.gate import snapshot as make_snapshot

    return make_snapshot(_audit(path, source, progress))


def snapshot_many(paths: tuple[str, ...], source: SourceOptions = SourceOptions(), *, jobs: int = 1,
                  progress: Progress = None) -> dict:
    """One snapshot of every path (several paths: their containers together, totals over all)."""
    from mlcache_audit.gate import merge_snapshots

    if len(paths) <= 1:
        return snapshot(paths[0] if paths else None, source, progress)
    batch = run_batch(paths, _snapshot_document, source, jobs=jobs, progress=progress)
    return merge_snapshots([doc for _, doc in batch.done], errors=[f.to_dict() for f in batch.failed],
                           notes=batch.notes)


def _snapshot_of(path: str, source: SourceOptions, progress: Progress) -> dict:
    from mlcache_audit.gate import is_snapshot_file, load_snapshot

    p = Path(path)
    return load_snapshot(p) if is_snapshot_file(p) else snapshot(path, source, progress)


def diff(old: str, new: str, source: SourceOptions = SourceOptions(), progress: Progress = None) -> dict:
    """`mlcache.diff/3`: OLD and NEW (snapshots or containers) for one app, new minus old."""
    import dataclasses

    from mlcache_audit.gate import diff as diff_rows
    from mlcache_audit.gate import select_app
    from mlcache_audit.report.json import diff_document

    unfiltered = dataclasses.replace(source, bundle_id=None)
    a = select_app(_snapshot_of(old, unfiltered, progress), source.bundle_id, "old")
    b = select_app(_snapshot_of(new, unfiltered, progress), source.bundle_id, "new")
    from mlcache_audit.gate import other_app

    warning = other_app(a, b)
    return diff_document(a, b, diff_rows(a, b), bundle_id=source.bundle_id, notes=[warning] if warning else [])


@dataclass(frozen=True)
class BudgetOptions:
    max_total: str | None = None
    max_growth: str | None = None
    max_growth_pct: float | None = None
    max_copies: int | None = None
    fail_on: tuple[str, ...] = ()
    baseline: Path | None = None
    config: Path | None = None
    allow_other_app: bool = False


@dataclass(frozen=True)
class CheckOutcome:
    document: dict  # mlcache.check/3


def check(paths: tuple[str, ...], budgets: BudgetOptions, *, cwd: Path, source: SourceOptions = SourceOptions(),
          progress: Progress = None, jobs: int = 1) -> CheckOutcome:
    """The CI gate: budgets from options, else the nearest config file (named in the result)."""
    from mlcache_audit.errors import BudgetConfigError
    from mlcache_audit.gate import budgets_from, load_config, load_snapshot
    from mlcache_audit.gate import check as run_check
    from mlcache_audit.report.json import check_document

    settings, config_path = load_config(budgets.config, cwd)
    if config_path is not None:
        from mlcache_audit.outputs import GUARD

        GUARD.add_input("the config file", config_path)
    b = budgets_from(settings, max_total=budgets.max_total, max_growth=budgets.max_growth,
                     max_growth_pct=budgets.max_growth_pct, max_copies=budgets.max_copies,
                     fail_on=list(budgets.fail_on), baseline=budgets.baseline,
                     allow_other_app=budgets.allow_other_app)
    if not b.any():
        raise BudgetConfigError("no budget given", hint="use --max-total, --max-growth with --baseline, --max-copies "
                                                        "or --fail-on, or a [tool.mlcache] config")
    base = load_snapshot(b.baseline) if b.baseline else None
    current = snapshot_many(paths, source, jobs=jobs, progress=progress)
    return CheckOutcome(check_document(run_check(current, b, base, config_path)))


# -- watch ----------------------------------------------------------------------------------------
def watch(path: str, *, process: str | None, launches: int | None = None, interval: float = 5.0,
          count: int | None = None, poll: float = 0.2, source: SourceOptions = SourceOptions(),
          ready: Callable[[], None] | None = None):
    """Events (dicts, `mlcache.watch/1`) as launches or intervals happen, then a summary."""
    from mlcache_audit.watch import Snapshot, follow

    return follow(lambda: Snapshot.of(_audit(path, source, None)), process=process, launches=launches,
                  interval=interval, count=count, poll=poll, ready=ready)


# -- the growth gate per launch --------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchOptions:
    command: str
    launches: int = 5
    budget: str | None = None  # --max-growth-per-launch
    timeout: float = 600.0
    stability: bool = False


def check_launches(path: str | None, opts: LaunchOptions, budgets: BudgetOptions, *, cwd: Path,
                   source: SourceOptions = SourceOptions()) -> CheckOutcome:
    """`check --launch CMD --launches N`: run the app N times on one container (one PATH, or one
    client of this Mac with --bundle-id) and gate the growth each launch adds (launchgate.py)."""
    from mlcache_audit.errors import BudgetConfigError
    from mlcache_audit.gate import budgets_from, load_config, load_snapshot
    from mlcache_audit.gate import check as run_check
    from mlcache_audit.gate import snapshot as make_snapshot
    from mlcache_audit.launchgate import MIN_LAUNCHES, gate_document, judge, per_launch_budget, run_launches
    from mlcache_audit.report.json import check_document
    from mlcache_audit.units import parse_size

    if opts.launches < MIN_LAUNCHES:
        raise BudgetConfigError(f"--launches {opts.launches}: the gate needs at least {MIN_LAUNCHES} launches",
                                hint="the first launch is never gated; the rest are judged by their median")
    if not opts.stability and opts.budget is None:
        raise BudgetConfigError("--launch needs --max-growth-per-launch SIZE (or --stability to suggest one)")
    budget = parse_size(opts.budget) if opts.budget is not None else None
    settings, config_path = load_config(budgets.config, cwd)
    b = budgets_from(settings, max_total=budgets.max_total, max_growth=budgets.max_growth,
                     max_growth_pct=budgets.max_growth_pct, max_copies=budgets.max_copies,
                     fail_on=list(budgets.fail_on), baseline=budgets.baseline,
                     allow_other_app=budgets.allow_other_app)
    last = {}

    def measure():
        audit = _audit(path, source, None)
        if len(audit.containers) != 1:
            names = sorted(str(ca.container.bundle_id or ca.container.client) for ca in audit.containers)
            raise BudgetConfigError(f"the launch gate measures one app, and {len(names)} were found"
                                    + (f": {', '.join(names[:8])}" if names else ""),
                                    hint="name one with --bundle-id")
        last["audit"] = audit
        ca = audit.containers[0]
        rule_of = {p: f.rule for f in ca.diagnosis.findings for p in f.paths}
        arts = {a.path: (a.bytes, rule_of.get(a.path), a.kind, a.model.get("class_name"), a.producer)
                for a in ca.scan.artifacts}
        return ca.scan.coreml_bytes, arts

    first, runs = run_launches(opts.command, opts.launches, measure, timeout=opts.timeout)
    verdict = judge([r.delta for r in runs], None if opts.stability else budget)
    current = make_snapshot(last["audit"])
    base = load_snapshot(b.baseline) if b.baseline else None
    result = run_check(current, b, base, config_path)
    doc = check_document(result)
    gate = gate_document(opts.command, first, runs, verdict, budget, opts.stability)
    if not opts.stability:
        doc["budgets"].insert(0, per_launch_budget(verdict, budget, runs))
        doc["passed"] = doc["passed"] and verdict.passed
    doc["launches"] = gate
    return CheckOutcome(doc)
