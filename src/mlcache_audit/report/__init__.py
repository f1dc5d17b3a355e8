"""Every renderer, one module per output format: text (rich, for people), json (the documents every
other format reads), markdown (tickets, PR comments), html (one self-contained page), junit and
github (CI). Renderers read documents and results; they never reach back into a stage."""

from __future__ import annotations

import importlib


def emit(term, what: str, fmt: str, doc: dict, *, output=None, json_doc: dict | None = None, **extra) -> None:
    """Render document `doc` of command `what` in format `fmt` to the terminal or into `output`.

    text: report.text.render_<what>(terminal, doc, **extra), drawn on the terminal or recorded whole;
    markdown / html: report.<fmt>.<what>_<fmt>(doc, **extra); json: `json_doc` (default `doc`).
    Every format for people reads the document with its strings made printable (fsio.printable):
    names from a container never reach a screen, a log or a ticket raw."""
    if fmt != "json":
        from mlcache_audit.fsio import printable_document

        doc = printable_document(doc)
        extra = {k: printable_document(v) if isinstance(v, dict | list) else v for k, v in extra.items()}
    end = ""  # written after the rendering (JSON's newline: a large document is not copied to add it)
    if fmt == "text":
        text = importlib.import_module("mlcache_audit.report.text")
        draw = getattr(text, f"render_{what}")
        if output is None:
            draw(term, doc, **extra)
            return
        import io

        from mlcache_audit.terminal import Terminal

        buffer = io.StringIO()
        draw(Terminal(buffer, term.stderr, color=False), doc, **extra)
        rendered = (buffer.getvalue(),)
    elif fmt == "json":  # in pieces, as encoded: the text of a large document is never held whole
        from mlcache_audit.report.json import encoded_chunks

        rendered, end = encoded_chunks(json_doc if json_doc is not None else doc), "\n"
    else:
        module = importlib.import_module(f"mlcache_audit.report.{fmt}")
        rendered = (getattr(module, f"{what}_{fmt}")(doc, **extra),)
    if output is None:  # every format as pieces, in order (JSON's as it is encoded)
        for piece in rendered:
            term.write(piece)
        if end:
            term.write(end)
    else:
        from mlcache_audit.docfields import write_output

        write_output(output, rendered, end=end)
        term.message(f"Written to {output}")


def stream(term, lines, output=None) -> None:
    """Write text as it comes (JSON Lines of `scan --format jsonl`, a long line in pieces as it is
    encoded, or `watch --format json`, or watch's text), each piece flushed, so nothing waits for
    the end and nothing is kept."""
    from mlcache_audit.docfields import Sink

    sink = None
    try:
        for text in lines:
            if output is not None:
                if sink is None:  # opened with the first line: the containers it names are known by then
                    sink = Sink(output)
                sink.write(text)
            else:
                term.write(text)
                term.stdout.flush()
        if sink is not None:
            sink.close()
    finally:
        if sink is not None:
            sink.abandon()


def watch_event(term, fmt: str, event: dict) -> None:
    if fmt == "json":
        from mlcache_audit.report.json import dumps

        stream(term, [dumps(event)])
    else:
        from mlcache_audit.fsio import printable_document
        from mlcache_audit.report.text import render_watch_event

        render_watch_event(term, printable_document(event))
