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
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlcache_audit.domain import COREAI_CACHE, E5_CACHE, MPSGRAPH_SCRATCH
from mlcache_audit.errors import NotAContainer, PathNotFound
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
        if not root.is_dir():
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


def discover(places: Places, *, bundle_id: str | None = None) -> Discovery:
    """Every client with ML caches in `places`, one container each."""
    home = places.home
    found: list[Container] = []
    sims = home / "Library" / "Developer" / "CoreSimulator" / "Devices"
    if sims.is_dir():
        found += _simulators(sims)
    for top, form in ((home / "Library" / "Containers", "macos-container"),
                      (home / "Library" / "Group Containers", "group-container")):
        if top.is_dir():
            found += _app_containers(top, form)
    caches = home / "Library" / "Caches"
    if caches.is_dir():
        found += _process_caches(caches)
    if places.tmpdir is not None and (places.tmpdir / MPSGRAPH_SCRATCH).is_dir():
        store = FolderStore(places.tmpdir.resolve())
        found.append(Container(store=store, root="", form="process-cache", bundle_id=None,
                               label=str(places.tmpdir / MPSGRAPH_SCRATCH), client_name="MPSGraph (temp folder)",
                               scope=(MPSGRAPH_SCRATCH,)))
    if bundle_id:
        found = [c for c in found if bundle_id in (c.bundle_id, c.client_name)]
    system = [_system_ane(places.ane_cache)] if places.ane_cache is not None else []
    return Discovery(found, system)


def _simulators(devices: Path) -> list[Container]:
    out = []
    for c in _quiet_open(devices.parent):
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


def _app_containers(top: Path, form: str) -> list[Container]:
    """`Library/Containers/<id>/Data` (found by the usual detection) and group containers, whose
    folder is their root."""
    out = []
    for child in sorted(p for p in top.iterdir() if p.is_dir() and not p.is_symlink()):
        if form == "macos-container":
            out += [c for c in _quiet_open(child) if c.form == "macos-container"]
        elif (child / "Library" / "Caches").is_dir():
            out.append(Container(store=FolderStore(child.resolve()), root="", form=form, bundle_id=None,
                                 label=str(child), client_name=child.name))
    return out


def _process_caches(caches: Path) -> list[Container]:
    """One container per client of the per-process caches; the root is ~/Library/Caches and the
    scope its client's folders, so nothing of another client is ever walked or acted on."""
    scopes: dict[str, list[str]] = {}
    for child in sorted(caches.iterdir()):
        if child.name in (E5_CACHE, COREAI_CACHE) or not child.is_dir() or child.is_symlink():
            continue
        if (child / E5_CACHE).is_dir():
            scopes.setdefault(child.name, []).append(f"{child.name}/{E5_CACHE}")
    if (caches / E5_CACHE).is_dir():
        scopes.setdefault(SHARED_CLIENT, []).append(E5_CACHE)
    coreai = caches / COREAI_CACHE
    if coreai.is_dir():
        for build in sorted(p for p in coreai.iterdir() if p.is_dir() and not p.is_symlink()):
            for client in sorted(p for p in build.iterdir() if p.is_dir() and not p.is_symlink()):
                scopes.setdefault(client.name, []).append(f"{COREAI_CACHE}/{build.name}/{client.name}")
    store = FolderStore(caches.resolve())
    return [Container(store=store, root="", form="process-cache", bundle_id=client if "." in client and
                      client != SHARED_CLIENT and not client.startswith(("python", "org.python", "com.apple.python"))
                      else None, label=str(caches / client), client_name=client, scope=tuple(sorted(scope)))
            for client, scope in sorted(scopes.items())]


def _quiet_open(path: Path) -> list[Container]:
    try:
        return open_containers(path)
    except (NotAContainer, PathNotFound):
        return []


def _system_ane(path: Path) -> dict:
    """The system ANE compiler cache: root-only, outside every container. Sized when readable."""
    entry = {"name": "ANE compiler cache (system)", "path": str(path), "observable": False, "bytes": None,
             "reason": "owned by the system; readable only as root; never cleaned"}
    if not path.is_dir():
        entry["reason"] = "not present"
        return entry
    notes: list[str] = []
    total = sum(e.size for e in FolderStore(path).walk("", notes) if e.type == "file")
    if not notes and os.access(path, os.R_OK | os.X_OK):
        entry.update(observable=True, bytes=total, reason="readable here; owned by the system; never cleaned")
    return entry
