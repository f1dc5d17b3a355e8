"""Sizes: parsing the units CI budgets use, and formatting for people."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcache_audit.errors import BudgetConfigError
from mlcache_audit.units import format_signed_size, format_size, parse_size


@pytest.mark.parametrize("text,expected", [
    ("500KB", 500_000), ("1MB", 1_000_000), ("2GiB", 2 * 1024**3), ("1.5 GB", 1_500_000_000),
    ("1024", 1024), ("10kib", 10240), ("3 B", 3), ("0", 0),
])
def test_parse_size_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "MB", "1XB", "-1MB", "1..2MB", "ten"])
def test_parse_size_rejects_nonsense(bad):
    with pytest.raises(BudgetConfigError):
        parse_size(bad)


@given(st.integers(min_value=0, max_value=10**15), st.sampled_from(["B", "KB", "MB", "GB", "KiB", "MiB", "GiB"]))
def test_parse_size_scales_integers_exactly(n, unit):
    factor = {"B": 1, "KB": 1000, "MB": 10**6, "GB": 10**9, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}[unit]
    assert parse_size(f"{n}{unit}") == n * factor


@given(st.integers(min_value=0, max_value=10**16))
def test_format_size_round_trips_within_rounding(n):
    text = format_size(n)
    back = parse_size(text.replace(" ", "").replace("kB", "KB"))
    # one decimal place: at worst 0.05 of a unit at the bottom of its range (1.0 kB for 1,049 B)
    assert abs(back - n) <= max(1, n * 0.05)


def test_format_signed_size_shows_direction():
    assert format_signed_size(3_000_000) == "+3.0 MB"
    assert format_signed_size(-1200) == "-1.2 kB"
    assert format_signed_size(0) == "0 B"
