"""Checks made before anything is acted on: the plan still describes the containers at its roots,
no live container is in use, and a quarantine folder can hold what a plan would move."""

from __future__ import annotations

import os
from pathlib import Path

from mlcache_audit.errors import PlanInvalid, ReadOnlyEvidence
from mlcache_audit.fsio import readable
from mlcache_audit.identity import ContainerKey, key_of
from mlcache_audit.plan import Plan
from mlcache_audit.processes import OpenFiles, processes_of_client
from mlcache_audit.sources import open_containers
from mlcache_audit.vocab import Form


def container_identity(root: str) -> tuple[str | None, str, bool, bool] | None:
    """(bundle id, form, cleanable, live) of the container whose root is exactly `root`, or None."""
    try:
        found = open_containers(root)
    except Exception:  # noqa: BLE001 - any failure to open means "no container there"
        return None
    for c in found:
        if c.real_root == root:
            return c.bundle_id, c.form, c.cleanable_in_place, c.live_why
    return None


def _current(plan: Plan, known: list | None = None) -> dict[str, tuple]:
    """What is there now, keyed as ContainerPlan.key: (bundle id, form, cleanable, why live, client).
    `known`: the containers the plan was just made from in this process (clean --apply), which need
    not be detected again; a saved plan (mlcache apply) is older, so its containers are."""
    if known is not None:
        found = known
    elif plan.discovery is not None:
        from mlcache_audit.sources.discover import Places, discover

        tmpdir = plan.discovery.get("tmpdir")
        found = discover(Places(Path(plan.discovery["home"]), Path(tmpdir) if tmpdir else None)).containers
    else:
        found = open_containers(plan.path)
    return {c.plan_key: (c.bundle_id, c.form, c.cleanable_in_place, c.live_why, c.client_name) for c in found}


def refuse_read_only(plan: Plan) -> None:
    """A backup or an archive is never acted on: ReadOnlyEvidence, with what to do instead."""
    for cp in plan.containers:
        if cp.read_only:
            raise ReadOnlyEvidence(f"{readable(cp.root)}: {cp.read_only.split(';')[0]}",
                                   hint=cp.read_only.split("; ", 1)[-1])


def container_keys(plan: Plan) -> dict[str, ContainerKey]:
    """The identity of every container the plan acts on (ContainerPlan.key -> ContainerKey); a root
    that is gone or reached through a symlink is PlanInvalid, before anything is done."""
    keys = {}
    for cp in plan.containers:
        if not cp.actions:
            continue
        key = key_of(cp.root, cp.client if cp.scope else None)
        if key is None:
            raise PlanInvalid(f"{readable(cp.root)} is gone, or is now reached through a symlink",
                              hint="make a new plan with `mlcache clean`")
        keys[cp.key] = key
    return keys


def verify_plan_targets(plan: Plan, known: list | None = None) -> dict[str, str]:
    """The plan must still describe the containers at its roots (else PlanInvalid, nothing is done).
    Returns the containers that must not be touched now, container key -> why: those are skipped,
    the rest go on.

    Every folder container gets the in-use check, for a process may use any folder: one is in use
    when a process (mlcache's own left out) has a file open or its working folder in it; a
    per-process cache also when a process of its client's name runs (python for com.apple.python3).
    A live container (where it lives says so: Container.live_why) is refused too when the check
    cannot run (no process of this user can be read: access denied): unsure is in use."""
    refuse_read_only(plan)
    try:
        current = _current(plan, known)
    except Exception as exc:  # noqa: BLE001 - any failure to re-open means "not the same container"
        raise PlanInvalid(f"the plan's containers at {readable(plan.path)} cannot be opened any more: {exc}") from None
    for cp in plan.containers:
        ident = current.get(cp.key)
        if ident is None or ident[0] != cp.bundle_id or ident[1] != cp.form:
            raise PlanInvalid(f"the plan was made for {cp.bundle_id or cp.client or 'a container'} ({cp.form}) at "
                              f"{readable(cp.root)}, which is not what is there now",
                              hint="make a new plan with `mlcache clean`")
        if not ident[2]:
            raise PlanInvalid(f"{readable(cp.root)} is not a folder that can be cleaned in place")
    acting = [cp for cp in plan.containers if cp.actions]
    if not acting:
        return {}
    table = OpenFiles.now()
    refused = {}
    for cp in acting:
        live_why = current[cp.key][3]
        places = [os.path.join(cp.root, *s.split("/")) for s in cp.scope] or [cp.root]
        users = [u for place in places for u in table.using(place)]
        if cp.form == Form.PROCESS_CACHE:
            users += processes_of_client(cp.client)
        if users:
            refused[cp.key] = (f"in use by {', '.join(dict.fromkeys(users[:3]))}: quit it first; deleting a running "
                               "client's caches breaks it until restart")
        elif live_why and table.blind:
            refused[cp.key] = (f"live ({live_why}), and whether a running app uses it cannot be checked: "
                               f"{table.blind}; quit the app first, or run mlcache where it may read processes")
    return refused


def verify_quarantine(plan: Plan, quarantine: Path, *, create: bool = True) -> Path:
    """The quarantine folder, made if missing: outside every container and on each container's volume.

    Entries are only ever moved by rename, which is atomic and copies nothing; a folder on another
    volume would need a copy, which could put bytes from a swapped-in symlink into the quarantine or
    leave a half copy when the disk fills, so it is refused."""
    quarantine = Path(os.path.realpath(quarantine))
    for cp in plan.containers:
        if str(quarantine) == cp.root or str(quarantine).startswith(cp.root.rstrip(os.sep) + os.sep):
            raise PlanInvalid(f"the quarantine folder {readable(str(quarantine))} is inside the container it "
                              "would clean", hint="choose a folder outside the container")
    if not create:  # a dry run: nothing is made, nothing is moved
        return quarantine
    try:
        quarantine.mkdir(parents=True, exist_ok=True)
        qdev = os.stat(quarantine, follow_symlinks=False).st_dev
    except OSError as exc:
        raise PlanInvalid(f"cannot use {readable(str(quarantine))} as a quarantine folder ({exc.strerror})") from None
    for cp in plan.containers:
        if cp.actions and os.stat(cp.root).st_dev != qdev:
            raise PlanInvalid(f"the quarantine folder {readable(str(quarantine))} is on another volume than "
                              f"{readable(cp.root)}",
                              hint="mlcache moves entries aside by rename and never copies them; choose a "
                                   "quarantine folder on the container's volume")
    return quarantine
