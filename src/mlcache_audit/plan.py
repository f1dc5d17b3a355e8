"""What `clean` would remove, as plain data: made from an audit, saved, reviewed, applied later."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import xxhash

from mlcache_audit.audit import AuditResult
from mlcache_audit.errors import PlanInvalid, ReadOnlyEvidence
from mlcache_audit.rules import DEFAULT_RULES, RULES
from mlcache_audit.safety import may_act_on
from mlcache_audit.sources.base import DIR, FILE, Entry

PLAN_SCHEMA = "mlcache.plan/1"


@dataclass(frozen=True)
class Seen:
    """What a target was when planned; apply re-checks all of it right before acting."""

    type: str
    size: int
    files: int
    mtime_ns: int | None
    inode: int | None
    fingerprint: str


@dataclass(frozen=True)
class Action:
    path: str
    bytes: int
    rule: str
    kind: str
    seen: Seen
    content: str | None = None


@dataclass(frozen=True)
class ContainerPlan:
    root: str
    bundle_id: str | None
    form: str
    actions: tuple[Action, ...]
    reclaimable_bytes: int
    kept_back: tuple[str, ...] = ()  # reclaimable paths left out by the path rules, with the reason


@dataclass(frozen=True)
class Plan:
    path: str
    created: str
    rules: tuple[str, ...]
    include_persistent: bool
    containers: tuple[ContainerPlan, ...]
    schema: str = PLAN_SCHEMA
    notes: tuple[str, ...] = field(default=())

    @property
    def reclaimable_bytes(self) -> int:
        return sum(c.reclaimable_bytes for c in self.containers)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {"schema": d.pop("schema"), **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        if not isinstance(d, dict) or d.get("schema") != PLAN_SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise PlanInvalid(f"not an mlcache plan of a known format (schema {found!r}, expected {PLAN_SCHEMA!r})")
        def need(value, kind, what):
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
                raise PlanInvalid(f"the plan file is damaged: {what} has the wrong type")
            return value

        try:
            need(d["path"], str, "path")
            need(d["containers"], (list, tuple), "containers")
            for c in d["containers"]:
                need(need(c, dict, "a container")["root"], str, "a container root")
                if not os.path.isabs(c["root"]):
                    raise PlanInvalid("the plan file is damaged: a container root is not an absolute path")
                for a in need(c["actions"], (list, tuple), "actions"):
                    need(need(a, dict, "an action")["path"], str, "an action path")
                    need(a["bytes"], int, "an action's bytes")
                    need(a["seen"], dict, "an action's seen state")
            containers = tuple(
                ContainerPlan(
                    root=c["root"], bundle_id=c.get("bundle_id"), form=c["form"],
                    actions=tuple(Action(path=a["path"], bytes=int(a["bytes"]), rule=a["rule"], kind=a["kind"],
                                         seen=Seen(**a["seen"]), content=a.get("content"))
                                  for a in c["actions"]),
                    reclaimable_bytes=int(c["reclaimable_bytes"]), kept_back=tuple(c.get("kept_back", ())))
                for c in d["containers"])
            return cls(path=d["path"], created=d["created"], rules=tuple(d["rules"]),
                       include_persistent=bool(d["include_persistent"]), containers=containers,
                       notes=tuple(d.get("notes", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanInvalid(f"the plan file is damaged: {exc!r}") from None


def target_state(top: Entry, below: list[Entry]) -> Seen:
    """The state of a target from lstat entries: type, sizes, newest mtime, inode, a fingerprint.

    Plan and apply both call this, apply on a fresh walk, so any change between them shows.
    """
    h = xxhash.xxh3_64()
    size = files = 0
    newest = top.mtime_ns
    for e in sorted(below, key=lambda x: x.path):
        h.update(f"{e.path}\0{e.type}\0{e.size}\0{e.mtime_ns}\0{e.target}\n".encode("utf-8", "surrogateescape"))
        if e.type == FILE:
            size += e.size
            files += 1
        if e.mtime_ns is not None and (newest is None or e.mtime_ns > newest):
            newest = e.mtime_ns
    if top.type == FILE:
        size, files = top.size, 1
        h.update(f"\0{top.size}\0{top.mtime_ns}".encode())
    return Seen(top.type, size, files, newest, top.inode, h.hexdigest())


def make_plan(audit: AuditResult, *, only: set[str] | None = None, keep: set[str] | None = None,
              include_persistent: bool = False) -> Plan:
    """Select the reclaimable paths of the chosen rules; refuse backups and archives."""
    unknown = (set(only or ()) | set(keep or ())) - set(RULES)
    if unknown:
        raise PlanInvalid(f"unknown rule(s): {', '.join(sorted(unknown))}",
                          hint="rules are: " + ", ".join(RULES))
    # Naming an opt-in rule with --only is as explicit as --include-persistent.
    opt_in = {r for r, (_, is_opt_in, _) in RULES.items() if is_opt_in}
    rules = set(only) if only else set(DEFAULT_RULES) | (opt_in if include_persistent else set())
    rules -= set(keep or ())
    containers = []
    for ca in audit.containers:
        c = ca.container
        if not c.cleanable_in_place:
            what = "a device backup" if c.form == "backup" else f"a {c.store.kind} archive"
            raise ReadOnlyEvidence(
                f"{c.label} is {what}: read-only evidence, never modified",
                hint="clean the app's container on the device or simulator, or a folder copy of it")
        entries = c.entries()
        index = {e.path: i for i, e in enumerate(entries)}
        by_artifact = {a.path: a for a in ca.scan.artifacts}
        chosen: dict[str, str] = {}
        kept_back = []
        for f in ca.diagnosis.findings:
            if f.rule not in rules:
                continue
            for p in f.reclaimable_paths:
                if not may_act_on(p):
                    kept_back.append(f"{p}: protected path")
                    continue
                chosen.setdefault(p, f.rule)
        # A target inside another target goes with it: fold it into the outer one.
        outer: list[str] = []
        for p in sorted(chosen, key=lambda x: x.split("/")):  # tree order: descendants follow directly
            if not (outer and p.startswith(outer[-1] + "/")):
                outer.append(p)
        actions = []
        for p in outer:
            top = entries[index[p]]
            below = _subtree(entries, index[p], p) if top.type == DIR else []
            seen = target_state(top, below)
            freed = sum(e.size for e in ([top] if top.type == FILE else below) if e.type == FILE and e.nlink <= 1)
            a = by_artifact[p]
            actions.append(Action(p, freed, chosen[p], a.kind, seen, ca.fingerprints.content.get(p)))
        containers.append(ContainerPlan(str(c.store.real(c.root)) if c.root else str(c.store.base),
                                        c.bundle_id, c.form, tuple(actions), sum(a.bytes for a in actions),
                                        tuple(kept_back)))
    # Absolute, so `mlcache apply` finds the same container from any working folder.
    return Plan(os.path.realpath(audit.path), datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                tuple(sorted(rules)),
                include_persistent, tuple(containers))


def _subtree(entries: list[Entry], start: int, path: str) -> list[Entry]:
    """Entries below `path`, relative to it; in tree order they follow it directly."""
    out = []
    prefix = path + "/"
    for e in entries[start + 1:]:
        if not e.path.startswith(prefix):
            break
        out.append(Entry(e.path[len(prefix):], e.type, e.size, e.mtime, e.inode, e.dev, e.nlink, e.mtime_ns, e.target))
    return out
