"""What a run's output holds: the bytes of the documents mlcache renders, measured in the run itself.

    python bench/held_output.py scan PATH --format json ...   (any mlcache arguments)

Runs mlcache in this process with `report.emit` wrapped: each document handed to it is measured
(sys.getsizeof of every dict, list, tuple and string in it, each object once) before it is
rendered, and the sum is printed as the last line of stderr, `held <bytes>`. The growth rows of
bench_stages.py allow the peak this much more at 10x the work than 1.2x of the peak at 1x (the
issue's "plus what the output holds"): a home's 600 containers are 600 containers' records in
the document, whatever the walk does.
"""

from __future__ import annotations

import sys


def deep_size(obj, seen: set[int]) -> int:
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    n = sys.getsizeof(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            n += deep_size(k, seen) + deep_size(v, seen)
    elif isinstance(obj, list | tuple):
        for v in obj:
            n += deep_size(v, seen)
    return n


def main() -> int:
    import mlcache_audit.report as report  # wrapped before any command module takes `emit` from it

    held, seen = [0], set()
    render = report.emit

    def emit(term, what, fmt, doc, **kwargs):
        document = kwargs.get("json_doc") if kwargs.get("json_doc") is not None else doc
        held[0] += deep_size(document, seen)
        return render(term, what, fmt, doc, **kwargs)

    report.emit = emit
    from mlcache_audit.cli import main as mlcache

    sys.argv = ["mlcache", *sys.argv[1:]]
    code = 0
    try:
        mlcache()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    print(f"held {held[0]}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
