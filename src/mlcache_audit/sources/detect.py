"""Recognise which form a path is (see shared/domain/CONTAINER-FORMS.md) and open its containers."""

from __future__ import annotations

import os
import posixpath
import re
import stat
from contextlib import nullcontext
from pathlib import Path

from mlcache_audit import fsio
from mlcache_audit.domain import E5_CACHE
from mlcache_audit.errors import NotAContainer, PathNotFound, PathUnreadable
from mlcache_audit.sources.base import (
    Container,
    display_path,
    join_rel,
    live_place,
    read_plist,
)
from mlcache_audit.sources.folder import FolderStore
from mlcache_audit.sources.limits import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CONTAINERS,
    DEFAULT_MAX_MEMBERS,
    PROBES_PER_CONTAINER,
)
from mlcache_audit.vocab import OBSERVABLE_AREAS, STANDARD_DIRS, Form, StoreKind

IOS_METADATA_PLIST = ".com.apple.mobile_container_manager.metadata.plist"
MACOS_METADATA_PLIST = ".com.apple.containermanagerd.metadata.plist"
_BUNDLE_ID = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_MAX_GENERIC_DEPTH = 2  # a folder of pulled containers, or an archive's top folder
_MIN_PROBES = 5000


def open_containers(path: str | os.PathLike, *, bundle_id: str | None = None,
                    max_archive_members: int = DEFAULT_MAX_MEMBERS,
                    max_archive_bytes: int = DEFAULT_MAX_BYTES,
                    max_containers: int = DEFAULT_MAX_CONTAINERS) -> list[Container]:
    """Every app container at `path`: a folder of any form, a backup, or an archive of either. The
    search stops at `max_containers` (and at a bounded number of folders looked into), and every
    container found then carries a note that says so."""
    p = Path(path)
    if not os.path.lexists(p):
        raise PathNotFound(f"no such file or folder: {path}")
    p = Path(os.path.realpath(p))
    try:
        mode = os.stat(p).st_mode
        if stat.S_ISREG(mode):  # an archive can be opened (a folder's listing is checked by the search)
            os.close(os.open(p, fsio.FILEFLAGS))
    except OSError as exc:
        raise _unreadable(path, p, exc.strerror or str(exc)) from None
    if stat.S_ISDIR(mode):
        store = FolderStore(p)
    elif stat.S_ISREG(mode):
        from mlcache_audit.sources.archive import (  # zipfile and tarfile: only for a file
            ArchiveStore,
            is_archive,
        )

        kind = is_archive(p)
        if kind is None:
            raise NotAContainer(f"{path} is a file but not a zip or tar archive",
                                hint="give a container folder, an .xcappdata, a backup folder or an archive")
        store = ArchiveStore(p, kind, max_members=max_archive_members, max_bytes=max_archive_bytes)
    else:
        raise NotAContainer(f"{path} is neither a folder nor a file")
    with store.handles_kept() if store.kind == StoreKind.FOLDER else nullcontext():
        return _search(store, path, p, bundle_id=bundle_id, max_archive_members=max_archive_members,
                       max_archive_bytes=max_archive_bytes, max_containers=max_containers)


