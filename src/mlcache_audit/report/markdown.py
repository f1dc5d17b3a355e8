"""Markdown for tickets and PR comments: scan, clean and check (also the GitHub step summary)."""

from __future__ import annotations

from mlcache_audit.report.summary import (
    budget_actual,
    budget_limit,
    fates,
    largest,
    launch_rows,
    launch_verdict,
    verdict,
    why_text,
)
from mlcache_audit.units import format_signed_size, format_size, plural

_MARKUP = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\n": " ", "\r": " ",
                         "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]"})


def _cell(text) -> str:
    """Text that is not markup, safe in a Markdown line or table cell: `<GUS>` and `<bundle-id>` stay
    visible (GitHub drops them as HTML tags otherwise), a `|` never ends a cell, `*_[]` stay literal."""
    return str(text).translate(_MARKUP)


def _code(text: str) -> str:
    return "`" + str(text).replace("`", "'") + "`"


def scan_markdown(doc: dict, *, top: int = 10, why: bool = False) -> str:
    lines = [f"# mlcache scan of {_code(doc['path'])}", ""]
    for c in doc["containers"]:
        v = verdict(c, doc["path"], doc.get("discovery"))
        lines += [f"## {_cell(c['bundle_id'] or c.get('client') or 'unknown app')} ({c['form']}, {c['source']})", "",
                  f"**Verdict: {v.headline}.**" + (f" {v.cause}" if v.cause else ""), ""]
        if v.next_command:
            lines += [f"Next: {_code(v.next_command)}" + (f" ({_cell(v.next_note)})" if v.next_note else ""), ""]
        lines += [f"Root: {_code(c['root'])}. {format_size(c['total_bytes'])} in {plural(c['file_count'], 'file')}; "
                  f"ML caches {format_size(c['coreml_bytes'])}.", ""]
        if c["findings"]:
            lines += ["| severity | rule | reclaimable | finding |", "|---|---|---:|---|"]
            for f in c["findings"]:
                extra = f" ({format_size(f['repair_bytes'])} to repair)" if f.get("repair_bytes") else \
                    " (opt-in)" if f["opt_in"] else ""
                lines.append(f"| {f['severity']} | `{f['rule']}` | {format_size(f['reclaimable_bytes'])}{extra} "
                             f"| {_cell(f['summary'])} |")
            lines.append("")
            fate = fates(c)
            for f in c["findings"]:
                lines += [f"### {_cell(f['title'])} (`{f['rule']}`)", "", _cell(f["summary"]), "",
                          f"- Why: {_cell(f['explanation'])}", f"- Fix: {_cell(f['remedy'])}"]
                lines += [f"- {_code(p)} ({fate.get(p, 'kept')})" for p in f["paths"][:20]]
                if len(f["paths"]) > 20:
                    lines.append(f"- ... and {len(f['paths']) - 20} more (see `--format json`)")
                if why and f.get("links"):
                    lines += ["", "Evidence, per path that can go:", ""]
                    lines += [f"- {_code(link.get('path', ''))}: {_cell(why_text(link['evidence']))}" for link in f["links"]]
                lines.append("")
        lines += ["| kind | bytes |", "|---|---:|"]
        lines += [f"| {k} | {format_size(n)} |" for k, n in c["bytes_by_kind"].items()]
        lines += [f"| other files: {a} | {format_size(n)} |" for a, n in c["other_bytes_by_area"].items()]
        lines += [f"| **total** | **{format_size(c['total_bytes'])}** |", ""]
        rows, n = largest(c["artifacts"], top)
        if rows:
            lines += [f"Largest ({len(rows)} of {n}):", "", "| size | kind | path | model / producer |",
                      "|---:|---|---|---|"]
            for r in rows:
                size = f"{r.copies} x {format_size(r.bytes_each)}" if r.copies > 1 else format_size(r.bytes_each)
                lines.append(f"| {size} | {r.kind} | {_code(r.path)} | {_cell(' / '.join(x for x in (r.name, r.producer) if x))} |")
            lines.append("")
        if c["notes"]:
            lines += ["Notes:", ""] + [f"- {_cell(n)}" for n in c["notes"]] + [""]
    return "\n".join(lines)


