"""Builds the hostile corpus: one small tree (or archive, or document) per class of hostile input.

Generated, never committed as binaries: `python tests/hostile_corpus.py OUT` writes every case into OUT
and prints their names. tests/test_hostile.py builds the same cases under tmp_path and runs each through
the real command. Every case is a container that customers, devices or other tools could produce.
"""

from __future__ import annotations

import io
import json
import os
import plistlib
import socket
import sqlite3
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

GUS = "F38A9824-3944-420C-BD32-78CE598BE22D-10125-00000586EFDFD7D6"
DEEP = 2500  # folders in a chain: deeper than PATH_MAX (4096 bytes) and Python's recursion limit (1000)


@dataclass
class Case:
    name: str
    target: Path  # what is passed as PATH
    cleanable: bool = True  # a folder copy: clean --apply is run too
    scan_exit: tuple[int, ...] = (0,)
    args: tuple[str, ...] = ()  # extra options for every command
    outside: list[Path] = field(default_factory=list)  # must not change at all


def _container(root: Path, bundle_id: str = "com.example.hostile") -> Path:
    for d in ("Documents", "Library/Caches", "Library/Application Support", "Library/Preferences", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "Documents" / "notes.txt").write_text("user data")
    (root / "Library" / "Preferences" / f"{bundle_id}.plist").write_bytes(plistlib.dumps({"k": 1}))
    meta = root / ".com.apple.mobile_container_manager.metadata.plist"
    if not os.path.lexists(meta):
        meta.write_bytes(plistlib.dumps({"MCMMetadataIdentifier": bundle_id}))
    return root


def _bundle(path: bytes | Path, payload: bytes = b"weights" * 100) -> None:
    """A compiled-bundle shape (coremldata.bin + metadata.json), enough for recognition."""
    p = os.fsencode(path)
    os.makedirs(p, exist_ok=True)
    with open(os.path.join(p, b"coremldata.bin"), "wb") as fh:
        fh.write(b"\xf4\x01\x00\x00" + payload)
    with open(os.path.join(p, b"metadata.json"), "wb") as fh:
        fh.write(json.dumps([{"modelType": {"name": "MLModelType_neuralNetwork"}}]).encode())


def _leak(root: Path, copies: int = 3) -> None:
    """A TFLite-style recompile leak: identical bundles under GUS names, with their spec files."""
    for i in range(copies):
        gus = GUS[:-2] + f"{i:02X}"
        _bundle(root / "tmp" / f"{gus}.mlmodelc")
        (root / "tmp" / gus).write_bytes(b"spec")


# -- names ---------------------------------------------------------------------------------------
def non_utf8_names(out: Path) -> Case:
    root = _container(out / "non-utf8")
    _leak(root)
    _bundle(os.fsencode(root / "tmp") + b"/bad\xff\xfe.mlmodelc")
    _bundle(os.fsencode(root / "tmp") + b"/bad\xff\xfe-copy.mlmodelc")
    _bundle(os.fsencode(root / "Library" / "Application Support") + b"/m\xe9odel.mlmodelc")
    e5 = os.fsencode(root / "Library/Caches/com.example.hostile/com.apple.e5rt.e5bundlecache/23A344")
    os.makedirs(e5 + b"/" + b"A" * 64 + b"/odd\xffname.bundle", exist_ok=True)
    with open(e5 + b"/" + b"A" * 64 + b"/odd\xffname.bundle/x", "wb") as fh:
        fh.write(b"x" * 100)
    return Case("non-utf8-names", root)


def non_utf8_parent(out: Path) -> Case:
    parent = os.fsencode(out) + b"/holder\xff"
    os.makedirs(parent)
    root = _container(Path(os.fsdecode(parent + b"/app")))
    _leak(root)
    return Case("non-utf8-parent-folder", root)


def long_names(out: Path) -> Case:
    root = _container(out / "long-names")
    cjk = "模" * 80 + ".mlmodelc"  # 249 bytes: the longest names a volume allows, nearly
    assert len(cjk.encode()) == 249
    _bundle(root / "tmp" / cjk)
    _bundle(root / "tmp" / ("型" * 80 + ".mlmodelc"))
    return Case("names-near-255-bytes", root)


def line_breaks(out: Path) -> Case:
    root = _container(out / "line-breaks")
    _bundle(root / "tmp" / "two\nlines.mlmodelc")
    _bundle(root / "tmp" / "tab\there\r.mlmodelc")
    return Case("control-characters", root)


