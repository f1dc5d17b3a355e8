"""The one identity of a container: (st_dev, st_ino) of its real root, plus its client's name when
several clients share that root (per-process caches in ~/Library/Caches).

A path names a container only until something else is put there; the folder's device and inode
name it for as long as it exists. Restore ("the container the quarantine was made from"), the apply
lock and overlapping PATHs all compare this key, never the path that led to it. The root is reached
through `fsio.open_real_root`, so a root that is (or lies below) a symlink has no identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlcache_audit import fsio


@dataclass(frozen=True, order=True)
class ContainerKey:
    dev: int
    ino: int
    client: str | None = None

    @property
    def text(self) -> str:
        """`dev:ino`, and `/client` for a client that shares its root: stable within one boot of a volume."""
        return f"{self.dev}:{self.ino}" + (f"/{self.client}" if self.client is not None else "")

    def to_dict(self) -> dict:
        return {"dev": self.dev, "ino": self.ino, "client": self.client}


def key_of(root: str, client: str | None = None) -> ContainerKey | None:
    """The key of the folder at the absolute `root`, reached without crossing a symlink; None when
    it is missing, unreadable or reached only through a symlink."""
    try:
        fd = fsio.open_real_root(root)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return ContainerKey(st.st_dev, st.st_ino, client)
