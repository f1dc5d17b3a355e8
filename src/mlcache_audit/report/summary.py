"""What every human-facing format says first, computed once from a scan document: the verdict
(how much can be freed, the leading cause in one sentence, the next command) and the largest
artifacts with identical copies collapsed ("23 copies of ...")."""

from __future__ import annotations

import posixpath
import shlex
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mlcache_audit.units import format_signed_size, format_size


@dataclass(frozen=True)
class Verdict:
    reclaimable_bytes: int
    opt_in_bytes: int
    headline: str
    cause: str | None
    next_command: str | None  # one shell-quoted command that runs as printed
    next_note: str | None = None  # what to know about it (prose, never part of the command)


def verdict(c: dict, path: str, discovery: dict | None = None) -> Verdict:
    """The verdict of one container of a scan document (found at `path`, or by discovery)."""
    reclaim, extra = c["reclaimable_bytes"], c.get("reclaimable_opt_in_bytes", 0)
    leading = next((f for f in c["findings"] if f["reclaimable_bytes"] and not f["opt_in"]), None)
    if leading is None:
        leading = next((f for f in c["findings"] if f["severity"] in ("high", "medium")), None)
    disk = c.get("reclaimable_disk_bytes")
    if reclaim and disk is not None and disk < 0.9 * reclaim and reclaim - disk >= 1_000_000:
        # Sparse files and clones: lead with what the disk gets back (an upper bound when sharing is unknown).
        bound = "" if c.get("clone_sharing") == "measured" else "at most "
        headline = (f"frees {bound}{format_size(disk)} on disk ({format_size(reclaim)} of file sizes: the files are "
                    "sparse or share blocks)")
    elif reclaim:
        headline = f"{format_size(reclaim)} can be freed"
    elif extra:
        headline = f"nothing to free by default; {format_size(extra)} more with --include-persistent"
    else:
        headline = "nothing to free"
    if c["not_observable"]:
        headline += f" ({', '.join(c['not_observable'])} not observable in this form)"
    cause = f"{leading['summary']} ({leading['rule']})." if leading else None
    target = shlex.quote(c.get("source_path") or path)
    if discovery is not None:  # a discovered client is named, not given by path
        home, tmpdir = discovery.get("home"), discovery.get("tmpdir")
        given = bool(home and home != str(Path.home()))  # --home was given: the scan's places are repeated
        target = (f"--home {shlex.quote(home)} " if given else "") + \
            (f"--tmpdir {shlex.quote(tmpdir)} " if given and tmpdir else "") + \
            f"--bundle-id {shlex.quote(c.get('client') or c['bundle_id'] or '')}"
    note = None
    if reclaim or extra:
        command = f"mlcache clean {target}" + ("" if reclaim else " --include-persistent")
        if not c["cleanable"]:
            note = "a preview: this form is read-only evidence"
        elif discovery is not None:
            note = "to act, add --all-clients --apply"
    else:
        command = None
    return Verdict(reclaim, extra, headline, cause, command, note)


def _amount(value, unit: str, signed: bool = False) -> str:
    if unit.startswith("bytes"):
        return format_signed_size(value) if value < 0 or signed else format_size(value)
    if unit == "percent":
        return f"{value:g}%"
    return str(value)


def budget_actual(b: dict) -> str:
    """A budget's measured value as people read it; growth always with its sign."""
    return _amount(b["actual"], b["unit"], b["name"].startswith("max-growth"))


def budget_limit(b: dict) -> str:
    return _amount(b["limit"], b["unit"])


def model_name(a: dict) -> str:
    """What the model is called: its class name, else the bundle's or package's file name."""
    model = a.get("model") or {}
    if model.get("class_name"):
        return model["class_name"]
    if a["kind"] in ("compiled_model", "source_model", "compile_leftover", "executorch_asset"):
        base = posixpath.basename(a["path"])
        for suffix in (".mlmodelc", ".mlpackage", ".mlmodel", ".aimodelc", ".aimodel"):
            base = base.removesuffix(suffix)
        return base
    return ""


@dataclass(frozen=True)
class Row:
    """One line of a "largest" list: an artifact, or several identical copies of one."""

    bytes_each: int
    copies: int
    kind: str
    path: str  # the newest copy's
    name: str
    producer: str

    @property
    def total(self) -> int:
        return self.bytes_each * self.copies


