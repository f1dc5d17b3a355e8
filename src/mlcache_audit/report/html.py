"""One self-contained HTML page for a support ticket: no network, inline CSS, SVG and a few lines of
JavaScript (sorting only; the page reads the same without it). Every number is also written as a
`data-*` attribute holding exact bytes, so tests compare the page with the JSON document."""

from __future__ import annotations

from datetime import date, timedelta
from html import escape

from mlcache_audit.domain import KIND
from mlcache_audit.report.summary import fates, header_facts, largest, verdict
from mlcache_audit.units import format_size, plural

_CSS = """
body{font:15px/1.45 -apple-system,system-ui,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;
padding:0 1rem;color:#1d1d1f;background:#fff}
h1{font-size:1.5rem}h2{font-size:1.25rem;margin-top:2.5rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
h3{font-size:1.05rem;margin:.2rem 0}code,.path{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;
word-break:break-all}.verdict{border-radius:10px;padding:1rem 1.2rem;margin:1rem 0;background:#f0f7ee;
border:1px solid #bcd9b4}.verdict.free{background:#fff7e6;border-color:#f0c36d}.verdict p{margin:.3rem 0}
.big{font-size:1.35rem;font-weight:600}.muted{color:#6e6e73}.finding{border-left:4px solid #ccc;padding:.4rem .9rem;
margin:1rem 0;background:#fafafa}.finding.high{border-color:#d70015}.finding.medium{border-color:#f5a623}
.finding.low{border-color:#0a84ff}.finding.info{border-color:#8e8e93}table{border-collapse:collapse;width:100%;
margin:.8rem 0}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eee;vertical-align:top}
th{cursor:pointer;background:#f5f5f7;position:sticky;top:0}td.num,th.num{text-align:right;white-space:nowrap}
svg text{font:11px -apple-system,system-ui,sans-serif}.legend span{display:inline-block;margin-right:1rem}
.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.3rem;vertical-align:-1px}
details>summary{cursor:pointer}ul.paths{margin:.3rem 0 .3rem 1rem;padding:0}body{overflow-wrap:break-word}
.facts{margin:.2rem 0}.warn{color:#8a5300}.chart{display:flex;gap:.5rem;align-items:stretch}
.yaxis{display:flex;flex-direction:column;justify-content:space-between;height:160px;font-size:.75rem;color:#6e6e73;
text-align:right;white-space:nowrap}.plot{flex:1;min-width:0}.plot svg{display:block;width:100%;height:160px}
.xaxis{display:flex;justify-content:space-between;font-size:.75rem;color:#6e6e73}
@media (max-width:700px){body{margin:1rem auto;padding:0 .6rem}table.stack thead{display:none}
table.stack tr{display:block;border-bottom:1px solid #ddd;padding:.35rem 0}table.stack td{display:block;border:0;
padding:.05rem 0;text-align:left}table.stack td[data-label]::before{content:attr(data-label) ": ";color:#6e6e73}
svg.treemap text{display:none}}
@media print{body{margin:0;max-width:none;font-size:11pt}th{position:static;cursor:auto}.verdict,.chart,svg,tr,li{break-inside:avoid}h2,h3{break-after:avoid}
details>summary{list-style:none}details::details-content{content-visibility:visible;display:contents}
details>summary::-webkit-details-marker{display:none}}
"""

_SORT_JS = """
window.addEventListener("beforeprint", function(){
  document.querySelectorAll("details").forEach(function(d){ d.open = true; });
});
document.querySelectorAll("table.sortable th").forEach(function(th, col){
  th.addEventListener("click", function(){
    var table = th.closest("table"), body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows), asc = th.dataset.dir !== "asc";
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.sort || a.cells[col].textContent, y = b.cells[col].dataset.sort || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
    table.querySelectorAll("th").forEach(function(h){ delete h.dataset.dir; });
    th.dataset.dir = asc ? "asc" : "desc";
  });
});
"""

# One colour per tile, none reused: the largest tiles get these, the rest share one grey tile.
_PALETTE = ("#d70015", "#f5a623", "#0a84ff", "#30b158", "#af52de", "#64d2ff", "#5e5ce6", "#ffd60a", "#a2845e",
            "#ff6482", "#00a3a3")
_REST_COLOR = "#8e8e93"
TIMELINE_DAYS = 90


