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
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlcache_audit.domain import COREAI_CACHE, E5_CACHE, MPSGRAPH_SCRATCH
from mlcache_audit.errors import NotAContainer, PathNotFound, PathUnreadable
from mlcache_audit.fsio import path_fields
from mlcache_audit.sources.base import Container, read_plist
from mlcache_audit.sources.detect import open_containers
from mlcache_audit.sources.folder import FolderStore

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
        root = Path(home)
        try:
            is_dir = stat.S_ISDIR(os.stat(root).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            is_dir = False
        except OSError as exc:
            raise PathUnreadable(f"cannot read the home folder {home}: {exc.strerror or exc}",
                                 place=home, reason=exc.strerror or str(exc)) from None
        if not is_dir:
            raise PathNotFound(f"no such home folder: {home}")
        return Places(root, Path(tmpdir) if tmpdir else None)
    if sys.platform != "darwin":
        raise NotAContainer("there is nothing to discover here: ML caches live on a Mac",
                            hint="give a PATH, or a copied home folder with --home DIR (or MLCACHE_HOME)")
    return Places(Path.home(), Path(tmpdir or os.environ.get("TMPDIR") or "/tmp"), Path(SYSTEM_ANE_CACHE))


@dataclass
class Discovery:
    containers: list[Container]
    system: list[dict] = field(default_factory=list)  # places shown but never cleaned (the ANE cache)
    unreadable: list[dict] = field(default_factory=list)  # {"path", "reason"}: places not searched


class _Look:
    """Looks into the places discovery searches; what it cannot read (a folder macOS's privacy
    controls keep from the terminal, say) is kept in `unreadable` and left out, never an error."""

    def __init__(self) -> None:
        self.unreadable: list[dict] = []

    def _skip(self, path: Path, exc: OSError) -> None:
        self.unreadable.append({**path_fields(str(path)), "reason": exc.strerror or str(exc)})

    def is_dir(self, path: Path, follow: bool = True) -> bool:
        """A folder (a symlink to one too, with `follow`: the places discovery starts from)."""
        try:
            return stat.S_ISDIR(os.stat(path, follow_symlinks=follow).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            self._skip(path, exc)
            return False

    def subfolders(self, path: Path) -> list[Path]:
        """The folders in `path` (never a symlink), by name."""
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            self._skip(path, exc)
            return []
        return [path / n for n in names if self.is_dir(path / n, follow=False)]

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
    sims = home / "Library" / "Developer" / "CoreSimulator" / "Devices"
    if look.is_dir(sims):
        found += _simulators(sims, look)
    for top, form in ((home / "Library" / "Containers", "macos-container"),
                      (home / "Library" / "Group Containers", "group-container")):
        if look.is_dir(top):
            found += _app_containers(top, form, look)
    caches = home / "Library" / "Caches"
    if look.is_dir(caches):
        found += _process_caches(caches, look)
    if places.tmpdir is not None and look.is_dir(places.tmpdir / MPSGRAPH_SCRATCH):
        store = FolderStore(places.tmpdir.resolve())
        found.append(Container(store=store, root="", form="process-cache", bundle_id=None,
                               label=str(places.tmpdir / MPSGRAPH_SCRATCH), client_name="MPSGraph (temp folder)",
                               scope=(MPSGRAPH_SCRATCH,)))
    if bundle_id:
        found = [c for c in found if bundle_id in (c.bundle_id, c.client_name)]
    system = [_system_ane(places.ane_cache)] if places.ane_cache is not None else []
    return Discovery(found, system, look.unreadable)


def _simulators(devices: Path, look: _Look) -> list[Container]:
    out = []
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
        if form == "macos-container":
            out += [c for c in look.containers(child) if c.form == "macos-container"]
        elif look.is_dir(child / "Library" / "Caches"):
            out.append(Container(store=FolderStore(child.resolve()), root="", form=form, bundle_id=None,
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
    coreai = caches / COREAI_CACHE
    if look.is_dir(coreai):
        for build in look.subfolders(coreai):
            for client in look.subfolders(build):
                scopes.setdefault(client.name, []).append(f"{COREAI_CACHE}/{build.name}/{client.name}")
    store = FolderStore(caches.resolve())
    return [Container(store=store, root="", form="process-cache", bundle_id=client if "." in client and
                      client != SHARED_CLIENT and not client.startswith(("python", "org.python", "com.apple.python"))
                      else None, label=str(caches / client), client_name=client, scope=tuple(sorted(scope)))
            for client, scope in sorted(scopes.items())]


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