def largest(artifacts: list[dict], top: int) -> tuple[list[Row], int]:
    """The `top` largest rows, byte-identical copies (same content hash) collapsed into one row."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for a in artifacts:
        key = (a["fingerprint"] or {}).get("content") or ("path:" + a["path"])
        groups[f"{a['kind']}:{key}"].append(a)
    rows = []
    for items in groups.values():
        newest = max(items, key=lambda a: (a["newest_mtime"] or "", a["path"]))
        rows.append(Row(max(a["bytes"] for a in items), len(items), newest["kind"], newest["path"],
                        model_name(newest), newest.get("producer") or ""))
    rows.sort(key=lambda r: (-r.total, r.path))
    return rows[:top], len(rows)


def launch_rows(doc: dict) -> list[tuple[str, str, str, str]]:
    """(launch, delta, ML caches after, note) per launch of `check --launch`, for every renderer."""
    gate = doc.get("launches") or {}
    rows = []
    for r in gate.get("runs", []):
        note = "not gated (first launch)" if not r["gated"] else "over the budget" if r["over"] else ""
        top = r["grew"][0] if r["grew"] else None
        if top:
            note = (note + "; " if note else "") + f"most: {top['kind']} {top['path']}"
        rows.append((str(r["launch"]), format_signed_size(r["delta_bytes"]), format_size(r["coreml_bytes"]), note))
    return rows


def launch_verdict(doc: dict) -> str:
    gate = doc["launches"]
    line = (f"{gate['count']} launches of `{gate['command']}`: median {format_signed_size(gate['median_bytes'])} "
            f"per launch after the first, spread {format_size(gate['spread_bytes'])}; {gate['why']}")
    if gate.get("suggested_budget_bytes") is not None:
        line += f"; suggested --max-growth-per-launch {format_size(gate['suggested_budget_bytes'])}"
    return line


def why_text(ev: dict) -> str:
    """An evidence link in one line: what it rests on, what it asserts of the target, what it refers to."""
    about = ", ".join(f"{k} {v}" for k, v in ev.get("about", {}).items() if k != "unit")
    refs = "; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in ev.items() if k not in ("basis", "about", "rule"))
    return ev.get("basis", "") + (f" [{about}]" if about else "") + (f"; {refs}" if refs else "")


def fates(c: dict) -> dict[str, str]:
    """One fate per path in a report: "can go" when a default rule reclaims it (whichever finding
    lists it), "can go with --include-persistent" when only an opt-in rule does, "to repair" for a
    repair rule's; every other path is "kept"."""
    out: dict[str, str] = {}
    for f in c["findings"]:
        if f.get("repair_bytes"):
            fate = f"to repair with --only {f['rule']}"
        elif f["opt_in"]:
            fate = "can go with --include-persistent"
        else:
            fate = "can go"
        for p in f["reclaimable_paths"]:
            if out.get(p) != "can go":
                out[p] = fate
    return out


def header_facts(c: dict) -> list[tuple[str, str, str]]:
    """What a container's heading says besides its name and sizes, as (kind, label, text), printed
    "label: text": the device or simulator it came from, the areas its form cannot show, whether it
    is read-only evidence, and what no pull shows. Text and HTML print the same facts."""
    info = c.get("info") or {}
    out = []
    if info.get("device_name") or info.get("ios_version"):
        out.append(("device", "device", f"{info.get('device_name', '?')}, iOS {info.get('ios_version', '?')} "
                                        f"({info.get('ios_build', '?')})"))
    if info.get("device") or info.get("runtime"):
        out.append(("simulator", "simulator", f"{info.get('device', '?')}, {info.get('runtime', '?')}"))
    if c["not_observable"]:
        out.append(("not_observable", "not observable in this form",
                    f"{', '.join(c['not_observable'])} (unknown, not clean)"))
    if not c["cleanable"]:
        out.append(("read_only", "read-only evidence", "previewed, never cleaned"))
    if c.get("pull_note"):
        out.append(("pull_note", "not in any pull", "the system ANE cache, which Settings' \"Documents & Data\" "
                                                    "also counts (on a Mac: sudo du -sh /Library/Caches/com.apple.aned)"))
    return out
