"""Text for people: the one module that uses rich. It reads the JSON documents and the plan."""

from __future__ import annotations

import posixpath
import re
import shlex
from collections import defaultdict

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from mlcache_audit.domain import COREAI_CACHE, E5_CACHE, KIND
from mlcache_audit.report.summary import (
    budget_actual,
    budget_limit,
    fates,
    header_facts,
    largest,
    launch_rows,
    launch_verdict,
    verdict,
    why_text,
)
from mlcache_audit.sources.base import display_path
from mlcache_audit.terminal import Terminal
from mlcache_audit.units import format_signed_size, format_size, plural

MAX_NOTES = 8
_HEX64 = re.compile(r"([0-9A-Fa-f]{8})[0-9A-Fa-f]{56}")


def short_path(path: str) -> str:
    """For tables only: 64-hex cache names shortened to their first 8 digits (JSON keeps them whole)."""
    return _HEX64.sub(r"\1…", display_path(path))
SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}


# -- scan -----------------------------------------------------------------------------------------
def render_scan(term: Terminal, doc: dict, *, top: int = 10, why: bool = False) -> None:
    """Verdict first (per container, and across them when there are several), then the findings,
    then where the bytes are."""
    out = term.out
    short = term.stdout_is_terminal  # long hashes are shortened only for eyes, never in a file or a pipe
    containers = doc["containers"]
    if not containers:
        out.print(f"No ML caches found under {escape(doc['path'])}.")
    if len(containers) > 1:
        total = sum(c["reclaimable_bytes"] for c in containers)
        worst = max(containers, key=lambda c: c["reclaimable_bytes"])
        out.print(f"[bold]{len(containers)} clients: {format_size(total)} can be freed[/bold]"
                  + (f", most in {escape(worst['bundle_id'] or worst.get('client') or 'an unknown app')} "
                     f"({format_size(worst['reclaimable_bytes'])})" if total else "") + ".")
        _clients_table(out, containers)
    for place in doc.get("system", []):
        size = format_size(place["bytes"]) if place["bytes"] is not None else "size unknown"
        out.print(f"[yellow]{escape(place['name'])}[/yellow] {escape(place['path'])}: "
                  f"{'observable' if place['observable'] else 'not observable'} ({size}); {escape(place['reason'])}")
    unreadable = (doc.get("discovery") or {}).get("unreadable", [])
    for place in unreadable:
        # EPERM on a readable-looking folder is how macOS's privacy controls (TCC) refuse a terminal.
        hint = "; to include it, give the terminal Full Disk Access" if place["reason"] == "Operation not permitted" else ""
        out.print(f"[yellow]Not searched, cannot be read:[/yellow] {escape(place['path'])} "
                  f"({escape(place['reason'])}{hint})")
    skipped = (doc.get("discovery") or {}).get("skipped", [])
    for place in skipped:
        out.print(f"[yellow]Skipped:[/yellow] {escape(place['path'])}: {escape(place['reason'])}")
    if doc.get("held_open"):
        _held(out, doc["held_open"])
    if len(containers) > 1 or doc.get("system") or unreadable or skipped:
        out.print()
    for c in containers:
        _container_header(out, c)
        _verdict(out, c, doc["path"], doc.get("discovery"))
        findings = c["findings"]
        if findings:
            out.print("[bold]Findings[/bold] (largest first)")
            fate = fates(c)
            for f in findings:
                _finding(out, f, short, why, fate)
        else:
            out.print("[green]No findings:[/green] nothing here looks like ML cache growth.")
        out.print()
        _summary_table(out, c)
        rows, n = largest(c["artifacts"], top)
        if rows:
            t = Table(title=f"Largest ML cache artifacts (top {len(rows)} of {n}, identical copies together)",
                      title_justify="left", show_edge=False)
            t.add_column("size", justify="right")
            t.add_column("kind")
            t.add_column("path", overflow="fold")
            t.add_column("model / producer", overflow="fold")
            for r in rows:
                size = f"{r.copies} x {format_size(r.bytes_each)}" if r.copies > 1 else format_size(r.bytes_each)
                path = (short_path(r.path) if short else display_path(r.path))
                if r.copies > 1:
                    path = f"{plural(r.copies, 'copy')}, newest {path}"
                t.add_row(size, r.kind, escape(path), escape(" / ".join(x for x in (r.name, r.producer) if x)))
            out.print(t)
            out.print(_where_tree(c["artifacts"]))
        if len(c["timeline"]) > 1:
            _timeline(out, c["timeline"])
        _notes(out, c["notes"])
        out.print()


