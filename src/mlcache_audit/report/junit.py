"""JUnit XML for any CI: one suite for the totals' budgets, one per container for its own budgets
(copies, findings), one testcase per budget, <failure> on breach; an input error (exit 2) is an
<error> case, so a broken run never reads as a green one. The Ant shape Jenkins, GitLab, Azure and
the GitHub test-report actions read: properties, system-out and system-err present."""

from __future__ import annotations

import re
import socket
from datetime import datetime, timezone
from xml.etree import ElementTree as ET

# Characters XML 1.0 forbids even escaped (C0 controls but tab, CR, LF; lone surrogates; U+FFFE/F).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    return _FORBIDDEN.sub("\ufffd", str(text))


def _suite(parent: ET.Element, name: str, sid: int, cases: list[dict], path: str, notes: list[str],
           errors: int = 0) -> ET.Element:
    suite = ET.SubElement(parent, "testsuite", name=clean(name), package="mlcache", id=str(sid),
                          timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                          hostname=socket.gethostname() or "localhost", tests=str(len(cases)),
                          failures=str(sum(not c.get("passed", True) for c in cases)), errors=str(errors),
                          skipped="0", time="0")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="path", value=clean(path))
    for c in cases:
        case = ET.SubElement(suite, "testcase", classname="mlcache.budget", name=clean(c["name"]), time="0")
        if "error" in c:
            err = ET.SubElement(case, "error", message=clean(c["error"]), type="InputError")
            err.text = clean(c["error"])
        elif not c["passed"]:
            failure = ET.SubElement(case, "failure", message=clean(c["message"]), type="BudgetExceeded")
            behind = [f"{b['rule']}: {b.get('summary') or ''} Fix: {b.get('remedy') or ''}" for b in c.get("findings", [])]
            failure.text = clean("\n".join([f"{c['name']}: actual {_quantity(c['actual'], c['unit'])}, limit "
                                            f"{_quantity(c['limit'], c['unit'])}", c["message"], *behind]))
        if c.get("system_out"):
            ET.SubElement(case, "system-out").text = clean(c["system_out"])
    ET.SubElement(suite, "system-out").text = clean("\n".join(notes))
    ET.SubElement(suite, "system-err").text = ""
    return suite


def _quantity(value, unit: str) -> str:
    """`1 copy`, `3 copies`, `2.5 percent`, `1000 bytes`."""
    if unit == "copies" and isinstance(value, int):
        from mlcache_audit.units import plural

        return plural(value, "copy")
    return f"{value} {unit}"


def _document(suites: ET.Element) -> str:
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def check_junit(doc: dict) -> str:
    """From an `mlcache.check/3` document."""
    suites = ET.Element("testsuites")
    totals = [b for b in doc["budgets"] if b["scope"] == "total"]
    if doc.get("launches"):  # the per-launch figures go with the gate's own testcase
        from mlcache_audit.report.summary import launch_rows, launch_verdict

        lines = [f"launch {n}: {d} (ML caches {after})" + (f"; {note}" if note else "")
                 for n, d, after, note in launch_rows(doc)] + [launch_verdict(doc)]
        totals = [{**b, "system_out": "\n".join(lines)} if b["name"] == "max-growth-per-launch" else b for b in totals]
    _suite(suites, "mlcache budgets: totals", 0, totals, doc["path"], doc["notes"])
    scopes = sorted({b["scope"] for b in doc["budgets"] if b["scope"] != "total"})
    for i, scope in enumerate(scopes, 1):
        _suite(suites, f"mlcache budgets: {scope}", i, [b for b in doc["budgets"] if b["scope"] == scope],
               doc["path"], [])
    return _document(suites)


def error_junit(path: str, message: str) -> str:
    """The report of a run that could not check anything (exit 2)."""
    suites = ET.Element("testsuites")
    _suite(suites, "mlcache budgets", 0, [{"name": "mlcache check", "error": message}], path, [], errors=1)
    return _document(suites)


def write_junit(path, doc: dict | None = None, *, error: str | None = None, checked: str = "") -> None:
    """The JUnit file of a check that ran (`doc`), or of one that could not run (`error`)."""
    from mlcache_audit.docfields import write_output

    write_output(path, check_junit(doc) if doc is not None else error_junit(checked, error or ""))