DEEP_LEFTOVERS = ("tmp/Deep_0B1C2D3E-4F50-4617-8293-A4B5C6D7E8F9.mlmodelc",
                  "tmp/Deep_1B1C2D3E-4F50-4617-8293-A4B5C6D7E8F9.mlmodelc")


def deep_chain(out: Path) -> Case:
    """Two identical compile leftovers, each holding a chain of folders past PATH_MAX: the older is
    reclaimable (the newest copy stays), so removing it has to walk and delete the whole chain."""
    root = _container(out / "deep")
    for n, rel in enumerate(DEEP_LEFTOVERS):
        leftover = root / rel
        _bundle(leftover)
        fd = os.open(leftover, os.O_RDONLY)
        try:
            for _ in range(DEEP):  # each level made relative to the last: the path is far past PATH_MAX
                os.mkdir("d", dir_fd=fd)
                nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = nfd
            with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as fh:
                fh.write(b"bottom")
            os.utime("leaf", (1.7e9 + n * 3600, 1.7e9 + n * 3600), dir_fd=fd)
        finally:
            os.close(fd)
    return Case("deep-chain", root)


# -- special files -------------------------------------------------------------------------------
def fifo_metadata(out: Path) -> Case:
    root = out / "fifo-metadata"
    root.mkdir()
    os.mkfifo(root / ".com.apple.mobile_container_manager.metadata.plist")
    _container(root)
    _leak(root)
    os.mkfifo(root / "tmp" / f"{GUS[:-2]}00.mlmodelc" / "metadata.json.fifo")
    (root / "tmp" / f"{GUS[:-2]}01.mlmodelc" / "metadata.json").unlink()
    os.mkfifo(root / "tmp" / f"{GUS[:-2]}01.mlmodelc" / "metadata.json")
    support = root / "Library" / "Application Support" / "executorchcoreml"
    support.mkdir(parents=True)
    os.mkfifo(support / "assets.db")
    _bundle(root / "Library" / "Caches" / "executorchcoreml" / "models" / "executorch_0123.mlmodelc")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(os.fsdecode(os.path.relpath(root / "tmp" / "s.sock")))
    except OSError:
        pass  # a socket path too long for AF_UNIX: the FIFOs carry the case
    finally:
        sock.close()
    return Case("fifo-and-socket-in-place-of-files", root)


def fifo_xcappdata(out: Path) -> Case:
    top = out / "Fifo.xcappdata"
    _container(top / "AppData")
    os.mkfifo(top / "AppDataInfo.plist")
    _leak(top / "AppData")
    return Case("fifo-appdatainfo", top)


def device_file(out: Path) -> Case | None:
    if os.geteuid() != 0:
        return None
    root = _container(out / "device")
    _leak(root)
    try:
        os.mknod(root / "tmp" / "null.mlmodelc", 0o600 | 0o020000, os.makedev(1, 3))
    except (OSError, AttributeError):
        return None
    return Case("character-device", root)


# -- backups --------------------------------------------------------------------------------------
def _mbfile(**fields) -> bytes:
    record = {"$class": plistlib.UID(1), **fields}
    return plistlib.dumps({"$archiver": "NSKeyedArchiver", "$version": 100000, "$top": {"root": plistlib.UID(0)},
                           "$objects": [record, {"$classname": "MBFile", "$classes": ["MBFile", "NSObject"]}]},
                          fmt=plistlib.FMT_BINARY)


