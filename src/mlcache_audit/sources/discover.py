"""Every ML cache on a developer's Mac, found without a path (shared/domain/FIELD-EVIDENCE.md).

Under a home folder: simulator app containers (`Library/Developer/CoreSimulator/Devices/<UDID>/data/
Containers/Data/Application/*`), sandboxed app containers (`Library/Containers/*/Data`), group
containers (`Library/Group Containers/*`), and the per-process caches of non-sandboxed clients:
`Library/Caches/<client>/com.apple.e5rt.e5bundlecache`, the shared `Library/Caches/com.apple.e5rt.
e5bundlecache` (client `shared`) and `Library/Caches/coreai-cache/<build>/<client>`. The client's name
is taken from its folder, never from a list. Outside the home: MPSGraph scratch in the temp folder
and the system ANE cache, which is root-only and never cleaned.

Plain folders are read through the same stores and detection as any PATH; nothing here is
macOS-only, so it is tested on Linux against fake home trees.

Symlinks: the named roots (the home, the temp folder) are resolved once with realpath (on a Mac
`$TMPDIR` lies under `/var`, itself a symlink) and recorded; below them no symlink is ever crossed.
A place that is a symlink (developers move `CoreSimulator` to another disk) is listed in `skipped`
("symlink to X; scan it as PATH"), never followed and never silently dropped, and every container
found is checked to lie inside its named root through the same no-follow handles apply uses.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlcache_audit import fsio
from mlcache_audit.domain import COREAI_CACHE, E5_CACHE, MPSGRAPH_SCRATCH
from mlcache_audit.errors import NotAContainer, PathNotFound, PathUnreadable
from mlcache_audit.fsio import path_fields
from mlcache_audit.sources.base import Container, read_plist
from mlcache_audit.sources.detect import open_containers
from mlcache_audit.sources.folder import FolderStore
from mlcache_audit.vocab import Form

SYSTEM_ANE_CACHE = "/Library/Caches/com.apple.aned"
SHARED_CLIENT = "shared"


@dataclass(frozen=True)
class Places:
    """Where to look: a home folder, and the places outside it (None: left out)."""

    home: Path
    tmpdir: Path | None = None
    ane_cache: Path | None = None


def default_places(home: str | None, tmpdir: str | None) -> Places:
    """`--home` (or MLCACHE_HOME) if given; else the user's home, on macOS only. With a home given,
    places outside it are left out unless named; on the user's own Mac, $TMPDIR and the ANE cache
    are looked at too."""
    if home:
        root = Path(os.path.realpath(home))
        try:
            is_dir = stat.S_ISDIR(os.stat(root).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            is_dir = False
        except OSError as exc:
            raise PathUnreadable(f"cannot read the home folder {home}: {exc.strerror or exc}",
                                 place=home, reason=exc.strerror or str(exc)) from None
        if not is_dir:
            raise PathNotFound(f"no such home folder: {home}")
        return Places(root, Path(os.path.realpath(tmpdir)) if tmpdir else None)
    if sys.platform != "darwin":
        raise NotAContainer("there is nothing to discover here: ML caches live on a Mac",
                            hint="give a PATH, or a copied home folder with --home DIR (or MLCACHE_HOME)")
    return Places(Path(os.path.realpath(Path.home())),
                  Path(os.path.realpath(tmpdir or os.environ.get("TMPDIR") or "/tmp")), Path(SYSTEM_ANE_CACHE))


@dataclass
class Discovery:
    containers: list[Container]
    system: list[dict] = field(default_factory=list)  # places shown but never cleaned (the ANE cache)
    unreadable: list[dict] = field(default_factory=list)  # {"path", "reason"}: places not searched
    skipped: list[dict] = field(default_factory=list)  # {"path", "target", "reason"}: symlinked places


class _Look:
    """Looks into the places discovery searches, never through a symlink; what it cannot read (a
    folder macOS's privacy controls keep from the terminal, say) is kept in `unreadable` and what is
    a symlink in `skipped`, both left out and shown, never an error."""

    def __init__(self) -> None:
        self.unreadable: list[dict] = []
        self.skipped: list[dict] = []

    def _skip(self, path: Path, exc: OSError) -> None:
        self.unreadable.append({**path_fields(str(path)), "reason": exc.strerror or str(exc)})

    def _symlink(self, path: Path) -> None:
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        self.skipped.append({**path_fields(str(path)), **path_fields(target, "target"),
                             "reason": f"symlink to {target}; scan it as PATH"})

    def is_dir(self, path: Path) -> bool:
        """A real folder (a symlink is never one: it is recorded in `skipped` and left out)."""
        try:
            mode = os.stat(path, follow_symlinks=False).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            self._skip(path, exc)
            return False
        if stat.S_ISLNK(mode):
            self._symlink(path)
            return False
        return stat.S_ISDIR(mode)

    def place(self, root: Path, *parts: str) -> Path | None:
        """`root/parts...` when every level below `root` is a real folder; None when one is missing,
        unreadable or a symlink (the first such level is the one recorded)."""
        path = root
        for part in parts:
            path = path / part
            if not self.is_dir(path):
                return None
        return path

    def subfolders(self, path: Path) -> list[Path]:
        """The folders in `path` (a symlink among them is recorded as skipped), by name."""
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            self._skip(path, exc)
            return []
        return [path / n for n in names if self.is_dir(path / n)]

    def containers(self, path: Path) -> list[Container]:
        """The containers detection finds at `path` ([] for none)."""
        try:
            return open_containers(path)
        except (NotAContainer, PathNotFound):
            return []
        except PathUnreadable as exc:
            self.unreadable.append({**path_fields(exc.place), "reason": exc.reason})
            return []


def discover(places: Places, *, bundle_id: str | None = None) -> Discovery:
    """Every client with ML caches in `places`, one container each."""
    home = places.home
    look = _Look()
    found: list[Container] = []
    sims = look.place(home, "Library", "Developer", "CoreSimulator", "Devices")
    if sims is not None:
        found += _simulators(sims, look)
    for name, form in (("Containers", Form.MACOS_CONTAINER), ("Group Containers", Form.GROUP_CONTAINER)):
        top = look.place(home, "Library", name)
        if top is not None:
            found += _app_containers(top, form, look)
    caches = look.place(home, "Library", "Caches")
    if caches is not None:
        found += _process_caches(caches, look)
    if places.tmpdir is not None and look.place(places.tmpdir, MPSGRAPH_SCRATCH) is not None:
        store = FolderStore(places.tmpdir)
        found.append(Container(store=store, root="", form=Form.PROCESS_CACHE, bundle_id=None,
                               label=str(places.tmpdir / MPSGRAPH_SCRATCH), client_name="MPSGraph (temp folder)",
                               scope=(MPSGRAPH_SCRATCH,)))
    found = [c for c in found if _inside_named_root(c, places, look)]
    if bundle_id:
        known = sorted({str(c.bundle_id or c.client_name) for c in found})
        found = [c for c in found if bundle_id in (c.bundle_id, c.client_name)]
        if not found:  # a typo must never read as "within budget"
            raise NotAContainer(f"no client {bundle_id} was found in {places.home}",
                                hint="known: " + (", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
                                                  if known else "none"))
    system = [_system_ane(places.ane_cache)] if places.ane_cache is not None else []
    return Discovery(found, system, look.unreadable, look.skipped)


def _inside_named_root(c: Container, places: Places, look: _Look) -> bool:
    """The container's root (and each folder of its scope) lies inside the home or the temp folder,
    reached from there through real folders only; else it is skipped, named, and never acted on."""
    root = c.real_root
    named = [str(p) for p in (places.home, places.tmpdir) if p is not None]
    places_to_check = [root] + [os.path.join(root, *s.split("/")) for s in c.scope]
    if all(any(fsio.lies_inside(n, p) for n in named) for p in places_to_check):
        return True
    look.skipped.append({**path_fields(root), **path_fields("", "target"),
                         "reason": "not reached from the home or temp folder without crossing a symlink; "
                                   "scan it as PATH"})
    return False


def _simulators(devices: Path, look: _Look) -> list[Container]:
    out = []
    look.subfolders(devices)  # records a symlinked device folder as skipped (detection never enters it)
    for c in look.containers(devices.parent):
        udid = _udid_of(c.label)
        plist = read_plist(FolderStore(devices).read(f"{udid}/device.plist")) if udid else {}
        runtime = plist.get("runtime")
        c.info.update({k: v for k, v in (("device", plist.get("name")), ("udid", udid),
                                         ("runtime", runtime.rsplit(".", 1)[-1] if isinstance(runtime, str) else None))
                       if isinstance(v, str)})
        out.append(c)
    return out


def _udid_of(label: str) -> str | None:
    parts = label.split("/")
    return parts[parts.index("Devices") + 1] if "Devices" in parts[:-1] else None


def _app_containers(top: Path, form: str, look: _Look) -> list[Container]:
    """`Library/Containers/<id>/Data` (found by the usual detection) and group containers, whose
    folder is their root."""
    out = []
    for child in look.subfolders(top):
        if form == Form.MACOS_CONTAINER:
            out += [c for c in look.containers(child) if c.form == Form.MACOS_CONTAINER]
        elif look.place(child, "Library", "Caches") is not None:
            out.append(Container(store=FolderStore(child), root="", form=form, bundle_id=None,
                                 label=str(child), client_name=child.name))
    return out


def _process_caches(caches: Path, look: _Look) -> list[Container]:
    """One container per client of the per-process caches; the root is ~/Library/Caches and the
    scope its client's folders, so nothing of another client is ever walked or acted on."""
    scopes: dict[str, list[str]] = {}
    for child in look.subfolders(caches):
        if child.name in (E5_CACHE, COREAI_CACHE):
            continue
        if look.is_dir(child / E5_CACHE):
            scopes.setdefault(child.name, []).append(f"{child.name}/{E5_CACHE}")
    if look.is_dir(caches / E5_CACHE):
        scopes.setdefault(SHARED_CLIENT, []).append(E5_CACHE)
    coreai = look.place(caches, COREAI_CACHE)
    if coreai is not None:
        for build in look.subfolders(coreai):
            for client in look.subfolders(build):
                scopes.setdefault(client.name, []).append(f"{COREAI_CACHE}/{build.name}/{client.name}")
    store = FolderStore(caches)
    return [Container(store=store, root="", form=Form.PROCESS_CACHE, bundle_id=client if "." in client and
                      client != SHARED_CLIENT and not client.startswith(("python", "org.python", "com.apple.python"))
                      else None, label=_client_label(caches, client, scope), client_name=client,
                      scope=tuple(sorted(scope)))
            for client, scope in sorted(scopes.items())]


def _client_label(caches: Path, client: str, scope: list[str]) -> str:
    """A folder that exists and is the client's: its own folder in Caches when it has one (python,
    com.apple.python3), else its one cache folder (the shared E5RT cache, a Core AI-only client)."""
    own = caches / client
    if any(s == client or s.startswith(client + "/") for s in scope):
        return str(own)
    return str(caches / sorted(scope)[0])


def _system_ane(path: Path) -> dict:
    """The system ANE compiler cache: root-only, outside every container. Sized when readable."""
    entry = {"name": "ANE compiler cache (system)", "path": str(path), "observable": False, "bytes": None,
             "reason": "owned by the system; readable only as root; never cleaned"}
    try:
        present = stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        present = False
    except OSError as exc:
        entry["reason"] = f"cannot be read ({exc.strerror or exc}); owned by the system; never cleaned"
        return entry
    if not present:
        entry["reason"] = "not present"
        return entry
    notes: list[str] = []
    total = sum(e.size for e in FolderStore(path).walk("", notes) if e.type == "file")
    if not notes and os.access(path, os.R_OK | os.X_OK):
        entry.update(observable=True, bytes=total, reason="readable here; owned by the system; never cleaned")
    return entry
