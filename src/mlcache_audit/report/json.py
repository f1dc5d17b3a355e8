"""The JSON documents: built here from the stages' results, and read by every other renderer.

Each document carries a `schema` string `mlcache.<name>/<version>`; its JSON Schema ships in
mlcache_audit/schemas/ (`mlcache schema NAME`). Paths that are not valid UTF-8 carry `*_b64` fields
(docs/schema.md). The C encoder writes compact JSON: ~10x faster than indent=2 on a 40,000-file scan.
"""

from __future__ import annotations

import json

from mlcache_audit.fsio import path_fields, readable, readable_document
from mlcache_audit.units import iso_utc
from mlcache_audit.vocab import Form

SCAN_SCHEMA = "mlcache.scan/3"
SCAN_CONTAINER_SCHEMA = "mlcache.scan-container/2"  # one line of `scan --format jsonl`
SCAN_ERROR_SCHEMA = "mlcache.scan-error/1"  # the line of a PATH of several that could not be read
APPLY_SCHEMA = "mlcache.apply/2"
RESTORE_SCHEMA = "mlcache.restore/1"
CHECK_SCHEMA = "mlcache.check/3"
DIFF_SCHEMA = "mlcache.diff/3"


def dumps(doc: dict) -> str:
    return encoded(doc) + "\n"


def encoded(doc: dict) -> str:
    """The document as compact JSON, without its final newline: a large one (23 MB for a scan of
    15,000 entries) is written as it is, not copied once more to add one."""
    return json.dumps(doc, ensure_ascii=True, check_circular=False)  # built fresh: no cycles


_ENCODER = json.JSONEncoder(ensure_ascii=True, check_circular=False)
# Levels written out here: a scan document, its containers, a container, its lists (artifacts,
# findings), a finding, its lists (the paths and links of every entry it names).
STREAM_DEPTH = 6
STREAM_RUNS_FROM = 3  # from this level on a long list goes in runs; above it (containers) element by element
STREAM_FEW = 8  # a list of at most this many is written out element by element at any level (a few findings)
STREAM_CHUNK = 1 << 20
STREAM_RUN = 256  # elements of a long list encoded in one call


def encoded_pieces(doc, depth: int = 0):
    """`encoded(doc)` in pieces, in order, whose concatenation is exactly it: the dicts and lists of
    the top `STREAM_DEPTH` levels are written out here, each value below them by the C encoder, so
    the text of the whole document (10.7 MB for a home's 600 containers) is never held at once.
    A long list from the container's own lists down (its 15,000 artifacts; a finding's 15,000 links)
    goes in runs of STREAM_RUN elements, one C call each; one call per artifact doubled the time.
    A container's few findings are written out one by one, down to their lists: the one finding
    that named 15,000 stale entries was 11 MB of text encoded in one call, and that call held its
    pieces and their join at once (37 MB more at the peak of a 15,000-entry scan, measured)."""
    if depth < STREAM_DEPTH and isinstance(doc, dict) and doc and all(type(k) is str for k in doc):
        sep = "{"
        for key, value in doc.items():
            yield sep + _ENCODER.encode(key) + ": "
            yield from encoded_pieces(value, depth + 1)
            sep = ", "
        yield "}"
    elif depth < STREAM_DEPTH and isinstance(doc, list) and doc:
        if depth >= STREAM_RUNS_FROM and len(doc) > STREAM_FEW:  # "[a, b]" without its brackets is "a, b"
            for i in range(0, len(doc), STREAM_RUN):
                yield ("[" if i == 0 else ", ") + _ENCODER.encode(doc[i:i + STREAM_RUN])[1:-1]
            yield "]"
            return
        sep = "["
        for value in doc:
            yield sep
            yield from encoded_pieces(value, depth + 1)
            sep = ", "
        yield "]"
    else:
        yield _ENCODER.encode(doc)


def encoded_chunks(doc):
    """`encoded_pieces(doc)` joined into chunks of about a MiB: few writes, and none of the whole."""
    held, size = [], 0
    for piece in encoded_pieces(doc):
        held.append(piece)
        size += len(piece)
        if size >= STREAM_CHUNK:
            yield "".join(held)
            held, size = [], 0
    if held:
        yield "".join(held)


# -- scan -----------------------------------------------------------------------------------------
def scan_document(audit, documents: list[dict] | None = None) -> dict:
    """`mlcache.scan/3` from an AuditResult, with its containers' `documents` when the audit kept
    those (container_document of each) in place of their audits."""
    stats = audit.hashes.stats
    extra = {"discovery": audit.discovery, "system": audit.system, "held_open": audit.held} if audit.discovery else {}
    return {
        "schema": SCAN_SCHEMA,
        "path": readable(audit.path),
        **extra,
        "containers": documents if documents is not None else [container_document(c) for c in audit.containers],
        "hashing": {
            "files_hashed": stats.files_hashed, "bytes_hashed": stats.bytes_hashed,
            "partial_reads": stats.partial_reads, "cache_hits": stats.cache_hits,
            "cache": str(audit.hashes.cache.path) if audit.hashes.cache else None,
        },
    }


