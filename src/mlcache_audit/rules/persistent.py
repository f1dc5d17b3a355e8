"""Opt-in: duplicate and old model copies in persistent places (the newest copy stays)."""

from __future__ import annotations

import posixpath
from collections import defaultdict

from mlcache_audit.domain import (
    COMPILED_MODEL,
    SOURCE_MODEL,
)
from mlcache_audit.fingerprint import Fingerprints
from mlcache_audit.rules.model import (
    Finding,
    link,
    make_finding,
    newest,
)
from mlcache_audit.rules.units import model_set_folders, unit_of
from mlcache_audit.safety import is_protected
from mlcache_audit.scan import Artifact


def persistent_findings(artifacts: list[Artifact], fp: Fingerprints) -> list[Finding]:
    """Judged per unit: a bundle of a model set (a WhisperKit variant folder) is never judged alone by
    its name and I/O (a quantized variant shares both with the full one), and nothing in Library/Caches
    is persistent (it is a cache: the OS may purge it)."""
    sets = model_set_folders(artifacts)
    persistent = [a for a in artifacts if a.kind in (COMPILED_MODEL, SOURCE_MODEL)
                  and not a.path.startswith("Library/Caches/") and posixpath.dirname(a.path) not in sets]
    findings = []
    by_content: dict[str, list[Artifact]] = defaultdict(list)
    for a in persistent:
        if a.path in fp.content:
            by_content[fp.content[a.path]].append(a)
    dup_concerned, dup_reclaim, groups = [], [], 0
    dup_links: dict[str, dict] = {}
    for group in by_content.values():
        if len(group) < 2:
            continue
        groups += 1
        outside = [a for a in group if not is_protected(a.path)]
        keep = newest(outside) if outside else None
        dup_concerned += group
        dup_reclaim += [a for a in outside if a is not keep]
        dup_links.update({a.path: link("byte-identical to the copy that stays (full xxh3-128 of every file)",
                                       {"model": fp.content[a.path], "unit": unit_of(a, sets).key},
                                       same_model_as=keep.path) for a in outside if a is not keep})
    if dup_concerned:
        findings.append(make_finding(
            "duplicate-persistent-model", dup_concerned, dup_reclaim,
            f"{groups} model(s) stored byte-for-byte at {len(dup_concerned)} persistent paths",
            {"groups": groups, "copies": len(dup_concerned)},
            explanation="Identical bundles at several paths cost their full size each; Core ML also specializes "
                        "each path separately. Copies in Documents/ are the user's and are never removed.",
            remedy="Keep one copy in Application Support and load it from there; removed only with "
                   "--include-persistent (the newest copy outside Documents/ stays).", links=dup_links))
    # Old versions: same file name and model, different bytes, in sibling (versioned) folders.
    by_name: dict[tuple, list[Artifact]] = defaultdict(list)
    for a in persistent:
        if a.path in fp.model_key:
            by_name[(posixpath.basename(a.path), fp.model_key[a.path])].append(a)
    old, concerned = [], []
    old_links: dict[str, dict] = {}
    for group in by_name.values():
        contents = {fp.content.get(a.path, "unique:" + a.path) for a in group}
        if len(group) < 2 or len(contents) < 2:
            continue
        versions: dict[str, list[Artifact]] = defaultdict(list)
        for a in group:
            versions[fp.content.get(a.path, "unique:" + a.path)].append(a)
        newest_version = max(versions.values(), key=lambda g: max(a.newest_mtime or 0 for a in g))
        concerned += group
        newer = max(newest_version, key=lambda a: (a.newest_mtime or 0, a.path))
        for g in versions.values():
            if g is not newest_version:
                old += g
                old_links.update({a.path: link("same name, type, inputs and outputs as a newer version with "
                                               "other bytes", {"unit": unit_of(a, sets).key},
                                               newer_version=newer.path) for a in g})
    if old:
        findings.append(make_finding(
            "old-model-version", concerned, old,
            f"{len(old)} older version(s) of a model kept beside the newest",
            {"old_versions": len(old)},
            explanation="The same model (same name, type, inputs and outputs) is stored with different bytes at "
                        "several paths, such as versioned folders or old Hugging Face snapshots.",
            remedy="Delete old versions when a new one is installed; removed only with --include-persistent, "
                   "keeping the newest version.", links=old_links))
    return findings