def _held(out: Console, held: dict) -> None:
    """Deleted files still held open: space no walk sees, back only when the process lets go."""
    from mlcache_audit.held import remedy

    if held["processes"]:
        out.print(f"[red]HIGH  [/red] [bold]Deleted files still held open[/bold]: {format_size(held['bytes'])} in "
                  f"{plural(held['files'], 'file')}, held by {plural(len(held['processes']), 'process')}")
        for p in held["processes"]:
            _para(out, f"- {escape(p['process'])} (pid {p['pid']}): {format_size(p['bytes'])} in "
                       f"{plural(p['files'], 'file')}; {escape(remedy(p))}", 7)
    elif held["bytes"] is not None:
        out.print("No deleted files held open by " + ("any process" if held["complete"] else "this user's processes")
                  + " were seen below these places.")
    if held.get("note"):
        _para(out, f"[dim]{escape(held['note'])}[/dim]", 7)


def _clients_table(out: Console, containers: list[dict]) -> None:
    """Every client (app, simulator app, process) with its ML cache bytes, largest first."""
    t = Table(title="Clients (largest first)", title_justify="left", show_edge=False)
    for col, justify in (("client", "left"), ("form", "left"), ("ML caches", "right"), ("reclaimable", "right"),
                         ("worst finding", "left")):
        t.add_column(col, justify=justify, overflow="fold")
    rank = {"high": 0, "medium": 1, "low": 2, "info": 3}
    for c in sorted(containers, key=lambda c: (-c["coreml_bytes"], str(c.get("client")))):
        worst = min(c["findings"], key=lambda f: (rank.get(f["severity"], 9), -f["reclaimable_bytes"]), default=None)
        where = c.get("info", {}).get("device")
        name = (c.get("client") or c["bundle_id"] or "unknown") + (f" ({where})" if where else "")
        t.add_row(escape(name), c["form"], format_size(c["coreml_bytes"]), format_size(c["reclaimable_bytes"]),
                  escape(f"{worst['rule']} ({worst['severity']})") if worst else "")
    out.print(t)


def _para(out: Console, markup: str, indent: int = 7) -> None:
    """A paragraph whose wrapped lines keep their indent (readable at 80 columns)."""
    out.print(Padding(Text.from_markup(markup), (0, 0, 0, indent), expand=False))


def _verdict(out: Console, c: dict, path: str, discovery: dict | None = None) -> None:
    v = verdict(c, path, discovery)
    style = "bold green" if not v.reclaimable_bytes else "bold yellow"
    out.print(f"[{style}]Verdict: {escape(v.headline)}.[/{style}]")
    if v.cause:
        _para(out, f"[dim]Cause:[/dim] {escape(v.cause)}", 2)
    if v.next_command:
        _para(out, f"[dim]Next:[/dim]  {escape(v.next_command)}" +
              (f"  [dim]({escape(v.next_note)})[/dim]" if v.next_note else ""), 2)
    out.print()


def _container_header(out: Console, c: dict) -> None:
    out.print(f"[bold]{escape(c['bundle_id'] or c.get('client') or 'unknown bundle id')}[/bold]  {c['form']} "
              f"({c['source']})  {escape(display_path(c['root']))}")
    facts = header_facts(c)
    for kind, label, text in facts:
        if kind in ("device", "simulator"):
            out.print(f"  {label}: {escape(text)}")
    share = (c["coreml_bytes"] / c["total_bytes"] * 100) if c["total_bytes"] else 0.0
    out.print(f"  {format_size(c['total_bytes'])} in {plural(c['file_count'], 'file')}; ML caches account for "
              f"{format_size(c['coreml_bytes'])} ({share:.0f}%)")
    for kind, label, text in facts:
        if kind in ("not_observable", "read_only"):
            out.print(f"  [yellow]{label}:[/yellow] {escape(text)}")
        elif kind == "pull_note":
            out.print(f"  [dim]{label}: {escape(text)}[/dim]")
    out.print()


MAX_PATHS = 6