def _luminance(color: str) -> float:
    """WCAG 2 relative luminance of a #rrggbb colour."""
    def channel(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours (1 to 21)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def ink(fill: str) -> str:
    """Black or white text, whichever reads better on `fill`."""
    return "#000000" if contrast("#000000", fill) >= contrast("#ffffff", fill) else "#ffffff"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="mlcache"><title>{escape(title)}</title><style>{_CSS}</style></head>'
            f'<body>{body}<script>{_SORT_JS}</script></body></html>\n')


# -- scan -----------------------------------------------------------------------------------------
def scan_html(doc: dict, *, top: int = 50, why: bool = False) -> str:  # noqa: D401  (why: text and markdown)
    parts = [f"<h1>mlcache scan</h1><p class=muted>of <code>{escape(doc['path'])}</code> "
             f"({len(doc['containers'])} container{'s' if len(doc['containers']) != 1 else ''})</p>"]
    if len(doc["containers"]) > 1:  # many clients: the overview first, as the text starts
        parts.append(_overview(doc))
    parts.append(_places(doc))
    for i, c in enumerate(doc["containers"]):
        parts.append(_container(c, doc["path"], i, top, doc.get("discovery")))
    return _page(f"mlcache scan of {doc['path']}", "".join(parts))


def _places(doc: dict) -> str:
    """The system places discovery looked at, and the folders it could not read or skipped, as the text says them."""
    out = []
    for place in doc.get("system", []):
        size = format_size(place["bytes"]) if place["bytes"] is not None else "size unknown"
        out.append(f"<li><b>{escape(place['name'])}</b> <span class=path>{escape(place['path'])}</span>: "
                   f"{'observable' if place['observable'] else 'not observable'} ({size}); {escape(place['reason'])}</li>")
    for place in (doc.get("discovery") or {}).get("unreadable", []):
        out.append(f"<li class=warn>Not searched, cannot be read: <span class=path>{escape(place['path'])}</span> "
                   f"({escape(place['reason'])})</li>")
    for place in (doc.get("discovery") or {}).get("skipped", []):
        out.append(f"<li class=warn>Skipped: <span class=path>{escape(place['path'])}</span>: "
                   f"{escape(place['reason'])}</li>")
    return "<ul class=places>" + "".join(out) + "</ul>" if out else ""


def _overview(doc: dict) -> str:
    """Every client, largest reclaimable first, with its verdict and a link to its section."""
    order = sorted(range(len(doc["containers"])), key=lambda i: (-doc["containers"][i]["reclaimable_bytes"], i))
    total = sum(c["reclaimable_bytes"] for c in doc["containers"])
    rows = []
    for i in order:
        c = doc["containers"][i]
        v = verdict(c, doc["path"], doc.get("discovery"))
        name = c["bundle_id"] or c.get("client") or "unknown app"
        rows.append(f'<tr class=client><td data-label=client><a href="#c{i}">{escape(name)}</a></td>'
                    f'<td data-label=form>{escape(c["form"])}</td>'
                    f'<td class=num data-label="ML caches">{format_size(c["coreml_bytes"])}</td>'
                    f'<td class=num data-label=reclaimable data-bytes="{c["reclaimable_bytes"]}">'
                    f'{format_size(c["reclaimable_bytes"])}</td><td data-label=verdict>{escape(v.headline)}</td></tr>')
    return (f"<section class=overview><h2>{len(doc['containers'])} clients: {format_size(total)} can be freed</h2>"
            "<table class=stack><thead><tr><th>client</th><th>form</th><th class=num>ML caches</th><th class=num>reclaimable"
            "</th><th>verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>")


