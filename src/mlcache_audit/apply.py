"""The only module of mlcache that deletes or moves anything.

Safety rules, each enforced here and pinned by the test named after it (tests/test_apply.py):

- test_apply_never_follows_symlinks: every path is reached from the container root through folders
  opened with O_NOFOLLOW, so a symlink anywhere on the way makes the entry skip; the re-check, the
  rename and the removal all go through that same parent handle; a symlinked entry is removed as a
  link, never its target; removal of folders never descends through links.
- test_apply_never_acts_outside_root: a planned path must be relative, without `..`, `.` or empty
  parts; the root must be the real, symlink-free folder the plan was made for.
- test_apply_never_touches_protected_paths: Documents/, Library/Preferences/ and the container
  metadata plists are refused whatever the plan says.
- test_apply_keeps_to_a_clients_scope: a per-process client shares ~/Library/Caches with others;
  only paths inside its own cache folders (the plan's scope) are acted on.
- test_apply_skips_entries_changed_since_plan: right before acting, the target is walked again and
  its type, size, file count, newest mtime, inode and fingerprint must equal the plan's; if not, the
  entry is skipped and reported.
- test_apply_refuses_plan_for_another_container, test_apply_refuses_live_container_in_use,
  test_apply_refuses_backups_and_archives: checked before anything is acted on (preflight.py).
- test_apply_walks_and_removes_iteratively: walks and removals hold one folder handle per level and
  never recurse, so a leftover nested deeper than PATH_MAX or Python's recursion limit is removed.
- test_apply_reports_os_errors_per_entry: EACCES, EROFS, ENOSPC, ENAMETOOLONG and the like fail
  that entry, with the error; the run goes on with the rest.
- test_quarantine_moves_by_rename_only: quarantine moves an entry by rename through the same handles,
  on the container's volume (another volume is refused before anything is moved); the manifest
  record is written and synced before the move; restore acts only on checked manifest lines, only
  on items inside the quarantine folder, and only into the container the quarantine was made for.
- test_apply_journal_records_interrupted_run: each entry is renamed aside atomically before it is
  removed, and a journal records the intent (synced, a group of entries at a time, before any of
  them is touched) and the result; the next run reports what an interrupted run did and finishes
  removing what it had already renamed aside.
- test_apply_reports_each_outcome_truthfully: every entry ends as removed, quarantined, skipped (with
  why) or failed (with the error); only removed bytes count as freed.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

from mlcache_audit import fsio
from mlcache_audit import outcomes as oc
from mlcache_audit import quarantine as qfmt
from mlcache_audit.journal import Journal, default_state_dir
from mlcache_audit.locks import holding, state_folder_ready
from mlcache_audit.outcomes import ApplyResult, ContainerOutcome, Outcome, RestoreResult
from mlcache_audit.plan import Action, ContainerPlan, Plan
from mlcache_audit.safety import may_act_on, refusal
from mlcache_audit.state import fresh_state
from mlcache_audit.vocab import DONE, Event, Status

TRASH_PREFIX = ".mlcache-removing-"
_TRASH = re.compile(r"^\.mlcache-removing-[0-9a-f]{12}$")  # short: fits 255 bytes whatever the entry's name


def apply_plan(plan: Plan, *, dry_run: bool = False, quarantine: Path | None = None,
               state_dir: Path | None = None, known: list | None = None) -> ApplyResult:
    """Carry out a plan entry by entry under the rules in this module's doc. With dry_run, return the
    same result with "would ..." outcomes and change nothing (no journal, no lock, no re-walk).

    Before the first action: the state folder must be writable (the journal is what makes a crash
    recoverable), every container's lock is taken (one run acts on a container at a time), and the
    containers and their in-use checks are verified, all or nothing (`known`: the containers the plan
    was just made from in this process, which are not detected again)."""
    from mlcache_audit import preflight

    if quarantine is not None:
        quarantine = preflight.verify_quarantine(plan, quarantine, create=not dry_run)
    if dry_run:
        return ApplyResult(True, str(quarantine) if quarantine else None, tuple(
            oc.container_outcome(cp, tuple(_act(cp, a, True, quarantine, None) for a in cp.actions), (), oc.plan_key_text(cp))
            for cp in plan.containers))
    preflight.refuse_read_only(plan)
    state = state_dir or default_state_dir()
    state_folder_ready(state, "journals")
    keys = preflight.container_keys(plan)
    with holding(state, list(keys.values()), "apply"):
        refused = preflight.verify_plan_targets(plan, known)
        results = [_apply_container(plan, cp, quarantine, state, refused.get(cp.key),
                                    keys[cp.key].text if cp.key in keys else oc.plan_key_text(cp))
                   for cp in plan.containers]
    return ApplyResult(False, str(quarantine) if quarantine else None, tuple(results))


def _apply_container(plan: Plan, cp: ContainerPlan, quarantine: Path | None, state: Path,
                     refused: str | None, key: str | None) -> ContainerOutcome:
    def skip(actions, why: str) -> list[Outcome]:
        return [Outcome(a.path, 0, a.rule, Status.SKIPPED, why) for a in actions]

    if refused:  # a client that is running: every entry skipped, named, and the run exits 1
        return oc.container_outcome(cp, tuple(skip(cp.actions, refused)), (), key)
    journal = Journal(state, cp.root, cp.key)
    recovered = _recover(journal)
    try:
        journal.write({"event": Event.START, "plan_created": plan.created, "entries": len(cp.actions)})
    except OSError as exc:  # a full disk: without its journal nothing is acted on
        journal.close(finished=False)
        return oc.container_outcome(cp, tuple(skip(cp.actions, f"the journal cannot be written ({fsio.why(exc)}); nothing was "
                                                   "done")), recovered, key)
    try:
        handles = _root_handles(cp, key)
    except OSError as exc:
        journal.close(finished=False)
        return oc.container_outcome(cp, tuple(skip(cp.actions, str(exc))), recovered, key)
    outcomes: list[Outcome] = []
    items = None  # the quarantine store's items folder: made, with its container.json, before any record
    try:
        # Deepest first, so nothing is removed with a parent that was not itself planned.
        ordered = sorted(cp.actions, key=lambda a: (-a.path.count("/"), a.path))
        for start in range(0, len(ordered), GROUP):
            group = ordered[start:start + GROUP]
            try:
                if quarantine is not None and items is None:
                    items = qfmt.store_items(quarantine, qfmt.store_name(cp.key), cp)
            except OSError as exc:
                outcomes += skip(ordered[start:], f"the quarantine folder cannot be used ({fsio.why(exc)}); "
                                                  "not acted on")
                break
            try:
                begun = _begin(cp, group, quarantine, journal)
            except OSError as exc:  # a full disk: no entry is touched before its BEGIN (and record) is on disk
                what = "the quarantine's manifest" if isinstance(exc, qfmt.Unannounced) else "the journal"
                outcomes += skip(ordered[start:], f"{what} cannot be written ({fsio.why(exc)}); not acted on")
                break
            ended = []  # quarantine tokens of entries begun and not moved: their records cancelled together
            for action in group:
                outcome = _act(cp, action, False, quarantine, journal, handles, begun.get(action.path), items)
                if outcome.status == Status.SKIPPED and action.path in begun:  # begun, then not acted on
                    _after(journal, {"event": Event.SKIPPED, **fsio.path_fields(action.path)}, outcome)
                    ended.append(begun[action.path])
                outcomes.append(outcome)
            if quarantine is not None:
                qfmt.cancel(quarantine, qfmt.store_name(cp.key), ended)
    finally:
        handles.close()
        if items is not None:
            os.close(items)
        journal.close(finished=len(outcomes) == len(cp.actions))
    order = {a.path: i for i, a in enumerate(cp.actions)}
    outcomes.sort(key=lambda o: order.get(o.path, 0))
    return oc.container_outcome(cp, tuple(outcomes), recovered, key)


GROUP = 256  # entries whose BEGIN (and quarantine) records share one fsync (README, "The other stages": why 256)


def _begin(cp: ContainerPlan, group: list[Action], quarantine: Path | None, journal) -> dict[str, str]:
    """The trash name (or quarantine token) of each entry of a group that may be acted on, its BEGIN
    written and the group's synced once, before any of them is re-checked (Journal.write: why).
    Into a quarantine, the manifest's records of the group too, in one synced write
    (quarantine.append_lines: why that holds); 1,500 entries synced one by one spent 0.35 s."""
    store, names = qfmt.store_name(cp.key), {}
    for a in group:
        if refusal(cp.scope, a.path, a.evidence) is None:
            names[a.path] = qfmt.new_token() if quarantine is not None else TRASH_PREFIX + os.urandom(6).hex()
    journal.begin({p: {"quarantine": f"{store}/items/{n}"} if quarantine is not None else {"trash": n}
                   for p, n in names.items()})
    if quarantine is not None and names:
        qfmt.announce(quarantine, cp.root, cp.bundle_id, cp.client if cp.scope else None, store,
                      [(a.path, names[a.path], a.bytes, a.rule) for a in group if a.path in names])
    return names


def _root_handles(cp: ContainerPlan, key: str | None) -> fsio.FolderHandles:
    """The container's root, opened from `/` without crossing a symlink and checked to be the folder
    whose identity was locked and checked (OSError saying why, when it is not), and the handles of
    the folders below it that the actions will go through."""
    fd = fsio.open_real_root(cp.root)
    st = os.fstat(fd)
    if key is not None and key.split("/", 1)[0] != f"{st.st_dev}:{st.st_ino}":
        os.close(fd)
        raise OSError(errno.ESTALE, "the container's root is another folder than the one checked; nothing was done")
    return fsio.FolderHandles(fd)


def _act(cp: ContainerPlan, a: Action, dry_run: bool, quarantine: Path | None, journal,
         handles: fsio.FolderHandles | None = None, begun: str | None = None, items: int | None = None) -> Outcome:
    measured: list[tuple[int, int]] = []  # what the re-check measured right before acting: the only bytes reported freed

    def out(status: str, reason: str = "") -> Outcome:
        if status in (Status.WOULD_REMOVE, Status.WOULD_QUARANTINE):
            freed, disk = a.bytes, a.disk_bytes  # a preview of a plan: the plan's own figures, shown as such
        else:
            freed, disk = measured[0] if status in DONE and measured else (0, 0)
        return Outcome(a.path, freed, a.rule, status, reason, disk)

    refused = refusal(cp.scope, a.path, a.evidence)
    if refused:
        return out(Status.SKIPPED, refused)
    if dry_run:
        # A preview of a plan just made from this walk: the re-checks run right before acting.
        return out(Status.WOULD_QUARANTINE if quarantine else Status.WOULD_REMOVE)
    parts = a.path.split("/")
    try:
        parent_fd = handles.get(parts[:-1])  # opened no-follow from the checked root, shared by siblings
    except OSError:
        return out(Status.SKIPPED, "a folder on the way is missing, or is now a symlink")
    try:
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return out(Status.SKIPPED, "gone since the plan was made")
        now, freed, freed_disk = fresh_state(parent_fd, name, st)
        changed = ", ".join(f for f in ("type", "size", "files", "mtime_ns", "inode", "fingerprint")
                            if getattr(now, f) != getattr(a.seen, f))
        if changed:
            return out(Status.SKIPPED, f"changed since plan ({changed})")
        measured.append((freed, freed_disk))
        if quarantine is not None:
            return _quarantine(cp, a, parent_fd, name, st, quarantine, journal, out, begun, items)
        return _remove(a, parent_fd, name, st, journal, out, begun)
    except OSError as exc:  # EACCES, EROFS, ENOSPC, ENAMETOOLONG...: this entry's outcome, not the run's
        try:
            journal.write({"event": Event.FAILED, **fsio.path_fields(a.path), "error": fsio.why(exc)})
        except OSError:
            pass
        return out(Status.FAILED, fsio.why(exc))


def _remove(a: Action, parent_fd: int, name: str, st: os.stat_result, journal, out, trash: str) -> Outcome:
    """Rename a re-checked entry aside to `trash` (its BEGIN is synced), check it, delete it there."""
    if stat.S_ISLNK(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)  # the link itself, never its target
        return _after(journal, {"event": Event.DONE, **fsio.path_fields(a.path), "bytes": 0},
                      out(Status.REMOVED, "symlink removed as a link"))
    os.rename(name, trash, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    moved = os.stat(trash, dir_fd=parent_fd, follow_symlinks=False)
    if moved.st_ino != st.st_ino:  # swapped between the check and the rename: put it back
        os.rename(trash, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        journal.write({"event": Event.SKIPPED, **fsio.path_fields(a.path)})
        return out(Status.SKIPPED, "changed while being removed")
    journal.write({"event": Event.RENAMED, **fsio.path_fields(a.path), "trash": trash})
    error = _delete_aside(parent_fd, trash, stat.S_ISDIR(st.st_mode))
    if error:
        journal.write({"event": Event.FAILED, **fsio.path_fields(a.path), "error": error, "trash": trash})
        return out(Status.FAILED, f"{error}; what is left is in {trash} beside it")
    result = out(Status.REMOVED)
    return _after(journal, {"event": Event.DONE, **fsio.path_fields(a.path), "bytes": result.bytes}, result)


def _after(journal, record: dict, result: Outcome) -> Outcome:
    """Record what is already done; a journal that cannot take it (a full disk) does not undo it: the
    outcome stays, saying so, and the next run's recovery finds the entry gone, as it is."""
    try:
        journal.write(record)
    except OSError as exc:
        return replace(result, reason=(result.reason + "; " if result.reason else "") +
                       f"the journal could not record it ({fsio.why(exc)})")
    return result