def _finding(out: Console, f: dict, short: bool, why: bool = False, fate: dict | None = None) -> None:
    style = SEVERITY_STYLE.get(f["severity"], "")
    reclaim = f"{format_size(f['repair_bytes'])} to repair with --only {f['rule']}" if f.get("repair_bytes") else \
        f"{format_size(f['reclaimable_bytes'])} reclaimable" + (" with --include-persistent" if f["opt_in"] else "")
    out.print(f"[{style}]{f['severity'].upper():6}[/{style}] [bold]{escape(f['title'])}[/bold] "
              f"({f['rule']}): {reclaim}")
    _para(out, escape(f["summary"]))
    ev = f.get("evidence") or {}
    if f["rule"] == "repeated-compile":
        bits = [f"{plural(ev.get('copies') or 0, 'copy')} of {format_size(ev.get('bytes_per_copy') or 0)}"]
        if ev.get("bytes_per_day"):
            bits.append(f"growing {format_size(ev['bytes_per_day'])}/day")
        if ev.get("bytes_per_launch"):
            bits.append(f"{format_size(ev['bytes_per_launch'])} per launch")
        _para(out, ", ".join(bits))
    if f.get("explanation"):
        _para(out, f"[dim]Why:[/dim] {escape(f['explanation'])}")
    if f.get("remedy"):
        _para(out, f"[dim]Fix:[/dim] {escape(f['remedy'])}")
    fate = fate if fate is not None else {}
    reclaimable = set(f["reclaimable_paths"])
    # Every path the finding concerns, what can go first; long lists end with a count. A path has one
    # fate in the whole report (summary.fates), whichever finding lists it.
    ordered = sorted(f["paths"], key=lambda p: (p not in reclaimable, p))
    for p in ordered[:MAX_PATHS]:
        mark = fate.get(p, "kept")
        _para(out, f"- {escape(short_path(p) if short else display_path(p))} [dim]({mark})[/dim]", 7)
    if len(ordered) > MAX_PATHS:
        _para(out, f"... and {len(ordered) - MAX_PATHS} more ({sum(p in reclaimable for p in ordered[MAX_PATHS:])} "
                   "can go; every path is in --format json)", 7)
    if why and f.get("links"):
        _para(out, "[dim]Evidence, per path that can go:[/dim]")
        for link in f["links"]:
            p = link.get("path", "")
            _para(out, f"- {escape(short_path(p) if short else display_path(p))}: {escape(why_text(link['evidence']))}", 9)


def _summary_table(out: Console, c: dict) -> None:
    t = Table(title="Where the bytes are", title_justify="left", show_edge=False)
    t.add_column("what")
    t.add_column("bytes", justify="right")
    t.add_column("items", justify="right")
    counts: dict[str, int] = defaultdict(int)
    for a in c["artifacts"]:
        counts[a["kind"]] += 1
    for kind, n in c["bytes_by_kind"].items():
        t.add_row(KIND[kind].label if kind in KIND else kind, format_size(n), str(counts[kind]))
    for area, n in c["other_bytes_by_area"].items():
        t.add_row(f"other files: {area}", format_size(n), "")
    t.add_row("[bold]total[/bold]", f"[bold]{format_size(c['total_bytes'])}[/bold]", str(c["file_count"]) + " files")
    out.print(t)


