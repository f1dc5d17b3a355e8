"""The HTML report in a real browser (Debian's chromium, headless) and in print (poppler-utils'
pdftotext): no sideways scrolling at 400 px, treemap labels inside their tiles at 1280 px, every
path of every finding in the printed PDF's text, and the page's own colours at WCAG 4.5:1.

Screenshots go to $MLCACHE_SCREENSHOTS when it is set (to look at them), else to the test's folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import run
from mlcache_audit.report.html import _CSS, contrast

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOTEXT = shutil.which("pdftotext")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (apt install "
                                                              "chromium): .ci/run installs it")
# Which reports: one container, many clients (the overview), and read-only evidence with unobservable areas.
PAGES = {"recompile": ("PATH",), "home": ("--home", "PATH"), "backup": ("PATH",)}

# Measured in the page once it is laid out, written into the DOM for --dump-dom to print.
_PROBE = """<script>window.addEventListener("load", function(){
  var d = document.documentElement, out = [];
  out.push("overflow=" + (d.scrollWidth - window.innerWidth));
  document.querySelectorAll("svg.treemap g.tile").forEach(function(g){
    var r = g.querySelector("rect"), w = parseFloat(r.getAttribute("width"));
    g.querySelectorAll("text").forEach(function(t){
      if (getComputedStyle(t).display === "none") return;
      out.push("label=" + (t.getComputedTextLength() + 6 - w).toFixed(1) + ":" + t.textContent);
    });
  });
  document.body.setAttribute("data-probe", out.join("|"));
});</script>"""


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def _report(built, key: str, tmp: Path) -> Path:
    out = tmp / f"{key}.html"
    args = [str(built[key]) if a == "PATH" else a for a in PAGES[key]]
    result = run("scan", *args, "--format", "html", "-o", out)
    assert result.exit_code in (0, 1), result.stderr
    return out


def _shots_dir(tmp: Path) -> Path:
    d = Path(os.environ.get("MLCACHE_SCREENSHOTS") or tmp / "shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@needs_chromium
@pytest.mark.parametrize("key", sorted(PAGES))
@pytest.mark.parametrize("width", [400, 1280])
def test_the_page_fits_its_width_and_every_label_its_tile(built, tmp_path, key, width):
    page = _report(built, key, tmp_path)
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    dom = _chromium(f"--window-size={width},900", "--virtual-time-budget=5000", "--dump-dom",
                    probed.as_uri(), tmp=tmp_path).stdout
    probe = re.search(r'data-probe="([^"]*)"', dom)
    assert probe, "the page did not load in chromium"
    facts = probe.group(1).replace("&amp;", "&").split("|")
    assert facts[0] == "overflow=0", f"{key} scrolls sideways at {width} px: {facts[0]}"
    labels = [f for f in facts if f.startswith("label=")]
    if width == 1280 and key != "backup":
        assert labels, "no tile labelled at 1280 px"
    over = [f for f in labels if float(f[len("label="):].split(":")[0]) > 0]
    assert not over, f"labels wider than their tiles: {over}"
    if width == 400:
        assert not labels  # narrow screens: the legend names the tiles
    shot = _shots_dir(tmp_path) / f"{key}-{width}.png"
    _chromium(f"--window-size={width},2400", f"--screenshot={shot}", page.as_uri(), tmp=tmp_path)
    assert shot.stat().st_size > 10_000


@needs_chromium
@pytest.mark.skipif(PDFTOTEXT is None, reason="needs Debian's poppler-utils package (apt install poppler-utils): "
                                              ".ci/run installs it")
@pytest.mark.parametrize("key", sorted(PAGES))
def test_the_printed_page_names_every_path(built, tmp_path, key):
    """Print opens every collapsed list: a PDF attached to a ticket names the paths, not '72 paths'."""
    import json

    page = _report(built, key, tmp_path)
    pdf = _shots_dir(tmp_path) / f"{key}.pdf"
    _chromium("--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri(), tmp=tmp_path)
    text = subprocess.run([PDFTOTEXT, str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = re.sub(r"\s+", "", text)  # a long path wraps across lines
    args = [str(built[key]) if a == "PATH" else a for a in PAGES[key]]
    doc = json.loads(run("scan", *args, "--format", "json").stdout)
    paths = {p for c in doc["containers"] for f in c["findings"] for p in f["paths"]}
    assert paths or key == "backup"
    missing = sorted(p for p in paths if re.sub(r"\s+", "", p) not in flat)
    assert not missing, f"{len(missing)} paths not in the PDF, e.g. {missing[:3]}"
    for c in doc["containers"]:
        if c["not_observable"]:
            assert "not observable in this form" in text


# -- colours (no browser: computed from the page's own colours) ------------------------------------
class _Texts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.texts: list[tuple[str, str]] = []  # (text fill, the tile fill under it)
        self.tiles: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and a.get("class") == "treemap":
            self.tiles.append([])
        elif tag == "rect" and self.tiles and "fill" in a and "data-date" not in a:
            self.tiles[-1].append(a["fill"])
        elif tag == "text" and "data-on" in a:
            self.texts.append((a["fill"], a["data-on"]))


def _rules(css: str) -> dict[str, dict[str, str]]:
    rules: dict[str, dict[str, str]] = {}
    for selectors, body in re.findall(r"([^{}@]+)\{([^{}]*)\}", css):
        props = dict(re.findall(r"(?:^|;)\s*(color|background)\s*:\s*(#[0-9a-fA-F]{3,6})", body))
        for sel in selectors.split(","):
            rules.setdefault(sel.strip(), {}).update(props)
    return rules


def _hex6(c: str) -> str:
    return "#" + "".join(ch * 2 for ch in c[1:]) if len(c) == 4 else c


@pytest.mark.parametrize("key", sorted(PAGES))
def test_every_text_colour_meets_wcag_aa_on_its_background(built, tmp_path, key):
    html = _report(built, key, tmp_path).read_text()
    parser = _Texts()
    parser.feed(html)
    for fill, under in parser.texts:
        assert contrast(fill, under) >= 4.5, (fill, under)
    for tiles in parser.tiles:
        assert len(tiles) == len(set(tiles)), f"a colour is reused in one treemap: {tiles}"
    rules = _rules(_CSS)
    backgrounds = {sel: _hex6(r["background"]) for sel, r in rules.items() if "background" in r}
    inks = [_hex6(rules["body"]["color"])] + [_hex6(r["color"]) for sel, r in rules.items()
                                              if "color" in r and sel != "body"]
    assert backgrounds and len(inks) >= 3
    for ink in inks:
        for sel, bg in backgrounds.items():
            if sel.startswith(".swatch") or sel.startswith("svg"):
                continue
            assert contrast(ink, bg) >= 4.5, f"{ink} on {sel} ({bg}): {contrast(ink, bg):.2f}"


def test_no_treemap_reuses_a_colour_however_many_groups_it_has():
    """Every count of groups from 1 to 30 (the palette's edge, one past it, far past it): each tile
    its own colour, the tiles' bytes summing to the container's, and every label readable on its tile."""
    from mlcache_audit.report.html import _treemap

    for n in range(1, 31):
        c = {"bytes_by_kind": {}, "other_bytes_by_area": {f"area{i}": 1000 * (n - i) for i in range(n)}}
        parser = _Texts()
        parser.feed(_treemap(c))
        fills = parser.tiles[0]
        assert len(fills) == len(set(fills)), (n, fills)
        assert all(contrast(f, under) >= 4.5 for f, under in parser.texts), n
        assert sum(int(b) for b in re.findall(r'data-bytes="(\d+)"', _treemap(c))) == sum(c["other_bytes_by_area"].values())
