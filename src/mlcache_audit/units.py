"""Units: sizes (decimal kB, MB, GB and binary KiB, MiB, GiB) and UTC timestamps."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from mlcache_audit.errors import BudgetConfigError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Parse `500KB`, `1MB`, `2GiB`, `1.5 GB` or a plain byte count into bytes.

    Decimal units are powers of 1000 (as size-limit and Finder count), `KiB`/`MiB`/`GiB` powers of 1024.
    """
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise BudgetConfigError(f"a size must be a number of bytes or text like 500KB, not {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise BudgetConfigError(f"size must not be negative: {text}")
        return text
    match = _SIZE_RE.match(str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise BudgetConfigError(
            f"cannot read size {text!r}", hint="use a number with B, KB, MB, GB, KiB, MiB or GiB, e.g. 500KB"
        )
    number, unit = match.group(1), _UNITS[match.group(2).lower()]
    if "." not in number:  # whole numbers need no decimal arithmetic (nor its import)
        return int(number) * unit
    from decimal import Decimal

    return int((Decimal(number) * unit).to_integral_value())


def format_size(n: int) -> str:
    """Format bytes with decimal units, three significant digits: `964.6 kB`, `23.1 MB`."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n < 1000:
        return f"{sign}{n} B"
    for unit, factor in (("kB", 1000), ("MB", 1000**2), ("GB", 1000**3), ("TB", 1000**4)):
        value = n / factor
        if value < 999.95 or unit == "TB":
            return f"{sign}{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_signed_size(n: int) -> str:
    """A delta with an explicit sign: `+3.0 MB`, `-1.2 kB`, `0 B`."""
    return ("+" if n > 0 else "") + format_size(n)


def iso_utc(ts: float | None) -> str | None:
    """A POSIX time as ISO 8601 UTC (`2026-11-10T08:00:00Z`); None stays None."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):  # a time no calendar shows (year 300,000, NaN)
        return None


_IRREGULAR = {"copy": "copies", "entry": "entries", "launch": "launches", "process": "processes", "specialization": "specializations"}


def plural(n: int, word: str) -> str:
    """`1 file`, `2 files`, `1 copy`, `3 copies`: a count with its word, as people write it."""
    return f"{n} {word if n == 1 else _IRREGULAR.get(word, word + 's')}"