def _search(store, path: str | os.PathLike, p: Path, *, bundle_id: str | None, max_archive_members: int,
            max_archive_bytes: int, max_containers: int) -> list[Container]:
    """open_containers' search of an opened store (`path` as given, `p` its real path)."""
    finder = _Finder(store, max_containers)
    found = finder.find("", 0)
    if finder.stopped:
        finder.notes.append(finder.stopped)
    # Folders the search could not read outside the containers it found: a container in them is not
    # shown, and each one found says so (inside a container, the walk notes what it cannot read).
    skipped = {rel: why for rel, why in getattr(store, "unreadable", {}).items()
               if not any(root == "" or rel == root or rel.startswith(root + "/") for root, _, _ in found)}
    if "" in skipped:  # the PATH itself could not be listed
        raise _unreadable(path, p, skipped[""])
    finder.notes.extend(f"not searched for containers, cannot be read: {display_path(rel or '.')} ({why.lower()})"
                        for rel, why in sorted(skipped.items()))
    containers: list[Container] = []
    for rel, form, bid in found:
        if form == HOME:
            containers += _home_clients(store.real(rel), bundle_id, finder.notes)
            continue
        if form == Form.BACKUP:
            from mlcache_audit.sources.backup import open_backup  # sqlite3, urllib: only for backups

            for c in open_backup(store, rel, bundle_id):
                c.notes[:0] = finder.notes
                containers.append(c)
            continue
        if bundle_id and bid != bundle_id:
            continue
        label = (posixpath.join(store.label, rel) if rel else store.label) if store.kind == StoreKind.FOLDER \
            else f"{store.label}!{rel or '.'}"
        c = Container(store=store, root=rel, form=form, bundle_id=bid, label=label, notes=list(finder.notes),
                      live_place=live_place(store.real(rel)) if store.kind == StoreKind.FOLDER else None)
        unreadable = getattr(store, "unreadable", {})
        for area in OBSERVABLE_AREAS:  # a copy may lack them (a Documents-only pull): unknown, not clean
            parent, _, name = area.rpartition("/")
            where = join_rel(rel, parent) if parent else rel
            if not (store.list_dir(where) or {}).get(name):
                c.not_observable.append(area)
                why = unreadable.get(where) or unreadable.get(join_rel(where, name))
                c.notes.append(f"{area}/ cannot be read ({why.lower()}): its contents cannot be judged" if why
                               else f"{area}/ is absent from this copy: its contents cannot be judged")
        containers.append(c)
    if not containers and store.kind == StoreKind.FOLDER and not found and not skipped:
        containers = _archives_in(p, bundle_id=bundle_id, max_archive_members=max_archive_members,
                                  max_archive_bytes=max_archive_bytes, max_containers=max_containers)
    if not containers:
        if bundle_id and found:
            known = sorted({str(bid) for _, _, bid in found if bid})
            raise NotAContainer(f"no container for bundle id {bundle_id} in {path}",
                                hint="known: " + (", ".join(known[:12]) if known else "none named"))
        if skipped:
            rel, why = sorted(skipped.items())[0]
            raise PathUnreadable(f"no app container could be read in {path}: {display_path(rel)} cannot be read ({why})",
                                 hint="check that your user may read it", place=store.real(rel), reason=why)
        raise NotAContainer(f"{path} holds no app container",
                            hint="expected Documents/, Library/ and tmp/, an .xcappdata, a simulator tree or a backup")
    return containers


HOME = "home"  # a finder result: a home-shaped folder, discovered like --home


def _home_clients(home: str, bundle_id: str | None, notes: list[str]) -> list[Container]:
    """Every client of a home-shaped folder, each its own container with its own current build, as
    `--home` discovers them (sources.discover): a home is never one container, and no client's OS
    build is compared with another's."""
    from mlcache_audit.sources.discover import Places, discover

    try:
        found = discover(Places(Path(home), None), bundle_id=bundle_id)
    except NotAContainer:
        return []  # no client of that bundle id here
    said = [f"{display_path(home)} is a home folder: discovered like --home, one container per client"]
    said += [f"not searched: {s.get('path', '?')} ({s['reason']})" for s in found.skipped + found.unreadable]
    for c in found.containers:
        c.home = home
        c.notes[:0] = notes + said
    return found.containers


def _archives_in(folder: Path, **options) -> list[Container]:
    """A folder that holds no container but customers' exports: each zip or tar directly in it is
    read as its own PATH (an archive inside an archive is never opened; a symlink is never followed).
    One that cannot be read is a note on the others; if none can, its error is the folder's."""
    from mlcache_audit.errors import MlcacheError
    from mlcache_audit.sources.archive import is_archive

    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    out: list[Container] = []
    problems: list[str] = []
    first_error: MlcacheError | None = None
    for name in names:
        child = folder / name
        try:
            if not stat.S_ISREG(os.stat(child, follow_symlinks=False).st_mode):
                continue
            kind = is_archive(child)
        except OSError:
            continue
        try:
            if kind is None:
                if name.lower().endswith((".zip", ".tar", ".tgz", ".tar.gz")):  # named like one, but is not
                    raise NotAContainer(f"{display_path(name)} is not a zip or tar archive")
                continue
            out.extend(open_containers(child, **options))
        except MlcacheError as exc:
            first_error = first_error or exc
            problems.append(f"archive not read: {display_path(name)} ({exc.message})")
    if not out and first_error is not None:
        raise first_error
    for c in out:
        c.notes.extend(problems)
    return out


