"""Rendering: the one module that uses rich. Stages hand it plain data; it prints to the terminal."""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from mlcache_audit.sources.base import display_path
from mlcache_audit.terminal import Terminal
from mlcache_audit.units import format_signed_size, format_size

MAX_NOTES = 8
_HEX64 = re.compile(r"([0-9A-Fa-f]{8})[0-9A-Fa-f]{56}")


def short_path(path: str) -> str:
    """For tables only: 64-hex cache names shortened to their first 8 digits (JSON keeps them whole)."""
    return _HEX64.sub(r"\1…", display_path(path))
SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}


# -- scan -----------------------------------------------------------------------------------------
def render_scan(term: Terminal, doc: dict, *, top: int = 10) -> None:
    out = term.out
    for c in doc["containers"]:
        _container_header(out, c)
        findings = c["findings"]
        if findings:
            out.print("[bold]Findings[/bold] (largest first)")
            for f in findings:
                _finding(out, f)
        else:
            out.print("[green]No findings:[/green] nothing here looks like Core ML cache growth.")
        out.print()
        _summary_table(out, c)
        largest = sorted(c["artifacts"], key=lambda a: -a["bytes"])[:top]
        if largest:
            t = Table(title=f"Largest Core ML artifacts (top {len(largest)} of {len(c['artifacts'])})",
                      title_justify="left", show_edge=False)
            t.add_column("size", justify="right")
            t.add_column("kind")
            t.add_column("path", overflow="fold")
            t.add_column("model / producer", overflow="fold")
            for a in largest:
                what = (a.get("model") or {}).get("class_name") or (a.get("model") or {}).get("type") or ""
                t.add_row(format_size(a["bytes"]), a["kind"], escape(short_path(a["path"])),
                          escape(" / ".join(x for x in (what, a.get("producer") or "") if x)))
            out.print(t)
            out.print(_where_tree(c["artifacts"]))
        if len(c["timeline"]) > 1:
            _timeline(out, c["timeline"])
        _notes(out, c["notes"])
        _reclaim_line(out, c)
        out.print()


def _container_header(out: Console, c: dict) -> None:
    out.print(f"[bold]{escape(c['bundle_id'] or 'unknown bundle id')}[/bold]  {c['form']} ({c['source']})  "
              f"{escape(display_path(c['root']))}")
    info = c.get("info") or {}
    if info.get("device_name") or info.get("ios_version"):
        out.print(f"  device: {escape(str(info.get('device_name', '?')))}, iOS {info.get('ios_version', '?')} "
                  f"({info.get('ios_build', '?')})")
    share = (c["coreml_bytes"] / c["total_bytes"] * 100) if c["total_bytes"] else 0.0
    out.print(f"  {format_size(c['total_bytes'])} in {c['file_count']} files; Core ML accounts for "
              f"{format_size(c['coreml_bytes'])} ({share:.0f}%)")
    if c["not_observable"]:
        out.print(f"  [yellow]not observable in this form:[/yellow] {', '.join(c['not_observable'])} "
                  "(unknown, not clean)")
    out.print()


def _finding(out: Console, f: dict) -> None:
    style = SEVERITY_STYLE.get(f["severity"], "")
    reclaim = f"{format_size(f['reclaimable_bytes'])} reclaimable" + (" with --include-persistent" if f["opt_in"] else "")
    out.print(f"[{style}]{f['severity'].upper():6}[/{style}] [bold]{escape(f['title'])}[/bold] "
              f"({f['rule']}): {reclaim}")
    out.print(f"       {escape(f['summary'])}")
    ev = f.get("evidence") or {}
    if f["rule"] == "repeated-compile":
        bits = [f"{ev.get('copies')} copies of {format_size(ev.get('bytes_per_copy') or 0)}"]
        if ev.get("bytes_per_day"):
            bits.append(f"growing {format_size(ev['bytes_per_day'])}/day")
        if ev.get("bytes_per_launch"):
            bits.append(f"{format_size(ev['bytes_per_launch'])} per launch")
        out.print("       " + ", ".join(bits))
    if f.get("explanation"):
        out.print(f"       [dim]Why:[/dim] {escape(f['explanation'])}")
    if f.get("remedy"):
        out.print(f"       [dim]Fix:[/dim] {escape(f['remedy'])}")
    shown = f["reclaimable_paths"][:3] or f["paths"][:3]
    for p in shown:
        out.print(f"       - {escape(display_path(p))}")
    more = len(f["reclaimable_paths"] or f["paths"]) - len(shown)
    if more > 0:
        out.print(f"       ... and {more} more")


def _summary_table(out: Console, c: dict) -> None:
    t = Table(title="Where the bytes are", title_justify="left", show_edge=False)
    t.add_column("what")
    t.add_column("bytes", justify="right")
    t.add_column("items", justify="right")
    counts: dict[str, int] = defaultdict(int)
    for a in c["artifacts"]:
        counts[a["kind"]] += 1
    for kind, n in c["bytes_by_kind"].items():
        t.add_row(f"Core ML: {kind}", format_size(n), str(counts[kind]))
    for area, n in c["other_bytes_by_area"].items():
        t.add_row(f"other files: {area}", format_size(n), "")
    t.add_row("[bold]total[/bold]", f"[bold]{format_size(c['total_bytes'])}[/bold]", str(c["file_count"]) + " files")
    out.print(t)