def _container(c: dict, path: str, index: int, top: int, discovery: dict | None = None) -> str:
    v = verdict(c, path, discovery)
    name = c["bundle_id"] or c.get("client") or "unknown app"
    out = [f'<section class=container id="c{index}" data-index="{index}" data-bundle-id="{escape(str(c["bundle_id"] or ""))}">',
           f"<h2>{escape(name)} <span class=muted>{escape(c['form'])} ({escape(c['source'])})</span></h2>",
           f"<p class=muted><code>{escape(c['root'])}</code></p>",
           *(f'<p class="facts{" warn" if kind in ("not_observable", "read_only") else ""}" data-fact={kind}>'
             f"{label}: {escape(text)}</p>" for kind, label, text in header_facts(c)),
           f'<div class="verdict{" free" if v.reclaimable_bytes else ""}" data-reclaimable-bytes="{c["reclaimable_bytes"]}"'
           f' data-total-bytes="{c["total_bytes"]}" data-coreml-bytes="{c["coreml_bytes"]}">',
           f"<p class=big>Verdict: {escape(v.headline)}.</p>"]
    if v.cause:
        out.append(f"<p><b>Cause:</b> {escape(v.cause)}</p>")
    if v.next_command:
        out.append(f"<p><b>Next:</b> <code>{escape(v.next_command)}</code>"
                   + (f" <span class=muted>({escape(v.next_note)})</span>" if v.next_note else "") + "</p>")
    out.append(f"<p class=muted>{format_size(c['total_bytes'])} in {plural(c['file_count'], 'file')}; ML caches "
               f"{format_size(c['coreml_bytes'])}.</p></div>")
    out.append("<h3>Where the bytes are</h3>" + _treemap(c))
    if c["timeline"]:
        out.append("<h3>Growth over time</h3>" + _timeline(c["timeline"]))
    out.append("<h3>Findings</h3>")
    if not c["findings"]:
        out.append("<p>No findings: nothing here looks like ML cache growth.</p>")
    fate = fates(c)
    for f in c["findings"]:
        out.append(_finding(f, fate))
    rows, n = largest(c["artifacts"], top)
    out.append(f"<h3>Artifacts</h3><p class=muted>{len(c['artifacts'])} artifacts; the largest {len(rows)} of "
               f"{n} rows, identical copies together. Click a heading to sort.</p>")
    out.append('<table class="sortable stack"><thead><tr><th class=num>size</th><th class=num>copies</th><th>kind</th>'
               '<th>path</th><th>model / producer</th></tr></thead><tbody>')
    for r in rows:
        out.append(f'<tr class=artifact><td class=num data-label=size data-sort="{r.total}" data-bytes="{r.total}">'
                   f'{format_size(r.total)}</td><td class=num data-label=copies data-sort="{r.copies}">{r.copies}</td>'
                   f'<td data-label=kind>{escape(r.kind)}</td><td class=path data-label=path>{escape(r.path)}</td>'
                   f'<td data-label=model>{escape(" / ".join(x for x in (r.name, r.producer) if x))}</td></tr>')
    out.append("</tbody></table>")
    if c["notes"]:
        out.append("<details><summary>Notes (" + str(len(c["notes"])) + ")</summary><ul>"
                   + "".join(f"<li>{escape(n)}</li>" for n in c["notes"]) + "</ul></details>")
    out.append("</section>")
    return "".join(out)


def _finding(f: dict, fate: dict) -> str:
    reclaim = set(f["reclaimable_paths"])
    paths = "".join(f"<li><span class=path>{escape(p)}</span> <b>({escape(fate.get(p, 'kept'))})</b></li>"
                    for p in sorted(f["paths"], key=lambda p: (p not in reclaim, p)))
    extra = f"; {format_size(f['repair_bytes'])} to repair with --only {f['rule']}" if f.get("repair_bytes") else \
        " with --include-persistent" if f["opt_in"] else ""
    return (f'<div class="finding {escape(f["severity"])}" data-rule="{escape(f["rule"])}" '
            f'data-reclaimable-bytes="{f["reclaimable_bytes"]}">'
            f"<h3>{escape(f['title'])} <code>{escape(f['rule'])}</code></h3>"
            f"<p><b>{format_size(f['reclaimable_bytes'])} reclaimable{extra}.</b> {escape(f['summary'])}</p>"
            f"<p><b>Why:</b> {escape(f['explanation'])}</p><p><b>Fix:</b> {escape(f['remedy'])}</p>"
            f"<details><summary>{plural(len(f['paths']), 'path')}</summary><ul class=paths>{paths}</ul></details></div>")