def merge_scan_documents(docs: list[tuple[str, dict]], *, errors: list[dict] = (), notes: list[str] = ()) -> dict:
    """One scan document from several paths' documents, each container naming its source path;
    the PATHs that could not be read in `errors` ({path, reason}) and what was folded in `notes`."""
    extra = {"errors": list(errors), "notes": [readable(n) for n in notes]}
    if len(docs) == 1 and not errors and not notes:
        return docs[0][1]
    hashing = {k: 0 for k in ("files_hashed", "bytes_hashed", "partial_reads", "cache_hits")}
    containers = []
    for path, doc in docs:
        for c in doc["containers"]:
            containers.append({**c, "source_path": path})
        for k in hashing:
            hashing[k] += doc["hashing"][k]
    cache = docs[0][1]["hashing"]["cache"] if docs else None
    return {"schema": SCAN_SCHEMA, "path": "", "paths": [p for p, _ in docs], "containers": containers,
            "hashing": {**hashing, "cache": cache}, **extra}


class ContainerLines:
    """`--format jsonl`: the lines of one path's document, a line per container, each a whole
    document. Iterated, they come as they are encoded, in pieces (a line is never held whole: a
    15,000-entry container's line is 23 MB, and held with its encoding it took 129 MB at the peak);
    pickled back from a worker, they become their text (a str), not the document the parent would
    unpack and encode again."""

    __slots__ = ("path", "doc")

    def __init__(self, path: str, doc: dict):
        self.path, self.doc = path, doc

    def __iter__(self):
        for c in self.doc["containers"]:
            yield from encoded_chunks({"schema": SCAN_CONTAINER_SCHEMA, "source_path": self.path, **c})
            yield "\n"

    def __reduce__(self):
        return str, ("".join(self),)


def error_line(error: dict) -> str:
    """`--format jsonl`: the line of a PATH that could not be read ({path, reason})."""
    return dumps({"schema": SCAN_ERROR_SCHEMA, **error})


def container_document(ca) -> dict:
    from mlcache_audit.rules.units import units_of

    scan, fp, dx = ca.scan, ca.fingerprints, ca.diagnosis
    units = units_of(scan.artifacts)
    blocks = scan.total_disk_bytes is not None
    c = scan.container
    return {
        "bundle_id": c.bundle_id,
        "client": c.client,
        "form": c.form,
        "source": c.source,
        **path_fields(c.label, "root"),
        "cleanable": c.cleanable_in_place,
        "total_bytes": scan.total_bytes,
        "file_count": scan.file_count,
        "coreml_bytes": scan.coreml_bytes,
        "reclaimable_bytes": dx.reclaimable_bytes,
        "reclaimable_opt_in_bytes": dx.reclaimable_opt_in_bytes,
        "repair_bytes": dx.repair_bytes,
        **disk_fields(ca),
        "not_observable": list(c.not_observable),
        "bytes_by_kind": scan.bytes_by_kind,
        "other_bytes_by_area": dict(sorted(scan.other_bytes_by_area.items())),
        "info": c.info,
        "pull_note": pull_note(c),
        "notes": ca.all_notes,
        "timeline": [{"date": d, "bytes": b} for d, b in scan.timeline()],
        "artifacts": [{
            "kind": a.kind,
            **path_fields(a.path),
            "bytes": a.bytes,
            "disk_bytes": a.disk_bytes if blocks else None,
            "files": a.files,
            "area": a.area,
            "oldest_mtime": iso_utc(a.oldest_mtime),
            "newest_mtime": iso_utc(a.newest_mtime),
            "producer": a.producer,
            "model": a.model or None,
            "detail": {k: v for k, v in a.detail.items() if k != "layout"},
            "unit": readable(units[a.path].key),
            "fingerprint": {
                "metadata": fp.metadata.get(a.path),
                "structure": fp.structure.get(a.path),
                "content": fp.content.get(a.path),
                "content_basis": fp.content_basis.get(a.path),
                "model": fp.model_key.get(a.path),
            },
            "notes": a.notes,
        } for a in scan.artifacts],
        "findings": [{
            "rule": f.rule,
            "severity": f.severity,
            "title": f.title,
            "summary": f.summary,
            "paths": [readable(p) for p in f.paths],
            "reclaimable_paths": [readable(p) for p in f.reclaimable_paths],
            "reclaimable_bytes": f.reclaimable_bytes,
            "reclaimable_disk_bytes": f.reclaimable_disk_bytes if blocks else None,
            "opt_in": f.opt_in,
            "evidence": {k: readable(v) if isinstance(v, str) else v for k, v in f.evidence.items()},
            "links": [{**path_fields(p), "evidence": readable_document(ev)} for p, ev in f.links.items()],
            "repair_bytes": f.repair_bytes,
            "explanation": f.explanation,
            "remedy": f.remedy,
        } for f in dx.findings],
    }


