"""Render mlcache's HTML report in a real browser and fail when the page is blank.

    python scripts/screenshot_html.py [OUT.png]     # needs Debian's chromium (apt-get install chromium)

Builds the fixtures into a temporary folder, writes `mlcache scan --format html` of the recompile
fixture, takes a headless Chromium screenshot, and checks the picture: a blank or near-blank page
(almost one colour) exits 1. The PNG is decoded with the standard library, every row unfiltered.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))


def pixels(png: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows of raw pixel bytes) of an 8-bit RGB or RGBA PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", data[:10])
            assert depth == 8 and colour in (2, 6), "expected 8-bit RGB(A)"
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "mlcache-report.png").resolve()
    import build_fixtures

    with tempfile.TemporaryDirectory() as tmp:
        paths = build_fixtures.build_all(Path(tmp) / "fixtures")
        page = Path(tmp) / "report.html"
        subprocess.run([sys.executable, "-m", "mlcache_audit", "scan", str(paths["recompile"]), "--format", "html",
                        "--output", str(page), "--no-hash-cache"], check=True)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={out}", "--window-size=1280,1600", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
    width, height, bpp, rows = pixels(out.read_bytes())
    colours = Counter(row[i:i + 3] for row in rows[::4] for i in range(0, len(row), bpp * 8))
    background = colours.most_common(1)[0][1] / sum(colours.values())
    print(f"{out}: {width}x{height}, {len(colours)} colours sampled, {background:.0%} background")
    if len(colours) < 20 or background > 0.97:
        print("the page looks blank", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