def hostile_backup(out: Path, name: bytes = b"backup") -> Case:
    top = Path(os.fsdecode(os.fsencode(out) + b"/" + name))
    top.mkdir()
    (top / "Info.plist").write_bytes(plistlib.dumps({"Device Name": "Test"}))
    os.mkfifo(top / "Manifest.plist")
    db = sqlite3.connect(top / "Manifest.db")
    db.execute("CREATE TABLE Files (fileID TEXT PRIMARY KEY, domain TEXT, relativePath TEXT, flags INTEGER, file BLOB)")
    domain = "AppDomain-com.example.backedup"
    rows = [
        ("a" * 40, domain, "Library/Application Support/m.mlmodelc", 2, _mbfile()),
        ("b" * 40, domain, "Library/Application Support/m.mlmodelc/coremldata.bin", 1, _mbfile(Size=-5)),
        ("c" * 40, domain, "Library/Application Support/m.mlmodelc/metadata.json", 1,
         _mbfile(Size=10, LastModified=9_500_000_000_000)),  # year ~300,000
        ("d" * 40, domain, b"Documents/blob-path", 1, _mbfile(Size=1)),
        ("e" * 40, domain, "Documents/flags", "x", _mbfile(Size=1)),
        ("f" * 40, domain, "Documents/size-text", 1, _mbfile(Size="big", InodeNumber=True)),
        ("1" * 40, domain, "Documents/not-a-plist", 1, b"\x00garbage"),
        ("2" * 40, domain, "Documents/nan", 1, _mbfile(Size=3, LastModified=float("nan"))),
    ]
    db.executemany("INSERT INTO Files VALUES (?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    bucket = top / "cc"
    bucket.mkdir()
    os.mkfifo(bucket / ("c" * 40))  # a payload that is a FIFO
    return Case("hostile-backup", top, cleanable=False)


def backup_in_odd_folder(out: Path) -> Case:
    case = hostile_backup(out, b"backup-\xff")
    return Case("backup-in-non-utf8-folder", case.target, cleanable=False)


# -- archives -------------------------------------------------------------------------------------
def hostile_zip(out: Path) -> Case:
    path = out / "hostile.zip"
    with zipfile.ZipFile(path, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the duplicate name is the point
        for name in ("app/Documents/a.txt", "app/Library/Caches/x", "app/tmp/x.mlmodelc/coremldata.bin",
                     "../escape.txt", "/abs.txt", "app/tmp/dup", "app/tmp/dup"):
            z.writestr(name, b"data")
        info = zipfile.ZipInfo("app/tmp/\udcff-odd.mlmodelc/coremldata.bin".encode("utf-8", "surrogateescape")
                               .decode("cp437"))
        z.writestr(info, b"cp437 name")
        link = zipfile.ZipInfo("app/tmp/link")
        link.external_attr = (0o120777 << 16)
        z.writestr(link, "/etc/passwd")
        dev = zipfile.ZipInfo("app/tmp/fifo")
        dev.external_attr = (0o010644 << 16)
        z.writestr(dev, b"")
    return Case("hostile-zip", path, cleanable=False)


def hostile_tar(out: Path) -> Case:
    path = out / "hostile.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape") as t:
        def add(name: str, data: bytes = b"x", **kw) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in kw.items():
                setattr(info, k, v)
            t.addfile(info, io.BytesIO(data))

        for d in ("app/Documents/a", "app/Library/Caches/b"):
            add(d)
        add("app/tmp/bad\udcff.mlmodelc/coremldata.bin", b"bytes")
        add("app/tmp/future.mlmodelc/coremldata.bin", b"bytes", mtime=9_500_000_000_000)
        add("app/tmp/../../escape", b"x")
        sym = tarfile.TarInfo("app/tmp/sym")
        sym.type = tarfile.SYMTYPE
        sym.linkname = "/etc/passwd"
        t.addfile(sym)
        fifo = tarfile.TarInfo("app/tmp/fifo")
        fifo.type = tarfile.FIFOTYPE
        t.addfile(fifo)
    return Case("hostile-tar", path, cleanable=False)


def many_members_zip(out: Path) -> Case:
    path = out / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for i in range(60_001):
            z.writestr(f"app/tmp/{i}", b"")
    return Case("zip-over-member-cap", path, cleanable=False, scan_exit=(2,), args=("--max-archive-members", "60000"))


BUILDERS: list[Callable[[Path], Case | None]] = [
    non_utf8_names, non_utf8_parent, long_names, line_breaks, deep_chain, fifo_metadata, fifo_xcappdata,
    device_file, hostile_backup, backup_in_odd_folder, hostile_zip, hostile_tar, many_members_zip,
]


def build(builder: Callable[[Path], Case | None], out: Path) -> Case | None:
    """One case in its own folder, with an untouchable sibling to prove nothing outside changes."""
    base = out / builder.__name__
    base.mkdir(parents=True)
    outside = base / "outside-do-not-touch"
    outside.mkdir()
    (outside / "precious.txt").write_text("never touched")
    case = builder(base)
    if case is not None:
        case.outside.append(outside)
    return case


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    for b in BUILDERS:
        c = build(b, target)
        print(c.name if c else f"{b.__name__}: not buildable here")