def _treemap(c: dict, width: float = 1000.0, height: float = 320.0) -> str:
    """The container's bytes by ML cache kind and by area for other files, as a squarified treemap.
    Each tile has its own colour; past the palette, the smallest share one grey tile (named in the
    legend). A label is drawn only where it fits its tile (narrow screens rely on the legend)."""
    items = [(KIND[k].label if k in KIND else k, n, "kind", k) for k, n in c["bytes_by_kind"].items() if n > 0]
    items += [(f"other files: {a}", n, "area", a) for a, n in c["other_bytes_by_area"].items() if n > 0]
    items.sort(key=lambda x: -x[1])
    total = sum(x[1] for x in items)
    if not total:
        return "<p class=muted>No bytes.</p>"
    rest = items[len(_PALETTE):] if len(items) > len(_PALETTE) + 1 else []
    shown = items[:len(items) - len(rest)]
    colors = _PALETTE if rest else (*_PALETTE, _REST_COLOR)  # one each: at most one tile more than the palette
    tiles = [(label, n, group, key, color) for (label, n, group, key), color in zip(shown, colors, strict=False)]
    if rest:
        tiles.append((f"{len(rest)} smaller groups", sum(x[1] for x in rest), "rest", "rest", _REST_COLOR))
    rects = _squarify([t[1] / total * width * height for t in tiles], 0.0, 0.0, width, height)
    svg = [f'<svg class=treemap viewBox="0 0 {width:g} {height:g}" width="100%" role="img" '
           f'aria-label="bytes by kind and area">']
    legend = []
    for (label, n, group, key, color), (x, y, w, h) in zip(tiles, rects, strict=True):
        svg.append(f'<g class=tile data-{group}="{escape(key)}" data-bytes="{n}"><rect x="{x:.1f}" y="{y:.1f}" '
                   f'width="{max(w - 1, 0):.1f}" height="{max(h - 1, 0):.1f}" fill="{color}"><title>{escape(label)}: '
                   f'{format_size(n)}</title></rect>')
        size = format_size(n)
        if h > 36 and label_width(max(label, size, key=len)) + 12 <= w:
            fg = ink(color)
            svg.append(f'<text x="{x + 6:.1f}" y="{y + 16:.1f}" fill="{fg}" data-on="{color}">{escape(label)}</text>'
                       f'<text x="{x + 6:.1f}" y="{y + 30:.1f}" fill="{fg}" data-on="{color}">{size}</text>')
        svg.append("</g>")
        named = "; ".join(f"{escape(r[0])} {format_size(r[1])}" for r in rest) if group == "rest" else ""
        legend.append(f'<span><i class=swatch style="background:{color}"></i>{escape(label)} {size}'
                      + (f" ({named})" if named else "") + "</span>")
    return "".join(svg) + "</svg><p class=legend>" + "".join(legend) + "</p>"


def label_width(text: str, font_px: float = 11.0) -> float:
    """A generous width of `text` in the treemap's 11 px sans-serif (0.62 em a character, wider
    than the average of system fonts), so that a label said to fit is never clipped."""
    return len(text) * font_px * 0.62


def _squarify(areas: list[float], x: float, y: float, w: float, h: float) -> list[tuple[float, float, float, float]]:
    """Bruls, Huizing and van Wijk's squarified layout: rows kept as close to square as they go."""
    out: list[tuple[float, float, float, float]] = []
    rest = list(areas)
    while rest:
        short = min(w, h)
        row = [rest.pop(0)]
        while rest and _worst(row + [rest[0]], short) <= _worst(row, short):
            row.append(rest.pop(0))
        s = sum(row)
        if w >= h:  # lay the row along the left edge
            cw = s / h if h else 0
            cy = y
            for a in row:
                ch = a / cw if cw else 0
                out.append((x, cy, cw, ch))
                cy += ch
            x, w = x + cw, w - cw
        else:
            ch = s / w if w else 0
            cx = x
            for a in row:
                cwid = a / ch if ch else 0
                out.append((cx, y, cwid, ch))
                cx += cwid
            y, h = y + ch, h - ch
    return out


def _worst(row: list[float], short: float) -> float:
    s = sum(row)
    if not s or not short:
        return float("inf")
    return max(max(short * short * a / (s * s), (s * s) / (short * short * a)) for a in row if a > 0)