def pull_note(c) -> str | None:
    """For a container copied off a device: what no pull shows (FIELD-EVIDENCE.md, "Bytes that lie")."""
    if c.form not in (Form.XCAPPDATA, Form.DEVICE_HUB, Form.BACKUP, Form.RAW) or c.live_why is not None:
        return None
    return ("Settings' \"Documents & Data\" also counts system caches outside the container (the ANE compiler's "
            "cache, /var/mobile/Library/Caches/com.apple.aned on the device), so a large figure there with a small "
            "container is no contradiction. No pull or backup can show them. On a Mac the same cache is "
            "/Library/Caches/com.apple.aned (`sudo du -sh /Library/Caches/com.apple.aned`); mlcache never reads or "
            "cleans it.")


NO_BLOCKS = "archive members and backup records have no allocated blocks: only file sizes are known"


def disk_fields(ca) -> dict:
    """What the disk holds and gets back (allocated blocks), beside the size figures; null in a store
    without blocks, with the reason."""
    scan = ca.scan
    known = scan.total_disk_bytes is not None
    return {
        "total_disk_bytes": scan.total_disk_bytes,
        "coreml_disk_bytes": scan.coreml_disk_bytes if known else None,
        "reclaimable_disk_bytes": ca.reclaimable_disk_bytes,
        "disk_bytes_by_kind": scan.disk_bytes_by_kind if known else None,
        "disk_reason": None if known else NO_BLOCKS,
        "clone_sharing": ca.clone_sharing,
    }


# -- clean, apply, restore ------------------------------------------------------------------------
def outcome_document(o) -> dict:
    return {**path_fields(o.path), "bytes": o.bytes, "disk_bytes": o.disk_bytes, "rule": o.rule, "status": o.status,
            "reason": o.reason}


def apply_document(result) -> dict:
    """`mlcache.apply/2` from an ApplyResult (a dry run has the same shape)."""
    return {
        "schema": APPLY_SCHEMA, "dry_run": result.dry_run,
        "quarantine": readable(result.quarantine) if result.quarantine else None,
        "freed_bytes": result.freed_bytes, "freed_disk_bytes": result.freed_disk_bytes,
        "would_free_bytes": result.would_free_bytes, "complete": result.complete,
        "containers": [{**path_fields(c.root, "root"), "bundle_id": c.bundle_id, "client": c.client,
                        "container_key": c.container_key, "recovered": list(c.recovered),
                        "outcomes": [outcome_document(o) for o in c.outcomes]} for c in result.containers],
    }


def restore_document(result) -> dict:
    return {"schema": RESTORE_SCHEMA, "complete": result.complete,
            "outcomes": [outcome_document(o) for o in result.outcomes]}


# -- CI -------------------------------------------------------------------------------------------
def check_document(result) -> dict:
    """`mlcache.check/3`: budgets with numbers (`actual`, `limit` and their `unit`), each with its
    scope (`total` or one container) and the findings behind a failure."""
    return {
        "schema": CHECK_SCHEMA, "path": readable(result.path), "passed": result.passed,
        "config": result.config,
        "budgets": [{"name": r.name, "scope": r.scope, "passed": r.passed, "actual": r.actual, "limit": r.limit,
                     "unit": r.unit, "message": r.message, "findings": list(r.findings)} for r in result.results],
        "notes": list(result.notes),
        "errors": list(result.errors),
        "totals": result.snapshot["totals"],
        "baseline_totals": result.baseline["totals"] if result.baseline else None,
        "containers": [{"bundle_id": c.get("bundle_id"), "client": c.get("client"), "form": c.get("form"),
                        "kinds": c["kinds"], "coreml_bytes": c["coreml_bytes"]}
                       for c in result.snapshot["containers"]],
    }


def diff_document(old: dict, new: dict, rows: list, *, bundle_id: str | None, notes: list[str] = ()) -> dict:
    """`mlcache.diff/3`: which side is old (its path and time), the app compared, the rows, and
    warnings (the two sides are of different apps)."""
    return {"schema": DIFF_SCHEMA, "bundle_id": bundle_id, "notes": list(notes),
            "old": {"path": old.get("path"), "created": old.get("created")},
            "new": {"path": new.get("path"), "created": new.get("created")},
            "rows": [{"name": r.name, "old_bytes": r.old_bytes, "new_bytes": r.new_bytes,
                      "delta_bytes": r.delta_bytes, "old_count": r.old_count, "new_count": r.new_count}
                     for r in rows]}