def clean_markdown(apply_doc: dict, *, plan: dict, why: bool = False) -> str:
    what = "Would free" if apply_doc["dry_run"] else "Freed"
    total = apply_doc["would_free_bytes"] if apply_doc["dry_run"] else apply_doc["freed_bytes"]
    lines = [f"# mlcache clean of {_code(plan['path'])}", "", f"**{what} {format_size(total)}.**"
             + (" Nothing was changed (dry run)." if apply_doc["dry_run"] else ""), ""]
    read_only = {c["root"]: c.get("read_only") for c in plan["containers"]}
    evidence = {(c["root"], a["path"]): a.get("evidence") for c in plan["containers"] for a in c["actions"]}
    for c in apply_doc["containers"]:
        lines += [f"## {_cell(c['bundle_id'] or 'unknown app')}", "", f"Root: {_code(c['root'])}", ""]
        if read_only.get(c["root"]):
            lines += [f"Preview only: {_cell(read_only[c['root']])}.", ""]
        if not c["outcomes"]:
            lines += ["Nothing to remove.", ""]
            continue
        lines += ["| status | size | rule | path |" + (" evidence |" if why else ""),
                  "|---|---:|---|---|" + ("---|" if why else "")]
        lines += [f"| {o['status']} | {format_size(o['bytes'])} | `{o['rule']}` | {_code(o['path'])} |"
                  + (f" {_cell(why_text(evidence.get((c['root'], o['path'])) or {}))} |" if why else "")
                  for o in c["outcomes"]]
        lines.append("")
    return "\n".join(lines)


def check_markdown(doc: dict) -> str:
    """The check as a PR comment or step summary: the app and path, before -> after per kind, and the
    failing budgets with the findings behind them."""
    apps = ", ".join(sorted({str(c.get("bundle_id") or c.get("client") or "unknown app") for c in doc["containers"]}))
    lines = [f"### mlcache check: {'passed' if doc['passed'] else 'failed'}", "",
             f"App: {_cell(apps)}; path: {_code(doc['path'])}" + (f"; config: {_code(doc['config'])}" if doc.get("config") else ""),
             ""]
    t, b = doc["totals"], doc.get("baseline_totals")
    if b:
        lines += ["| kind | before | after | delta |", "|---|---:|---:|---:|"]
        for kind in sorted(set(t["kinds"]) | set(b["kinds"])):
            old, new = b["kinds"].get(kind, {}).get("bytes", 0), t["kinds"].get(kind, {}).get("bytes", 0)
            lines.append(f"| {kind} | {format_size(old)} | {format_size(new)} | {format_signed_size(new - old)} |")
        lines.append(f"| **ML caches** | {format_size(b['coreml_bytes'])} | {format_size(t['coreml_bytes'])} | "
                     f"**{format_signed_size(t['coreml_bytes'] - b['coreml_bytes'])}** |")
    else:
        lines += ["| kind | bytes |", "|---|---:|"]
        lines += [f"| {k} | {format_size(v['bytes'])} |" for k, v in sorted(t["kinds"].items())]
        lines.append(f"| **ML caches** | **{format_size(t['coreml_bytes'])}** |")
    if doc.get("launches"):
        lines += ["| launch | delta | ML caches after | note |", "|---:|---:|---:|---|"]
        lines += [f"| {n} | {d} | {after} | {_cell(note)} |" for n, d, after, note in launch_rows(doc)]
        lines += ["", _cell(launch_verdict(doc)), ""]
    lines += ["", "| budget | scope | result | actual | limit |", "|---|---|---|---:|---:|"]
    for r in doc["budgets"]:
        lines.append(f"| {r['name']} | {_cell(r['scope'])} | {'pass' if r['passed'] else '**FAIL**'} | "
                     f"{budget_actual(r)} | {budget_limit(r)} |")
    failing = [r for r in doc["budgets"] if not r["passed"]]
    for r in failing:
        lines += ["", f"**{r['name']}** ({_cell(r['scope'])}): {_cell(r['message'])}"]
        for f in r["findings"][:5]:
            who = ", ".join(x for x in (f.get("model") and f"model {f['model']}",
                                        f.get("producer") and f"producer {f['producer']}") if x)
            lines.append(f"- `{f['rule']}`" + (f" ({_cell(who)})" if who else "") + f": {_cell(f.get('summary', ''))} "
                         f"Fix: {_cell(f.get('remedy') or '')}")
    lines += [""] + [f"> {_cell(n)}" for n in doc["notes"]]
    return "\n".join(lines).rstrip() + "\n"


