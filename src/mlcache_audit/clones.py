"""Blocks a file shares with its APFS clones: where the OS says, behind one function (`private_size`).

A copy made by `cp -c`, Finder or `NSFileManager` on APFS is a clone: it shares its blocks with the
original until either is written, so removing it gives back only its private blocks, which
`st_blocks` does not tell. macOS reports them through getattrlist(2) with FSOPT_ATTR_CMN_EXTENDED
and ATTR_CMNEXT_PRIVATESIZE ("the number of bytes not shared with other files"; documented in the
getattrlist man page of current macOS, available to any process that may stat the file). Where the
call is missing or fails (Linux, another file system, an older macOS), nothing is guessed: the
sharing is "unknown" and the on-disk figure an upper bound ("at most").

Tests replace `private_size` with a fake (Linux has no clones to measure).
"""

from __future__ import annotations

import os
import sys

_ATTR_BIT_MAP_COUNT = 5
_ATTR_CMNEXT_PRIVATESIZE = 0x00000008
_FSOPT_NOFOLLOW = 0x00000001
_FSOPT_ATTR_CMN_EXTENDED = 0x00000020


def _darwin_private_size():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    getattrlist = libc.getattrlist

    class AttrList(ctypes.Structure):
        _fields_ = [("bitmapcount", ctypes.c_uint16), ("reserved", ctypes.c_uint16),
                    ("commonattr", ctypes.c_uint32), ("volattr", ctypes.c_uint32), ("dirattr", ctypes.c_uint32),
                    ("fileattr", ctypes.c_uint32), ("forkattr", ctypes.c_uint32)]

    class Reply(ctypes.Structure):
        _pack_ = 4
        _fields_ = [("length", ctypes.c_uint32), ("private", ctypes.c_int64)]

    def private_size(path: str) -> int | None:
        req = AttrList(_ATTR_BIT_MAP_COUNT, 0, 0, 0, 0, 0, _ATTR_CMNEXT_PRIVATESIZE)
        reply = Reply()
        rc = getattrlist(os.fsencode(path), ctypes.byref(req), ctypes.byref(reply), ctypes.sizeof(reply),
                         ctypes.c_uint32(_FSOPT_NOFOLLOW | _FSOPT_ATTR_CMN_EXTENDED))
        return int(reply.private) if rc == 0 and reply.length >= ctypes.sizeof(reply) else None

    return private_size


def _load():
    if sys.platform != "darwin":
        return None
    try:
        return _darwin_private_size()
    except (OSError, AttributeError):
        return None


# path -> private bytes, or None when the OS cannot say; None itself where there is no such call.
private_size = _load()


def private_bytes(root: str, rels: list[str]) -> int | None:
    """Private (unshared) bytes of every regular file at or below `rels` in `root`, walked without
    following a symlink; None as soon as one file cannot say (the figure would be a guess)."""
    measure = private_size
    if measure is None:
        return None
    total = 0
    for rel in rels:
        top = os.path.join(root, rel)
        if os.path.islink(top):
            continue
        if os.path.isfile(top):
            files = [top]
        else:
            files = [os.path.join(d, n) for d, _, names in os.walk(top, followlinks=False) for n in names]
        for path in files:
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            n = measure(path)
            if n is None:
                return None
            total += n
    return total


def reclaimable_on_disk(scan, diagnosis) -> tuple[int | None, str]:
    """What removing the default rules' paths gives back on disk, and how sure that is: "measured"
    when the OS told every target's private bytes (the figure is then the smaller of those and the
    blocks), else "unknown" (the blocks figure, an upper bound). (None, "unknown") without blocks."""
    if scan.total_disk_bytes is None:
        return None, "unknown"
    blocks = diagnosis.reclaimable_disk_bytes
    if private_size is None:
        return blocks, "unknown"
    paths = sorted({p for f in diagnosis.findings if not f.opt_in for p in f.reclaimable_paths})
    private = private_bytes(scan.container.real_root, paths)
    return (blocks, "unknown") if private is None else (min(blocks, private), "measured")