def _timeline(timeline: list[dict], width: float = 1000.0, height: float = 160.0) -> str:
    """Bytes added per day over the last 90 calendar days up to the newest write (a day with no writes
    is an empty slot, so the axis is time), with a value axis and dated ends. The labels are HTML
    beside the drawing, so they keep their size on any screen."""
    days = timeline_window(timeline)
    first, last = date.fromisoformat(days[0]["date"]), date.fromisoformat(days[-1]["date"])
    slots = (last - first).days + 1
    peak = max(d["bytes"] for d in days) or 1
    bar = width / slots
    svg = [f'<svg class=timeline viewBox="0 0 {width:g} {height:g}" preserveAspectRatio="none" role="img" '
           'aria-label="bytes added per day">']
    for frac in (0.0, 0.5, 1.0):  # gridlines at the axis values
        y = height - frac * height
        svg.append(f'<line x1="0" x2="{width:g}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d1d1d6" '
                   'vector-effect="non-scaling-stroke"/>')
    for d in days:
        i = (date.fromisoformat(d["date"]) - first).days
        h = d["bytes"] / peak * height
        svg.append(f'<rect class=day data-date="{d["date"]}" data-bytes="{d["bytes"]}" x="{i * bar + 1:.1f}" '
                   f'y="{height - h:.1f}" width="{max(bar - 2, 1):.1f}" height="{h:.1f}" fill="#0a84ff">'
                   f'<title>{d["date"]}: {format_size(d["bytes"])}</title></rect>')
    svg.append("</svg>")
    ends = [first] + ([first + timedelta(days=slots // 2)] if slots > 2 else []) + ([last] if slots > 1 else [])
    return (f'<div class=chart><div class=yaxis aria-hidden=true><span>{format_size(peak)}</span>'
            f'<span>{format_size(peak // 2)}</span><span>0 B</span></div><div class=plot>{"".join(svg)}'
            '<div class=xaxis>' + "".join(f"<span>{d.isoformat()}</span>" for d in ends) + "</div></div></div>"
            f"<p class=muted>ML cache bytes added per day, from modification times, over {plural(slots, 'day')} "
            f"({len(days)} with writes); peak {format_size(peak)} a day.</p>")


def timeline_window(timeline: list[dict]) -> list[dict]:
    """The days the chart shows: the last 90 calendar days up to the newest write."""
    if not timeline:
        return []
    first = date.fromisoformat(timeline[-1]["date"]) - timedelta(days=TIMELINE_DAYS - 1)
    return [d for d in timeline if date.fromisoformat(d["date"]) >= first]


# -- clean ----------------------------------------------------------------------------------------
def clean_html(apply_doc: dict, *, plan: dict, why: bool = False) -> str:
    what = "Would free" if apply_doc["dry_run"] else "Freed"
    total = apply_doc["would_free_bytes"] if apply_doc["dry_run"] else apply_doc["freed_bytes"]
    read_only = {c["root"]: c.get("read_only") for c in plan["containers"]}
    parts = [f"<h1>mlcache clean</h1><p class=muted>of <code>{escape(plan['path'])}</code></p>",
             f'<div class="verdict{" free" if total else ""}" data-bytes="{total}"><p class=big>{what} '
             f'{format_size(total)}.</p>'
             + ("<p>Nothing was changed (dry run).</p>" if apply_doc["dry_run"] else "") + "</div>"]
    for c in apply_doc["containers"]:
        parts.append(f"<h2>{escape(c['bundle_id'] or 'unknown app')}</h2><p class=muted><code>{escape(c['root'])}</code></p>")
        if read_only.get(c["root"]):
            parts.append(f"<p><b>Preview only:</b> {escape(read_only[c['root']])}.</p>")
        if not c["outcomes"]:
            parts.append("<p>Nothing to remove.</p>")
            continue
        parts.append('<table class="sortable stack"><thead><tr><th>status</th><th class=num>size</th><th>rule</th>'
                     '<th>path</th><th>reason</th></tr></thead><tbody>')
        for o in c["outcomes"]:
            parts.append(f'<tr class=outcome><td data-label=status>{escape(o["status"])}</td><td class=num '
                         f'data-label=size data-sort="{o["bytes"]}" data-bytes="{o["bytes"]}">{format_size(o["bytes"])}'
                         f'</td><td data-label=rule>{escape(o["rule"])}</td><td class=path data-label=path>'
                         f'{escape(o["path"])}</td><td data-label=reason>{escape(o["reason"])}</td></tr>')
        parts.append("</tbody></table>")
    return _page(f"mlcache clean of {plan['path']}", "".join(parts))