def _delete_aside(parent_fd: int, trash: str, is_dir: bool) -> str:
    """Remove an entry already renamed aside; the first error, or ""."""
    if not is_dir:
        try:
            os.unlink(trash, dir_fd=parent_fd)
        except OSError as exc:
            return fsio.why(exc)
        return ""
    errors = _remove_tree(parent_fd, trash)
    return errors[0] if errors else ""


def _remove_tree(parent_fd: int, name: str) -> list[str]:
    """Remove the folder `name` in `parent_fd` and all below it: iteratively, each folder opened
    relative to its parent with O_NOFOLLOW (a link is unlinked as a link, never entered), one handle
    per level (no PATH_MAX limit). Errors are collected, and what can be removed still is."""
    errors: list[str] = []
    try:
        top = os.open(name, fsio.DIRFLAGS, dir_fd=parent_fd)
    except OSError as exc:
        return [fsio.why(exc)]
    stack = [(parent_fd, name, top, iter(_names(top, errors)))]
    while stack:
        pfd, pname, fd, names = stack[-1]
        child = next(names, None)
        if child is None:
            stack.pop()
            os.close(fd)
            try:
                os.rmdir(pname, dir_fd=pfd)
            except OSError as exc:
                errors.append(fsio.why(exc))
            continue
        child, is_dir = child
        try:
            if is_dir:
                cfd = os.open(child, fsio.DIRFLAGS, dir_fd=fd)  # no-follow: a link swapped in fails here
                stack.append((fd, child, cfd, iter(_names(cfd, errors))))
            else:
                os.unlink(child, dir_fd=fd)
        except OSError as exc:
            errors.append(fsio.why(exc))
    return errors