def _unreadable(path, real: Path, why: str) -> PathUnreadable:
    return PathUnreadable(f"cannot read {path}: {why}", hint="check that your user may read it and every folder above it",
                          place=str(real), reason=why)


class _Finder:
    """Walks down from the top just far enough to find container roots; never into a container."""

    def __init__(self, store, max_containers: int = DEFAULT_MAX_CONTAINERS):
        self.store = store
        self.probes = 0
        self.found_so_far = 0
        self.max_containers = max_containers
        self.max_probes = max(_MIN_PROBES, max_containers * PROBES_PER_CONTAINER)
        self.stopped = ""  # why the search stopped early, when it did
        self.notes: list[str] = []  # metadata files that could not be read (a FIFO, a device, ...)

    def _full(self, rel: str) -> bool:
        if self.stopped:
            return True
        if self.found_so_far >= self.max_containers:
            self.stopped = (f"the container search stopped at --max-containers {self.max_containers}: "
                            f"{display_path(rel or '.')} and what follows it were not searched")
            return True
        self.probes += 1
        if self.probes > self.max_probes:
            self.stopped = (f"the container search stopped after looking into {self.max_probes} folders: "
                            f"{display_path(rel or '.')} and what follows it were not searched "
                            "(raise --max-containers)")
            return True
        return False

    def _emit(self, found: list) -> list:
        self.found_so_far += len(found)
        return found

    def find(self, rel: str, depth: int) -> list[tuple[str, str, str | None]]:
        if self._full(rel):
            return []
        children = self.store.list_dir(rel)
        if children is None:
            return []
        dirs = {n for n, d in children.items() if d}
        name = posixpath.basename(rel) if rel else _top_name(self.store)
        if "Manifest.db" in children and ("Manifest.plist" in children or "Info.plist" in children):  # a backup
            return self._emit([(rel, Form.BACKUP, None)])
        if "AppData" in dirs and (name.endswith(".xcappdata") or "AppDataInfo.plist" in children):
            info = self._plist(join_rel(rel, "AppDataInfo.plist"))
            return self._emit([(join_rel(rel, "AppData"), Form.XCAPPDATA,
                                _str(info.get("CFBundleIdentifier")) or self._cache_id(join_rel(rel, "AppData")))])
        if "Data" in dirs and MACOS_METADATA_PLIST in children:
            meta = self._plist(join_rel(rel, MACOS_METADATA_PLIST))
            bid = _str(meta.get("MCMMetadataIdentifier")) or (name if _BUNDLE_ID.match(name) else None)
            return self._emit([(join_rel(rel, "Data"), Form.MACOS_CONTAINER, bid or self._cache_id(join_rel(rel, "Data")))])
        sim = self._simulator_apps(rel, dirs)
        if sim is not None:
            return sim
        if self._home_shaped(rel, children, dirs):
            return self._emit([(rel, HOME, None)])
        if self._looks_raw(children, dirs):
            return self._emit([(rel, self._raw_form(rel, name), self._bundle_id(rel, children, name))])
        if depth >= _MAX_GENERIC_DEPTH:
            return []
        out = []
        for d in sorted(dirs):
            out.extend(self.find(join_rel(rel, d), depth + 1))
        return out

    def _simulator_apps(self, rel: str, dirs: set[str]) -> list | None:
        """A simulator tree (Devices/, <UDID>/, data/, Containers/Data/Application/): one per app."""
        for route in (("Devices",), ("data",), ("Containers", "Data", "Application"), ("Data", "Application"),
                      ("Application",)):
            if route[0] not in dirs:
                continue
            target = rel
            ok = True
            for part in route:
                kids = self.store.list_dir(target) or {}
                if not kids.get(part):
                    ok = False
                    break
                target = join_rel(target, part)
            if not ok:
                continue
            if route[0] == "Devices":
                out = []
                for udid in sorted(n for n, d in (self.store.list_dir(target) or {}).items() if d):
                    out.extend(self._simulator_apps(join_rel(target, udid), {"data"}) or [])
                return out
            if route[0] == "data":
                kids = {n for n, d in (self.store.list_dir(target) or {}).items() if d}
                return self._simulator_apps(target, kids) if "Containers" in kids else None
            out = []
            for uuid in sorted(n for n, d in (self.store.list_dir(target) or {}).items() if d):
                app = join_rel(target, uuid)
                if self._full(app):
                    break
                kids = self.store.list_dir(app) or {}
                if self._looks_raw(kids, {n for n, d in kids.items() if d}):
                    out.append(self._emit([(app, Form.SIMULATOR, self._bundle_id(app, kids, uuid))])[0])
            return out
        return None

    def _home_shaped(self, rel: str, children: dict[str, bool], dirs: set[str]) -> bool:
        """A home folder, or a copy of one (`mlcache scan ~`): its Library/ holds Developer/CoreSimulator,
        Containers or Group Containers, and it is no app container itself (no metadata plist, not a
        sandboxed app's Containers/<id>/Data). Only a folder can be: discovery reads real paths."""
        if self.store.kind != StoreKind.FOLDER or "Library" not in dirs or \
                IOS_METADATA_PLIST in children or MACOS_METADATA_PLIST in children:
            return False
        parts = self.store.real(rel).split("/")
        if len(parts) >= 3 and parts[-1] == "Data" and parts[-3] == "Containers":
            return False
        lib = self.store.list_dir(join_rel(rel, "Library")) or {}
        if lib.get("Containers") or lib.get("Group Containers"):
            return True
        return bool(lib.get("Developer") and (self.store.list_dir(join_rel(rel, "Library/Developer")) or {})
                    .get("CoreSimulator"))

    @staticmethod
    def _looks_raw(children: dict[str, bool], dirs: set[str]) -> bool:
        standard = sum(1 for d in STANDARD_DIRS if d in dirs)
        return "Containers" not in dirs and (standard >= 2 or (standard >= 1 and IOS_METADATA_PLIST in children))

    @staticmethod
    def _raw_form(rel: str, name: str) -> str:
        if "/Containers/Data/Application/" in "/" + rel:
            return Form.SIMULATOR
        return Form.DEVICE_HUB if _BUNDLE_ID.match(name) and not name.endswith((".xcappdata", ".zip")) else Form.RAW

    def _bundle_id(self, rel: str, children: dict[str, bool], name: str) -> str | None:
        if IOS_METADATA_PLIST in children:
            bid = _str(self._plist(join_rel(rel, IOS_METADATA_PLIST)).get("MCMMetadataIdentifier"))
            if bid:
                return bid
        if _BUNDLE_ID.match(name) and self._raw_form(rel, name) == Form.DEVICE_HUB:
            return name
        return self._cache_id(rel)

    def _cache_id(self, rel: str) -> str | None:
        """The `Library/Caches/<bundle-id>/` folder that holds Core ML's specialization cache."""
        caches = join_rel(rel, "Library/Caches")
        for child, is_dir in sorted((self.store.list_dir(caches) or {}).items()):
            if is_dir and _BUNDLE_ID.match(child) and (self.store.list_dir(join_rel(caches, child)) or {}).get(E5_CACHE):
                return child
        return None

    def _plist(self, rel: str) -> dict:
        # A damaged plist only costs us the bundle id; one that is not a regular file is noted.
        return read_plist(_read(self.store, rel, self.notes))


def _read(store, rel: str, notes: list[str], limit: int = 1 << 20) -> bytes | None:
    """A metadata file's bytes; a folder store notes what is there but is not a regular file."""
    return store.read(rel, limit, notes) if store.kind == StoreKind.FOLDER else store.read(rel, limit)


def _top_name(store) -> str:
    name = Path(store.label).name
    for suffix in (".zip", ".tgz", ".tar.gz", ".tar"):
        if store.kind != StoreKind.FOLDER and name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _str(value) -> str | None:
    return value if isinstance(value, str) and value else None


def identity_text(c: Container) -> str:
    """The container's identity (identity.py) as text, for folding overlapping PATHs: a folder's
    device and inode (and client); an archive's or backup's real file and the place inside it."""
    if c.store.kind == StoreKind.FOLDER and c.form != Form.BACKUP:
        from mlcache_audit.identity import key_of

        key = key_of(c.real_root, c.client_name if c.scope else None)
        if key is not None:
            return key.text
    return f"{c.store.label}!{c.root}!{c.bundle_id}"
