"""An artifact's identity: its files' paths and cache keys, so an unchanged copy is one look-up."""

from __future__ import annotations

import pickle
from operator import attrgetter

import xxhash

from mlcache_audit.scan.model import Artifact
from mlcache_audit.sources.base import Container

_PATH = attrgetter("path")


def artifact_identity(container: Container, a: Artifact) -> str | None:
    """What a model artifact is on disk, short of reading it: each file's path and cache key (device,
    inode, size, mtime_ns, ctime_ns), in walk order. An identity seen before means the same files,
    unchanged since, so what was read from them holds (a bundle's summary, the artifact's content
    digest). None when the store has no such keys (archives). Worked out once per artifact."""
    if a.identity is None:
        keys = container.hash_keys(a.members)
        # Pickled, not repr'd: 3x cheaper, and the same bytes for the same paths and numbers.
        a.identity = "" if keys is None else xxhash.xxh3_128_hexdigest(
            pickle.dumps((list(map(_PATH, a.members)), keys), 5))
    return a.identity or None