def _where_tree(artifacts: list[dict]) -> Tree:
    """Artifacts grouped by the folder that holds them, folded to the folders that matter."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for a in artifacts:
        parent = posixpath.dirname(a["path"])
        if "com.apple.e5rt.e5bundlecache" in parent:
            parent = parent[: parent.index("com.apple.e5rt.e5bundlecache") + len("com.apple.e5rt.e5bundlecache")] + \
                "/" + a["path"].split("com.apple.e5rt.e5bundlecache/")[1].split("/")[0]
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
    out.print("[bold]Core ML bytes added per day[/bold] (from modification times)")
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


def _reclaim_line(out: Console, c: dict) -> None:
    extra = c.get("reclaimable_opt_in_bytes", 0)
    line = f"[bold]Reclaimable:[/bold] {format_size(c['reclaimable_bytes'])}"
    if extra:
        line += f" (+{format_size(extra)} with --include-persistent)"
    if c["not_observable"]:
        line += f"; {', '.join(c['not_observable'])} not observable"
    if not c["cleanable"]:
        line += "; read-only evidence: this form is never cleaned"
    elif c["reclaimable_bytes"] or extra:
        line += "; preview with `mlcache clean PATH`"
    out.print(line)


# -- clean / apply / restore --------------------------------------------------------------------
def render_apply(term: Terminal, result: dict, plan: dict) -> None:
    out = term.out
    by_root = {c["root"]: c for c in plan["containers"]}
    for c in result["containers"]:
        out.print(f"[bold]{escape(c['bundle_id'] or 'unknown bundle id')}[/bold]  {escape(display_path(c['root']))}")
        for note in c["recovered"]:
            out.print(f"  [yellow]from an interrupted run:[/yellow] {escape(note)}")
        planned = {a["path"]: a["bytes"] for a in by_root.get(c["root"], {}).get("actions", [])}
        if read_only := by_root.get(c["root"], {}).get("read_only"):
            out.print(f"  [yellow]Preview only:[/yellow] {escape(read_only)}.")
        if not c["outcomes"]:
            out.print("  Nothing to remove.")
        for o in c["outcomes"]:
            verb = o["status"].capitalize()
            reason = f" ({escape(o['reason'])})" if o["reason"] and not o["status"].startswith("would") else ""
            style = "red" if o["status"] == "failed" else "yellow" if o["status"] == "skipped" else ""
            text = f"  {verb} {escape(display_path(o['path']))} ({format_size(planned.get(o['path'], o['bytes']))}, {o['rule']}){reason}"
            out.print(f"[{style}]{text}[/{style}]" if style else text)
        for kept in by_root.get(c["root"], {}).get("kept_back", []):
            out.print(f"  [dim]Kept back: {escape(kept)}[/dim]")
    if result["dry_run"]:
        out.print(f"[bold]Would free {format_size(result['would_free_bytes'])}.[/bold] "
                  "Nothing was changed (dry run); add --apply to act, or --plan-out FILE to review first.")
    else:
        n_fail = sum(o["status"] in ("failed", "skipped") for c in result["containers"] for o in c["outcomes"])
        verb = "Moved aside" if result["quarantine"] else "Freed"
        out.print(f"[bold]{verb} {format_size(result['freed_bytes'])}.[/bold]" +
                  (f" {n_fail} entr{'y was' if n_fail == 1 else 'ies were'} not removed (see above)." if n_fail else "")
                  + (f" Restore with `mlcache restore {result['quarantine']}`." if result["quarantine"] else ""))


def render_restore(term: Terminal, result: dict) -> None:
    for o in result["outcomes"]:
        term.out.print(f"  {o['status'].capitalize()} {escape(display_path(o['path']))} {escape(o['reason'])}")
    done = sum(o["status"] == "restored" for o in result["outcomes"])
    term.out.print(f"[bold]Restored {done} of {len(result['outcomes'])} entries.[/bold]")


# -- CI -----------------------------------------------------------------------------------------
def render_check(term: Terminal, result: dict) -> None:
    t = Table(title=f"mlcache check: {'passed' if result['passed'] else 'FAILED'}", title_justify="left", show_edge=False)
    for col in ("budget", "result", "actual", "limit", "detail"):
        t.add_column(col, overflow="fold")
    for r in result["budgets"]:
        t.add_row(r["name"], "[green]pass[/green]" if r["passed"] else "[bold red]FAIL[/bold red]", r["actual"],
                  r["limit"], escape(r["message"]))
    term.out.print(t)
    tot = result["totals"]
    term.out.print(f"Core ML {format_size(tot['coreml_bytes'])} of {format_size(tot['total_bytes'])}; "
                   f"reclaimable {format_size(tot['reclaimable_bytes'])}; most copies of one model {tot['max_copies']}")
    for n in result["notes"]:
        term.out.print(f"[yellow]{escape(n)}[/yellow]")


def render_diff(term: Terminal, doc: dict) -> None:
    t = Table(title="mlcache diff", title_justify="left", show_edge=False)
    for col in ("", "old", "new", "delta", "items"):
        t.add_column(col, justify="left" if not col else "right")
    for r in doc["rows"]:
        items = f"{r['old_count']} -> {r['new_count']}" if r["old_count"] or r["new_count"] else ""
        delta = format_signed_size(r["delta_bytes"])
        t.add_row(r["name"], format_size(r["old_bytes"]), format_size(r["new_bytes"]),
                  f"[red]{delta}[/red]" if r["delta_bytes"] > 0 else delta, items)
    term.out.print(t)