def _where_tree(artifacts: list[dict]) -> Tree:
    """Artifacts grouped by the folder that holds them, folded to the folders that matter."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for a in artifacts:
        parent = posixpath.dirname(a["path"])
        for cache in (E5_CACHE, COREAI_CACHE):
            if cache in parent:
                parent = parent[: parent.index(cache) + len(cache)] + "/" + a["path"].split(cache + "/")[1].split("/")[0]
                break
        groups[parent or "."].append(a)
    tree = Tree("[bold]Where they are[/bold]")
    for parent in sorted(groups):
        items = groups[parent]
        kinds: dict[str, int] = defaultdict(int)
        for a in items:
            kinds[a["kind"]] += 1
        label = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        tree.add(f"{escape(display_path(parent))}/  {format_size(sum(a['bytes'] for a in items))}  [dim]{label}[/dim]")
    return tree


def _timeline(out: Console, timeline: list[dict]) -> None:
    peak = max(d["bytes"] for d in timeline) or 1
    out.print("[bold]ML cache bytes added per day[/bold] (from modification times)")
    for d in timeline[-30:]:
        bar = "#" * max(1, round(d["bytes"] / peak * 40)) if d["bytes"] else ""
        out.print(f"  {d['date']}  {format_size(d['bytes']):>9}  {bar}")


def _notes(out: Console, notes: list[str]) -> None:
    if not notes:
        return
    out.print(f"[yellow]Notes ({len(notes)}):[/yellow]")
    for n in notes[:MAX_NOTES]:
        out.print(f"  - {escape(n)}")
    if len(notes) > MAX_NOTES:
        out.print(f"  ... and {len(notes) - MAX_NOTES} more (see --format json)")


# -- clean / apply / restore --------------------------------------------------------------------
def render_clean(term: Terminal, result: dict, plan: dict, why: bool = False) -> None:
    out = term.out
    # Per-process clients share one root: join outcomes to the plan on the root and the client.
    by_key = {(c["root"], c.get("client") or c.get("bundle_id")): c for c in plan["containers"]}
    for c in result["containers"]:
        name = c["bundle_id"] or c.get("client") or "unknown bundle id"
        out.print(f"[bold]{escape(name)}[/bold]  {escape(display_path(c['root']))}")
        planned_container = by_key.get((c["root"], c.get("client")), {})
        for note in c["recovered"]:
            out.print(f"  [yellow]from an interrupted run:[/yellow] {escape(note)}")
        planned = {a["path"]: a["bytes"] for a in planned_container.get("actions", [])}
        evidence = {a["path"]: a.get("evidence") for a in planned_container.get("actions", [])}
        if read_only := planned_container.get("read_only"):
            out.print(f"  [yellow]Preview only:[/yellow] {escape(read_only)}.")
        if not c["outcomes"]:
            out.print("  Nothing to remove.")
        for o in c["outcomes"]:
            verb = o["status"].capitalize()
            reason = f" ({escape(o['reason'])})" if o["reason"] and not o["status"].startswith("would") else ""
            style = "red" if o["status"] == "failed" else "yellow" if o["status"] == "skipped" else ""
            text = f"  {verb} {escape(display_path(o['path']))} ({format_size(planned.get(o['path'], o['bytes']))}, {o['rule']}){reason}"
            out.print(f"[{style}]{text}[/{style}]" if style else text)
            if why and evidence.get(o["path"]):
                out.print(f"    [dim]because:[/dim] {escape(why_text(evidence[o['path']]))}")
        for kept in planned_container.get("kept_back", []):
            out.print(f"  [dim]Kept back: {escape(kept)}[/dim]")
    read_only = bool(plan["containers"]) and all(c.get("read_only") for c in plan["containers"])
    if result["dry_run"] and read_only:
        # A backup or an archive: no command acts on it, so none is offered; what to ask for instead.
        out.print(f"[bold]Would free {format_size(result['would_free_bytes'])} on the device.[/bold] Nothing was "
                  "changed: this is read-only evidence. Ask the customer for a container pulled from the device "
                  "(Xcode's Download Container, or `xcrun devicectl device copy from`), or to offload and "
                  "reinstall the app, and clean that.")
    elif result["dry_run"]:
        out.print(f"[bold]Would free {format_size(result['would_free_bytes'])}.[/bold] "
                  "Nothing was changed (dry run); add --apply to act, or --plan-out FILE to review first.")
    else:
        n_fail = sum(o["status"] in ("failed", "skipped") for c in result["containers"] for o in c["outcomes"])
        verb = "Moved aside" if result["quarantine"] else "Freed"
        freed, disk = result["freed_bytes"], result.get("freed_disk_bytes")
        amount = format_size(freed)
        if not result["quarantine"] and disk is not None and disk < 0.9 * freed and freed - disk >= 1_000_000:
            amount = f"{format_size(disk)} on disk ({amount} of file sizes: the files were sparse or shared blocks)"
        out.print(f"[bold]{verb} {amount}.[/bold]" +
                  (f" {n_fail} entr{'y was' if n_fail == 1 else 'ies were'} not removed (see above)." if n_fail else "")
                  + (f" Restore with `mlcache restore {shlex.quote(result['quarantine'])}`." if result["quarantine"] else ""))


def render_restore(term: Terminal, result: dict) -> None:
    for o in result["outcomes"]:
        term.out.print(f"  {o['status'].capitalize()} {escape(display_path(o['path']))} {escape(o['reason'])}")
    done = sum(o["status"] == "restored" for o in result["outcomes"])
    term.out.print(f"[bold]Restored {done} of {plural(len(result['outcomes']), 'entry')}.[/bold]")


# -- CI -----------------------------------------------------------------------------------------
def render_check(term: Terminal, doc: dict) -> None:
    """From an `mlcache.check/3` document."""
    t = Table(title=f"mlcache check: {'passed' if doc['passed'] else 'FAILED'}", title_justify="left", show_edge=False)
    for col in ("budget", "scope", "result", "actual", "limit", "detail"):
        t.add_column(col, overflow="fold")
    for r in doc["budgets"]:
        t.add_row(r["name"], escape(r["scope"]), "[green]pass[/green]" if r["passed"] else "[bold red]FAIL[/bold red]",
                  budget_actual(r), budget_limit(r), escape(r["message"]))
    term.out.print(t)
    for r in doc["budgets"]:
        for f in r["findings"][:3] if not r["passed"] else []:
            _para(term.out, f"Behind [bold]{r['name']}[/bold] ({escape(r['scope'])}): {escape(f['rule'])}, "
                            f"{escape((f.get('summary') or '').rstrip('.'))}. [dim]Fix:[/dim] {escape(f.get('remedy') or '')}", 2)
    if doc.get("launches"):
        lt = Table(title="Growth per launch", title_justify="left", show_edge=False)
        for col, just in (("launch", "right"), ("delta", "right"), ("ML caches after", "right"), ("", "left")):
            lt.add_column(col, justify=just, overflow="fold")
        for row in launch_rows(doc):
            lt.add_row(*(escape(x) for x in row))
        term.out.print(lt)
        _para(term.out, escape(launch_verdict(doc)), 0)
    tot = doc["totals"]
    term.out.print(f"ML caches {format_size(tot['coreml_bytes'])} of {format_size(tot['total_bytes'])}; "
                   f"reclaimable {format_size(tot['reclaimable_bytes'])}; most copies of one model {tot['max_copies']}")
    if doc.get("config"):
        term.out.print(f"[dim]budgets from {escape(doc['config'])}[/dim]")
    for n in doc["notes"]:
        term.out.print(f"[yellow]{escape(n)}[/yellow]")


def render_diff(term: Terminal, doc: dict) -> None:
    old, new = doc["old"], doc["new"]
    term.out.print(f"[bold]old[/bold] {escape(str(old['path']))} ({old.get('created') or 'scanned now'})")
    term.out.print(f"[bold]new[/bold] {escape(str(new['path']))} ({new.get('created') or 'scanned now'})")
    if doc.get("bundle_id"):
        term.out.print(f"app: {escape(doc['bundle_id'])}")
    t = Table(title="mlcache diff (new minus old)", title_justify="left", show_edge=False)
    for col in ("", "old", "new", "delta", "items"):
        t.add_column(col, justify="left" if not col else "right")
    for r in doc["rows"]:
        items = f"{r['old_count']} -> {r['new_count']}" if r["old_count"] or r["new_count"] else ""
        delta = format_signed_size(r["delta_bytes"])
        t.add_row(r["name"], format_size(r["old_bytes"]), format_size(r["new_bytes"]),
                  f"[red]{delta}[/red]" if r["delta_bytes"] > 0 else delta, items)
    term.out.print(t)
    for n in doc.get("notes", []):
        term.out.print(f"[yellow]warning: {escape(n)}[/yellow]")


# -- watch ----------------------------------------------------------------------------------------
def render_watch_event(term: Terminal, e: dict) -> None:
    out = term.out
    if e["type"] == "summary":
        per_launch = f"{format_size(e['added_bytes_per_launch'])} per launch, " if e["added_bytes_per_launch"] else ""
        if e["added_bytes_per_day"]:
            per_day = f"{format_size(e['added_bytes_per_day'])} per day at this rate"
        elif e["added_bytes"]:
            per_day = f"{format_size(e['added_bytes'])} in {e['observed_seconds']:g} s (too short to project per day)"
        else:
            per_day = "no growth seen"
        mode = e.get("mode") or ("launches" if e["launches"] or not e["intervals"] else "intervals")
        n = e["launches"] if mode == "launches" else e["intervals"]
        what = f"{n} {'launch' if mode == 'launches' else 'changed interval'}{'' if n == 1 else ('es' if mode == 'launches' else 's')}"
        out.print(f"[bold]Summary:[/bold] {what}, {format_size(e['added_bytes'])} added; {per_launch}{per_day}.")
        return
    head = f"Launch {e['launch']} (pid {e['pid']})" if e["type"] == "launch" else f"Interval {e['interval']}"
    out.print(f"[bold]{head}:[/bold] {format_signed_size(e['added_bytes'])} added, "
              f"{format_size(e['removed_bytes'])} removed" + (f"; findings: {', '.join(e['findings'])}" if e["findings"] else ""))
    for p in e["added"][:MAX_PATHS]:
        _para(out, f"+ {escape(display_path(p))}", 2)
    if len(e["added"]) > MAX_PATHS:
        _para(out, f"... and {len(e['added']) - MAX_PATHS} more", 2)
    term.stdout.flush()
