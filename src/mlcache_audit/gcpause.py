"""The cyclic garbage collector paused while a run builds many records that hold no cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Entries, artifacts and document dicts hold no reference cycles, so the collector's passes
    over them (each generation scanned again as they pile up) free nothing and cost more than the
    work as the counts grow: measured, they made a walk slower than linear. Reference counting
    still frees everything; the collector's previous state is restored after."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
