"""Type- and range-checks for every field mlcache reads from a document it did not just write.

Plans, quarantine manifests, snapshots and baselines, config files: each value is checked for its
type and range before use, so a string where a number belongs, a boolean where a size belongs
(`True` is an int to Python), a NaN, a negative size or a year-300,000 timestamp is named as a
damaged field instead of crashing later or reading as "the cache grew".
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

from mlcache_audit import fsio
from mlcache_audit.errors import DocumentInvalid, OutputNotWritable, PathNotFound

MAX_BYTES = 1 << 62  # far beyond any disk, still exact in a float-free int
MAX_POSIX_TIME = 253402300799  # 9999-12-31T23:59:59Z, the last time datetime can show
MIN_POSIX_TIME = -62135596800  # 0001-01-01T00:00:00Z


class Fields:
    """Checks fields of one document, naming the document and the field in every error."""

    def __init__(self, source: str, error: Callable[[str], Exception] | None = None):
        self.source = source
        self._error = error or (lambda msg: DocumentInvalid(msg))

    def fail(self, where: str, problem: str) -> Exception:
        return self._error(f"{self.source}: {where} {problem}")

    def obj(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be an object, not {_kind(value)}")
        return value

    def seq(self, value: Any, where: str) -> list | tuple:
        if not isinstance(value, list | tuple):
            raise self.fail(where, f"must be a list, not {_kind(value)}")
        return value

    def text(self, d: dict, key: str, where: str, *, optional: bool = False) -> str | None:
        value = d.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f"must be text, not {_kind(value)}")
        return value

    def integer(self, d: dict, key: str, where: str, *, optional: bool = False, low: int = 0,
                high: int = MAX_BYTES) -> int | None:
        value = d.get(key)
        if value is None and optional:
            return None
        return self.int_value(value, f"{where}.{key}", low=low, high=high)

    def int_value(self, value: Any, where: str, *, low: int = 0, high: int = MAX_BYTES) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"must be a whole number, not {_kind(value)}")
        if not low <= value <= high:
            raise self.fail(where, f"is out of range ({value}; allowed {low} to {high})")
        return value

    def number(self, value: Any, where: str, *, low: float = 0.0, high: float = 1e15) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                (isinstance(value, float) and not math.isfinite(value)):
            raise self.fail(where, f"must be a finite number, not {_kind(value)}")
        if not low <= value <= high:
            raise self.fail(where, f"is out of range ({value}; allowed {low:g} to {high:g})")
        return float(value)

    def flag(self, d: dict, key: str, where: str) -> bool:
        value = d.get(key)
        if not isinstance(value, bool):
            raise self.fail(f"{where}.{key}", f"must be true or false, not {_kind(value)}")
        return value

    def choice(self, d: dict, key: str, where: str, choices) -> str:
        value = self.text(d, key, where)
        if value not in choices:
            raise self.fail(f"{where}.{key}", f"is not one of {', '.join(sorted(choices))} ({value!r})")
        return value

    def texts(self, d: dict, key: str, where: str) -> list[str]:
        values = self.seq(d.get(key, []), f"{where}.{key}")
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise self.fail(f"{where}.{key}[{i}]", f"must be text, not {_kind(v)}")
        return list(values)


def posix_time(value: Any) -> float | None:
    """A timestamp from a source (a backup's MBFile, an archive header) if it is a finite number in
    the years 1 to 9999; None for anything else (the caller notes it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value) if MIN_POSIX_TIME <= value <= MAX_POSIX_TIME else None


def _kind(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return {dict: "an object", list: "a list", tuple: "a list", str: "text", int: "a number", float: "a number",
            bytes: "binary data"}.get(type(value), type(value).__name__)


# The size cap of each kind of document mlcache reads; over it, the document is refused by name. A
# plan action with its evidence is under 2 KiB, so 64 MiB holds a 15,000-action plan many times over.
MAX_DOCUMENT_BYTES = 64 * 1024**2  # plans, snapshots and baselines
MAX_CONFIG_BYTES = 1024**2  # mlcache.toml, pyproject.toml
MAX_DEPTH = 64  # no document mlcache writes or reads nests deeper than 8


def read_document(path, what: str, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of a document named on the command line (a plan, snapshot, config): opened without
    blocking and without following a final symlink, and only if it is a regular file."""
    try:
        data = fsio.read_regular(str(path), limit + 1)
    except FileNotFoundError:
        raise PathNotFound(f"no such {what}: {fsio.readable(str(path))}") from None
    except OSError as exc:
        raise DocumentInvalid(f"cannot read {what} {fsio.readable(str(path))}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise DocumentInvalid(f"{what} {fsio.readable(str(path))} is over the {what} size cap ({_cap(limit)})")
    return data


def _cap(limit: int) -> str:
    return f"{limit // 1024**2} MiB" if limit >= 1024**2 else f"{limit // 1024} KiB"


def load_json(data: bytes | str, what: str, limit: int | None = None) -> Any:
    """A JSON value, or DocumentInvalid naming `what`: not JSON, over `limit` bytes, or nested deeper
    than MAX_DEPTH (json's own recursion would raise RecursionError long after that)."""
    if limit is not None and len(data) > limit:
        raise DocumentInvalid(f"{what} is over its size cap ({_cap(limit)})")
    return _parsed(json.loads, data, what, "JSON")


def load_toml(data: bytes, what: str) -> dict:
    """A TOML document, or DocumentInvalid naming `what` (not UTF-8, not TOML, or nested too deep)."""
    import tomllib

    return _parsed(lambda raw: tomllib.loads(raw.decode("utf-8")), data, what, "TOML")


def _parsed(parse: Callable[[Any], Any], data, what: str, kind: str) -> Any:
    try:
        value = parse(data)
    except RecursionError:
        raise DocumentInvalid(f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise DocumentInvalid(f"{what} is not UTF-8 text") from None
    except ValueError as exc:
        raise DocumentInvalid(f"{what} is not valid {kind} ({getattr(exc, 'msg', exc)})") from None
    check_depth(value, what)
    return value


def check_depth(value: Any, what: str, limit: int = MAX_DEPTH) -> None:
    """DocumentInvalid when lists and objects in `value` nest deeper than `limit` (checked without
    recursion, so later code that walks the value recursively is safe)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise DocumentInvalid(f"{what} is nested deeper than {limit} levels")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def open_output(path, mode: str = "w"):
    """A file mlcache was asked to write (a document, a stream, a step summary), opened for text;
    a missing folder or a read-only place is a one-line OutputNotWritable, never a traceback; so is
    one that would overwrite an input or lie inside what this run reads (outputs.GUARD)."""
    from mlcache_audit.outputs import GUARD

    GUARD.check(path)
    try:
        return open(path, mode, encoding="utf-8")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        parent = os.path.dirname(os.path.abspath(path))
        hint = f"the folder {fsio.readable(parent)} does not exist" if not os.path.isdir(parent) else None
        verb = "append to" if mode == "a" else "write"
        raise OutputNotWritable(f"cannot {verb} {fsio.readable(str(path))}: {exc.strerror or exc}", hint=hint) from None


class Sink:
    """An output file being written: a full disk (or any write error) at write, flush or close is a
    one-line OutputNotWritable naming the file, never a traceback. Buffered text reaches the disk
    only at flush or close, so for a small document those are where ENOSPC shows."""

    def __init__(self, path, mode: str = "w"):
        self.path = path
        self._fh = open_output(path, mode)

    def _failed(self, exc: OSError) -> OutputNotWritable:
        return OutputNotWritable(f"cannot write {fsio.readable(str(self.path))}: {exc.strerror or exc}")

    def write(self, text: str) -> None:
        try:
            self._fh.write(text)
        except OSError as exc:
            self.abandon()
            raise self._failed(exc) from None

    def close(self) -> None:
        try:
            self._fh.flush()
            self._fh.close()
        except OSError as exc:
            self.abandon()
            raise self._failed(exc) from None

    def abandon(self) -> None:
        """Close without raising (after an error, or when the run ends early)."""
        try:
            self._fh.close()
        except OSError:
            pass


def write_output(path, text, mode: str = "w", end: str = "") -> None:
    """Write a document mlcache was asked to produce (see open_output and Sink), then `end`. `text`
    is a str, or its pieces in order (report.json.encoded_chunks)."""
    sink = Sink(path, mode)
    try:
        for piece in (text,) if isinstance(text, str) else text:
            sink.write(piece)
        if end:
            sink.write(end)
    except BaseException:
        sink.abandon()
        raise
    sink.close()


def append_output(path, text: str) -> None:
    write_output(path, text, "a")