def _names(fd: int, errors: list[str]) -> list[tuple[str, bool]]:
    """A folder's names, each with whether it is a folder (never following a link), read with the
    listing itself (d_type) where the file system gives it: no stat per file."""
    try:
        with os.scandir(fd) as it:
            return [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    except OSError as exc:
        errors.append(fsio.why(exc))
        return []


def _finish_removal(root: str, parents: list[str], trash: str) -> list[str]:
    """Remove what an interrupted run had already renamed aside (a `.mlcache-removing-*` entry),
    reaching it from the root without following any symlink, as every removal does."""
    try:
        fd = fsio.open_under(root, parents)
    except OSError as exc:
        return [fsio.why(exc)]
    try:
        st = os.stat(trash, dir_fd=fd, follow_symlinks=False)
        error = _delete_aside(fd, trash, stat.S_ISDIR(st.st_mode))
        return [error] if error else []
    except OSError as exc:
        return [fsio.why(exc)]
    finally:
        os.close(fd)


# -- quarantine ---------------------------------------------------------------------------------
def _quarantine(cp: ContainerPlan, a: Action, parent_fd: int, name: str, st, quarantine: Path, journal,
                out, token: str, items_fd: int) -> Outcome:
    """Move a re-checked entry into the store's items folder (`items_fd`), under the token its
    record in the manifest, synced with its group's (_begin), already names."""
    store = qfmt.store_name(cp.key)
    try:
        os.rename(name, token, src_dir_fd=parent_fd, dst_dir_fd=items_fd)
    except OSError as exc:
        qfmt.cancel(quarantine, store, [token])  # not moved: its record ends (best effort; restore skips it anyway)
        if exc.errno == errno.EXDEV:
            raise OSError(exc.errno, "the quarantine folder is on another volume; nothing was moved") from None
        raise
    moved = os.stat(token, dir_fd=items_fd, follow_symlinks=False)
    if moved.st_ino != st.st_ino:  # swapped between the check and the rename: put it back (its record is cancelled)
        os.rename(token, name, src_dir_fd=items_fd, dst_dir_fd=parent_fd)
        return out(Status.SKIPPED, "changed while being moved")
    result = out(Status.QUARANTINED, f"to {fsio.readable(str(quarantine / store / 'items' / token))}")
    return _after(journal, {"event": Event.DONE, **fsio.path_fields(a.path), "bytes": result.bytes,
                            "quarantine": f"{store}/items/{token}"}, result)


# -- journal ------------------------------------------------------------------------------------
def _recover(journal: Journal) -> list[str]:
    """What an interrupted earlier run did, finishing the removals it had already renamed aside."""
    pending, notes = journal.read_back()
    for p, rec in pending.items():
        if not may_act_on(p):
            notes.append(f"{fsio.readable(p)!r}: not a path mlcache acts on; left alone")
            continue
        trash = rec.get("trash")
        parents = p.split("/")[:-1]
        if isinstance(trash, str) and _TRASH.match(trash) and fsio.exists_at(journal.root, parents, trash):
            errors = _finish_removal(journal.root, parents, trash)
            notes.append(f"{fsio.readable(p)}: the interrupted run had moved it aside; removal finished now"
                         + (f" with errors ({errors[0]})" if errors else ""))
        elif fsio.exists_at(journal.root, parents, p.split("/")[-1]):
            notes.append(f"{fsio.readable(p)}: the interrupted run had not started removing it; it is still there")
        else:
            notes.append(f"{fsio.readable(p)}: the interrupted run removed it")
    journal.discard()
    return notes


# -- restore ------------------------------------------------------------------------------------
def restore_quarantine(directory: Path, state_dir: Path | None = None) -> RestoreResult:
    """Put every quarantined entry back exactly where it was: only entries inside the quarantine
    folder, only into the container its store was made from (the same identity, there now), never
    over something already there, only by rename (another volume is refused, so nothing is copied
    or truncated), creating at most the item's own parent folder, never one above it.

    Every record is validated before any is moved (quarantine.validate): one that fails means
    nothing is moved (PlanInvalid, exit 2); a failure during the moves is that entry's (exit 1).
    The containers' locks are held throughout, as apply holds them."""
    from mlcache_audit.preflight import container_identity

    qdir = os.path.realpath(directory)
    records, finished, damaged = qfmt.read_manifest(qdir)
    pending = [r for r in records if r.stored not in finished]
    checked = qfmt.validate(qdir, pending, damaged, container_identity)
    if not checked:
        return RestoreResult(())
    state = state_dir or default_state_dir()
    with holding(state, [c.key for c in checked], "restore"):
        outcomes: list[Outcome] = []
        marked = 0  # outcomes whose `restored` lines are written
        try:
            for c in checked:
                rec = c.record

                def out(status: str, reason: str = "", rec=rec) -> Outcome:
                    return Outcome(rec.path, rec.bytes if status == Status.RESTORED else 0, rec.rule, status, reason)

                outcomes.append(_restore_one(qdir, rec, out))
                if len(outcomes) - marked >= GROUP:
                    marked = _mark_restored(qdir, checked, outcomes, marked)
        finally:  # an interrupted restore still records what it put back
            _mark_restored(qdir, checked, outcomes, marked)
    return RestoreResult(tuple(outcomes))


def _mark_restored(qdir: str, checked: list, outcomes: list[Outcome], marked: int) -> int:
    """outcomes[marked:]'s `restored` lines (quarantine.mark_restored); a failure there says so."""
    done = [i for i in range(marked, len(outcomes)) if outcomes[i].status == Status.RESTORED]
    why = qfmt.mark_restored(qdir, [checked[i].record.stored for i in done])
    for i in done if why else ():
        outcomes[i] = replace(outcomes[i], reason=f"{outcomes[i].reason}; the quarantine's manifest could not record "
                                                  f"it ({why}): a later restore passes over it")
    return len(outcomes)


def _restore_one(qdir: str, rec: qfmt.Record, out) -> Outcome:
    try:
        items_fd = fsio.open_under(qdir, [rec.store, "items"])
    except OSError:
        return out(Status.SKIPPED, "no longer in the quarantine folder")
    try:
        try:
            os.stat(rec.token, dir_fd=items_fd, follow_symlinks=False)
        except FileNotFoundError:
            return out(Status.SKIPPED, "not in the quarantine folder (never moved, or restored already)")
        parts = rec.path.split("/")
        try:  # every folder above the item's parent must be there; the parent itself may be made again
            above = fsio.open_under(rec.root, parts[:-2])
            fd = fsio.open_chain_at(above, parts[-2:-1], create=True)
        except OSError:
            return out(Status.SKIPPED, "a folder above where it was is missing or is now a symlink")
        try:
            if fsio.exists_in(fd, parts[-1]):
                return out(Status.SKIPPED, "something is at the original path already")
            os.rename(rec.token, parts[-1], src_dir_fd=items_fd, dst_dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                return out(Status.FAILED, "the quarantine folder is on another volume than the container now; move it "
                                     "back to the container's volume (nothing was copied)")
            return out(Status.FAILED, fsio.why(exc))
        finally:
            os.close(fd)
    finally:
        os.close(items_fd)
    return out(Status.RESTORED, f"to {fsio.readable(os.path.join(rec.root, rec.path))}")  # its line: _mark_restored
