"""GitHub Actions: one `::error` annotation per failing budget (GitHub shows only a few per step),
naming the model, the producer and the fix; and the Markdown step summary."""

from __future__ import annotations

from mlcache_audit.report.markdown import check_markdown


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotations(doc: dict) -> list[str]:
    lines = []
    for b in doc["budgets"]:
        if b["passed"]:
            continue
        text = b["message"]
        for f in b["findings"][:2]:
            what = ", ".join(x for x in (f.get("model") and f"model {f['model']}",
                                         f.get("producer") and f"from {f['producer']}") if x)
            text = text.rstrip(".") + f". {f['rule']}" + (f" ({what})" if what else "") + \
                f": {f.get('summary', '').rstrip('.')}."
            if f.get("remedy"):
                text += f" Fix: {f['remedy']}"
        lines.append(f"::error title={_escape_property('mlcache budget ' + b['name'])}::{_escape_data(text)}")
    return lines




def publish(term, doc: dict, *, annotate: bool, step_summary) -> None:
    """Under GitHub Actions: the annotations on stderr (the runner reads workflow commands from both
    streams, actions/runner ScriptHandler.cs, and stdout is the document's alone: `--format json`
    must parse), the summary appended to the step-summary file."""
    if annotate:
        for line in annotations(doc):
            term.stderr.write(line + "\n")
    if step_summary:
        from mlcache_audit.docfields import append_output

        append_output(step_summary, check_markdown(doc))


def publish_error(term, message: str, *, annotate: bool, step_summary) -> None:
    """A check that could not run (exit 2) says so where a green or red one would: an error
    annotation and a line in the step summary, so a broken run never reads as a passing one."""
    if annotate:
        term.stderr.write(f"::error title={_escape_property('mlcache check could not run')}::{_escape_data(message)}\n")
    if step_summary:
        from mlcache_audit.docfields import append_output
        from mlcache_audit.report.markdown import _cell

        append_output(step_summary, f"### mlcache check: could not run\n\n{_cell(message)}\n")
