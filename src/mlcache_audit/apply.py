"""The only module of mlcache that deletes or moves anything.

Safety rules, each enforced here and pinned by the test named after it (tests/test_apply.py):

- test_apply_never_follows_symlinks: every path is reached from the container root through folders
  opened with O_NOFOLLOW, so a symlink anywhere on the way makes the entry skip; a symlinked entry
  is removed as a link, never its target; removal of folders never descends through links.
- test_apply_never_acts_outside_root: a planned path must be relative, without `..`, `.` or empty
  parts; the root must be the real, symlink-free folder the plan was made for.
- test_apply_never_touches_protected_paths: Documents/, Library/Preferences/ and the container
  metadata plists are refused whatever the plan says.
- test_apply_skips_entries_changed_since_plan: right before acting, the target is walked again and
  its type, size, file count, newest mtime, inode and fingerprint must equal the plan's; if not, the
  entry is skipped and reported.
- test_apply_refuses_plan_for_another_container: the plan's root must still hold a container of the
  same bundle id and form; a plan of an unknown format is refused.
- test_apply_refuses_live_container_in_use: a simulator or macOS container in which a running
  process has files open is not touched; the process is named.
- test_apply_refuses_backups_and_archives: only folder copies are ever modified.
- test_apply_journal_records_interrupted_run: each entry is renamed aside atomically before it is
  removed, and a journal (fsynced) records the intent and the result; the next run reports what an
  interrupted run did and finishes removing what it had already renamed aside.
- test_apply_reports_each_outcome_truthfully: every entry ends as removed, quarantined, skipped (with
  why) or failed (with the error); only removed bytes count as freed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mlcache_audit.errors import ContainerInUse, PlanInvalid
from mlcache_audit.plan import Action, ContainerPlan, Plan, Seen, target_state
from mlcache_audit.safety import may_act_on
from mlcache_audit.sources import open_containers
from mlcache_audit.sources.base import DIR, FILE, OTHER, SYMLINK, Entry
from mlcache_audit.sources.folder import FolderStore

TRASH_PREFIX = ".mlcache-removing-"
QUARANTINE_MANIFEST = "manifest.jsonl"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRFLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW


@dataclass(frozen=True)
class Outcome:
    path: str
    bytes: int
    rule: str
    status: str  # removed | quarantined | would remove | would quarantine | skipped | failed
    reason: str = ""


@dataclass(frozen=True)
class ContainerOutcome:
    root: str
    bundle_id: str | None
    outcomes: tuple[Outcome, ...]
    recovered: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplyResult:
    dry_run: bool
    quarantine: str | None
    containers: tuple[ContainerOutcome, ...]

    @property
    def freed_bytes(self) -> int:
        return sum(o.bytes for c in self.containers for o in c.outcomes if o.status in ("removed", "quarantined"))

    @property
    def would_free_bytes(self) -> int:
        return sum(o.bytes for c in self.containers for o in c.outcomes if o.status.startswith("would"))

    @property
    def complete(self) -> bool:
        """True when every planned entry was done (or, in a dry run, could be)."""
        return all(o.status in ("removed", "quarantined", "would remove", "would quarantine")
                   for c in self.containers for o in c.outcomes)

    def to_dict(self) -> dict:
        return {
            "schema": "mlcache.apply/1", "dry_run": self.dry_run, "quarantine": self.quarantine,
            "freed_bytes": self.freed_bytes, "would_free_bytes": self.would_free_bytes, "complete": self.complete,
            "containers": [{"root": c.root, "bundle_id": c.bundle_id, "recovered": list(c.recovered),
                            "outcomes": [o.__dict__ for o in c.outcomes]} for c in self.containers],
        }


def default_state_dir() -> Path:
    if env := os.environ.get("MLCACHE_STATE_DIR"):
        return Path(env)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "mlcache"
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "mlcache"


def apply_plan(plan: Plan, *, dry_run: bool = False, quarantine: Path | None = None,
               state_dir: Path | None = None) -> ApplyResult:
    """Carry out a plan entry by entry under the rules in this module's doc. With dry_run, return the
    same result with "would ..." outcomes and change nothing (no journal, no re-walk)."""
    if quarantine is not None:
        quarantine = Path(os.path.realpath(quarantine))
        for cp in plan.containers:
            if str(quarantine) == cp.root or str(quarantine).startswith(cp.root + os.sep):
                raise PlanInvalid(f"the quarantine folder {quarantine} is inside the container it would clean",
                                  hint="choose a folder outside the container")
    if not dry_run:
        _verify_containers(plan)
    results = []
    for cp in plan.containers:
        journal = None if dry_run else _Journal(state_dir or default_state_dir(), cp.root)
        recovered = journal.recover() if journal else []
        outcomes = []
        if journal:
            journal.write({"event": "start", "plan_created": plan.created, "entries": len(cp.actions)})
        try:
            # Deepest first, so nothing is removed with a parent that was not itself planned.
            for action in sorted(cp.actions, key=lambda a: (-a.path.count("/"), a.path)):
                outcomes.append(_act(cp, action, dry_run, quarantine, journal))
        finally:
            if journal:
                journal.close(finished=len(outcomes) == len(cp.actions))
        order = {a.path: i for i, a in enumerate(cp.actions)}
        outcomes.sort(key=lambda o: order.get(o.path, 0))
        results.append(ContainerOutcome(cp.root, cp.bundle_id, tuple(outcomes), tuple(recovered)))
    return ApplyResult(dry_run, str(quarantine) if quarantine else None, tuple(results))


def _verify_containers(plan: Plan) -> None:
    """The plan must still describe the containers at its roots, and no live one may be in use."""
    try:
        current = {c.store.real(c.root) if c.root else str(c.store.base): c for c in open_containers(plan.path)}
    except Exception as exc:  # noqa: BLE001 - any failure to re-open means "not the same container"
        raise PlanInvalid(f"the plan's container at {plan.path} cannot be opened any more: {exc}") from None
    for cp in plan.containers:
        c = current.get(cp.root)
        if c is None or c.bundle_id != cp.bundle_id or c.form != cp.form:
            raise PlanInvalid(f"the plan was made for {cp.bundle_id or 'a container'} ({cp.form}) at {cp.root}, "
                              "which is not what is there now", hint="make a new plan with `mlcache clean`")
        if not c.cleanable_in_place:
            raise PlanInvalid(f"{cp.root} is not a folder that can be cleaned in place")
        if c.live and cp.actions:
            users = processes_using(cp.root)
            if users:
                raise ContainerInUse(f"{cp.bundle_id or cp.root} is in use by {', '.join(users[:3])}",
                                     hint="quit the app (and its simulator) first; deleting a running app's "
                                          "specializations breaks it until restart")


def processes_using(root: str) -> list[str]:
    """`name (pid N)` of every process with a file open or its working folder inside `root`."""
    import psutil

    prefix = root.rstrip(os.sep) + os.sep
    users = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            paths = [f.path for f in proc.open_files()]
            try:
                paths.append(proc.cwd())
            except (psutil.AccessDenied, psutil.ZombieProcess):
                pass
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
        if any(p == root or p.startswith(prefix) for p in paths):
            users.append(f"{proc.info['name']} (pid {proc.info['pid']})")
    return users


def _act(cp: ContainerPlan, a: Action, dry_run: bool, quarantine: Path | None, journal) -> Outcome:
    def out(status: str, reason: str = "") -> Outcome:
        return Outcome(a.path, a.bytes if status in ("removed", "quarantined") or status.startswith("would") else 0,
                       a.rule, status, reason)

    if not may_act_on(a.path):
        return out("skipped", "protected or unsafe path: never acted on")
    if dry_run:
        # A preview of a plan just made from this walk: the re-checks run right before acting.
        return out("would quarantine" if quarantine else "would remove")
    parts = a.path.split("/")
    try:
        parent_fd = _open_parent(cp.root, parts[:-1])
    except OSError:
        return out("skipped", "a folder on the way is missing, or is now a symlink")
    name = parts[-1]
    try:
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return out("skipped", "gone since the plan was made")
        changed = _changes(cp.root, a, st)
        if changed:
            return out("skipped", f"changed since plan ({changed})")
        if quarantine is not None:
            return _quarantine(cp, a, parent_fd, name, st, quarantine, journal, out)
        return _remove(a, parent_fd, name, st, journal, out)
    finally:
        os.close(parent_fd)


def _open_parent(root: str, parts: list[str], *, create: bool = False) -> int:
    """An fd for the folder holding the target, reached from the root without following any symlink
    (O_NOFOLLOW at every level); with `create`, missing folders on the way are made (restore)."""
    fd = os.open(root, _DIRFLAGS)
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise NotADirectoryError(root)
        for part in parts:
            try:
                nfd = os.open(part, _DIRFLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, dir_fd=fd)
                nfd = os.open(part, _DIRFLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _changes(root: str, a: Action, st: os.stat_result) -> str:
    """Which of the planned facts no longer hold ("" when none)."""
    now = fresh_state(root, a.path, st)
    diffs = [name for name in ("type", "size", "files", "mtime_ns", "inode", "fingerprint")
             if getattr(now, name) != getattr(a.seen, name)]
    return ", ".join(diffs)


def fresh_state(root: str, path: str, st: os.stat_result) -> Seen:
    mode = st.st_mode
    kind = DIR if stat.S_ISDIR(mode) else FILE if stat.S_ISREG(mode) else SYMLINK if stat.S_ISLNK(mode) else OTHER
    target = os.readlink(os.path.join(root, path)) if kind == SYMLINK else None
    top = Entry(path, kind, st.st_size if kind == FILE else 0, st.st_mtime, st.st_ino, st.st_dev, st.st_nlink,
                st.st_mtime_ns, target)
    below: list[Entry] = []
    if kind == DIR:
        notes: list[str] = []
        below = list(FolderStore(Path(root)).walk(path, notes))
        unreadable = [n for n in notes if n.startswith(("unreadable folder", "cannot stat"))]
        if unreadable:
            # Something below could not be read: the state cannot be confirmed, so it is not the plan's.
            return Seen(kind, -1, -1, None, st.st_ino, "unreadable: " + unreadable[0])
    return target_state(top, below)


def _remove(a: Action, parent_fd: int, name: str, st: os.stat_result, journal, out) -> Outcome:
    if stat.S_ISLNK(st.st_mode):
        journal.write({"event": "begin", "path": a.path, "trash": None})
        os.unlink(name, dir_fd=parent_fd)  # the link itself, never its target
        journal.write({"event": "done", "path": a.path, "bytes": 0})
        return out("removed", "symlink removed as a link")
    trash = f"{TRASH_PREFIX}{secrets.token_hex(6)}-{name}"[:255]
    journal.write({"event": "begin", "path": a.path, "trash": trash})
    try:
        os.rename(name, trash, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    except OSError as exc:
        journal.write({"event": "failed", "path": a.path, "error": exc.strerror})
        return out("failed", exc.strerror or str(exc))
    moved = os.stat(trash, dir_fd=parent_fd, follow_symlinks=False)
    if moved.st_ino != st.st_ino:  # swapped between the check and the rename: put it back
        os.rename(trash, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        journal.write({"event": "skipped", "path": a.path})
        return out("skipped", "changed while being removed")
    journal.write({"event": "renamed", "path": a.path, "trash": trash})
    error = _delete_aside(parent_fd, trash, stat.S_ISDIR(st.st_mode))
    if error:
        journal.write({"event": "failed", "path": a.path, "error": error, "trash": trash})
        return out("failed", f"{error}; what is left is in {trash} beside it")
    journal.write({"event": "done", "path": a.path, "bytes": a.bytes})
    return out("removed")


def _delete_aside(parent_fd: int, trash: str, is_dir: bool) -> str:
    errors: list[str] = []
    try:
        if is_dir and shutil.rmtree.avoids_symlink_attacks:
            shutil.rmtree(trash, dir_fd=parent_fd, onerror=lambda f, p, e: errors.append(f"{p}: {e[1]}"))
        elif is_dir:
            # No fd-based rmtree on this platform: walk the tree with *at() calls instead.
            _rmtree_nofollow(parent_fd, trash, errors)
        else:
            os.unlink(trash, dir_fd=parent_fd)
    except OSError as exc:
        errors.append(exc.strerror or str(exc))
    return errors[0] if errors else ""


def _finish_removal(root: str, parents: list[str], trash: str) -> list[str]:
    """Remove what an interrupted run had already renamed aside (a `.mlcache-removing-*` entry),
    reaching it from the root without following any symlink, as every removal does."""
    errors: list[str] = []
    try:
        fd = _open_parent(root, parents)
    except OSError as exc:
        return [exc.strerror or str(exc)]
    try:
        st = os.stat(trash, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            errors.append(_delete_aside(fd, trash, True))
        else:
            os.unlink(trash, dir_fd=fd)
    except OSError as exc:
        errors.append(exc.strerror or str(exc))
    finally:
        os.close(fd)
    return [e for e in errors if e]


def _rmtree_nofollow(parent_fd: int, name: str, errors: list[str]) -> None:
    """Remove a folder tree with *at() calls only, never following a symlink (rmtree's fallback)."""
    try:
        fd = os.open(name, _DIRFLAGS, dir_fd=parent_fd)
    except OSError as exc:
        errors.append(f"{name}: {exc.strerror}")
        return
    try:
        for entry in os.scandir(fd):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _rmtree_nofollow(fd, entry.name, errors)
            else:
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except OSError as exc:
                    errors.append(f"{entry.name}: {exc.strerror}")
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except OSError as exc:
        errors.append(f"{name}: {exc.strerror}")


def _quarantine(cp: ContainerPlan, a: Action, parent_fd: int, name: str, st, quarantine: Path, journal, out) -> Outcome:
    store = quarantine / hashlib.sha1(cp.root.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    dest = store / a.path
    n = 0
    while os.path.lexists(dest):
        n += 1
        dest = store / f"{a.path}.{n}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    journal.write({"event": "begin", "path": a.path, "quarantine": str(dest)})
    try:
        try:
            os.rename(name, str(dest), src_dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # EXDEV: another volume, so copy, then remove the original
                raise
            src = os.path.join(cp.root, a.path)
            if stat.S_ISDIR(st.st_mode):
                shutil.copytree(src, dest, symlinks=True)
            else:
                shutil.copy2(src, dest, follow_symlinks=False)
            trash = f"{TRASH_PREFIX}{secrets.token_hex(6)}-{name}"[:255]
            os.rename(name, trash, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            if err := _delete_aside(parent_fd, trash, stat.S_ISDIR(st.st_mode)):
                raise OSError(err) from None
    except OSError as exc:
        journal.write({"event": "failed", "path": a.path, "error": exc.strerror or str(exc)})
        return out("failed", exc.strerror or str(exc))
    record = {"root": cp.root, "bundle_id": cp.bundle_id, "path": a.path,
              "stored": str(dest.relative_to(quarantine)), "bytes": a.bytes, "rule": a.rule,
              "at": datetime.now(timezone.utc).isoformat()}
    _append_line(quarantine / QUARANTINE_MANIFEST, record)
    journal.write({"event": "done", "path": a.path, "bytes": a.bytes, "quarantine": str(dest)})
    return out("quarantined", f"to {dest}")


def _append_line(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class _Journal:
    """An fsynced JSON-lines record of one container's apply; removed when the run ends cleanly."""

    def __init__(self, state_dir: Path, root: str):
        self.root = root
        self.path = state_dir / "journals" / (hashlib.sha1(root.encode("utf-8", "surrogateescape")).hexdigest()[:16] + ".jsonl")
        self._fh = None

    def recover(self) -> list[str]:
        """What an interrupted earlier run did, finishing the removals it had already renamed aside."""
        if not self.path.exists():
            return []
        notes = []
        begun: dict[str, dict] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            return [f"the journal of an interrupted run could not be read: {exc.strerror}"]
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line: the run died while writing it
            event, p = rec.get("event"), rec.get("path")
            if event in ("begin", "renamed"):
                begun[p] = {**begun.get(p, {}), **rec}
            elif event == "done":
                begun.pop(p, None)
                notes.append(f"{p}: removed by the interrupted run")
            elif event in ("failed", "skipped"):
                begun.pop(p, None)
        for p, rec in begun.items():
            if not isinstance(p, str) or not may_act_on(p):
                notes.append(f"{p!r}: not a path mlcache acts on; left alone")
                continue
            trash = rec.get("trash")
            parents = p.split("/")[:-1]
            aside = os.path.join(self.root, *parents, trash) if trash else None
            if aside and "/" not in trash and trash.startswith(TRASH_PREFIX) and os.path.lexists(aside):
                errors = _finish_removal(self.root, parents, trash)
                notes.append(f"{p}: the interrupted run had moved it aside; removal finished now"
                             + (f" with errors ({errors[0]})" if errors else ""))
            elif os.path.lexists(os.path.join(self.root, p)):
                notes.append(f"{p}: the interrupted run had not started removing it; it is still there")
            else:
                notes.append(f"{p}: the interrupted run removed it")
        self.path.unlink()
        return notes

    def write(self, record: dict) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(json.dumps({"event": "journal", "root": self.root}) + "\n")
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self, finished: bool) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            if finished:
                self.path.unlink()


# -- restore ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RestoreResult:
    outcomes: tuple[Outcome, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return all(o.status == "restored" for o in self.outcomes)

    def to_dict(self) -> dict:
        return {"schema": "mlcache.restore/1", "complete": self.complete,
                "outcomes": [o.__dict__ for o in self.outcomes]}


def restore_quarantine(directory: Path) -> RestoreResult:
    """Put every quarantined entry back exactly where it was; never over something already there."""
    manifest = directory / QUARANTINE_MANIFEST
    if not manifest.is_file():
        raise PlanInvalid(f"{directory} is not an mlcache quarantine folder (no {QUARANTINE_MANIFEST})")
    records, restored = [], set()
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "restored" in rec:
            restored.add(rec["restored"])
        else:
            records.append(rec)
    outcomes = []
    for rec in records:
        stored, root, path = rec.get("stored", ""), rec.get("root", ""), rec.get("path", "")
        if stored in restored:
            continue

        def out(status: str, reason: str = "", rec=rec) -> Outcome:
            return Outcome(rec.get("path", ""), int(rec.get("bytes", 0)) if status == "restored" else 0,
                           rec.get("rule", ""), status, reason)

        src = directory / stored
        if not may_act_on(path) or not os.path.isabs(root) or ".." in Path(stored).parts:
            outcomes.append(out("skipped", "the manifest entry is not a safe path"))
            continue
        if not os.path.lexists(src):
            outcomes.append(out("skipped", "no longer in the quarantine folder"))
            continue
        parts = path.split("/")
        try:
            fd = _open_parent(root, parts[:-1], create=True)
        except OSError:
            outcomes.append(out("skipped", "the container or a folder on the way is missing or a symlink"))
            continue
        try:
            try:
                os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
                outcomes.append(out("skipped", "something is at the original path already"))
                continue
            except FileNotFoundError:
                pass
            try:
                os.rename(str(src), parts[-1], dst_dir_fd=fd)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    outcomes.append(out("failed", exc.strerror or str(exc)))
                    continue
                dest = os.path.join(root, path)
                (shutil.copytree(src, dest, symlinks=True) if src.is_dir() and not src.is_symlink()
                 else shutil.copy2(src, dest, follow_symlinks=False))
                shutil.rmtree(src) if src.is_dir() and not src.is_symlink() else src.unlink()
        finally:
            os.close(fd)
        _append_line(manifest, {"restored": stored, "at": datetime.now(timezone.utc).isoformat()})
        outcomes.append(out("restored", f"to {os.path.join(root, path)}"))
    return RestoreResult(tuple(outcomes))
