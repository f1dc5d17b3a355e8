"""What `clean` would remove, as plain data: made from an audit, saved, reviewed, applied later."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from mlcache_audit.audit import AuditResult
from mlcache_audit.docfields import Fields
from mlcache_audit.domain import DEFAULT_RULES, REPAIR_RULES, RULES
from mlcache_audit.errors import PlanInvalid
from mlcache_audit.fsio import path_fields, path_from, readable, readable_document
from mlcache_audit.rules.units import link_mismatch, partial_units, target_facts, units_of
from mlcache_audit.safety import is_safe_relative, may_act_on
from mlcache_audit.scan import disk_freed
from mlcache_audit.sources.base import DIR, FILE, OTHER, SYMLINK
from mlcache_audit.state import Seen
from mlcache_audit.vocab import Form

PLAN_SCHEMA = "mlcache.plan/2"
PLAN_SCHEMAS = ("mlcache.plan/1", PLAN_SCHEMA)  # plans saved by earlier versions are still read


@dataclass(frozen=True)
class Action:
    path: str
    bytes: int
    rule: str
    kind: str
    seen: Seen
    content: str | None = None
    evidence: dict | None = None  # what makes it safe, about this target (rules.model.link); None: a plan/1 action
    disk_bytes: int | None = None  # what removing it gives back on disk (None: the store has no blocks)


@dataclass(frozen=True)
class ContainerPlan:
    root: str
    bundle_id: str | None
    form: str
    actions: tuple[Action, ...]
    reclaimable_bytes: int
    kept_back: tuple[str, ...] = ()  # reclaimable paths left out by the path rules, with the reason
    read_only: str | None = None  # a backup or archive: why nothing can be acted on, and what to do instead
    client: str | None = None  # whose caches (a per-process client shares its root with others)
    scope: tuple[str, ...] = ()  # when set, the only folders below the root that may be acted on
    live: str | None = None  # why an app may be running against it (it gets the in-use check), else None
    reclaimable_disk_bytes: int | None = None  # allocated bytes its actions give back together (scan.disk_freed)

    @property
    def key(self) -> str:
        """The container's identity: its root, and its client when several share the root."""
        return f"{self.root}\0{self.client}" if self.scope else self.root


@dataclass(frozen=True)
class Plan:
    path: str
    created: str
    rules: tuple[str, ...]
    include_persistent: bool
    containers: tuple[ContainerPlan, ...]
    schema: str = PLAN_SCHEMA
    notes: tuple[str, ...] = field(default=())
    discovery: dict | None = None  # {"home", "tmpdir"} when the containers were discovered, not given

    @property
    def reclaimable_bytes(self) -> int:
        return sum(c.reclaimable_bytes for c in self.containers)

    def to_dict(self) -> dict:
        return {
            "schema": self.schema, **path_fields(self.path), "created": self.created, "rules": list(self.rules),
            "include_persistent": self.include_persistent,
            "containers": [{
                **path_fields(c.root, "root"), "bundle_id": c.bundle_id, "form": c.form,
                "actions": [{**path_fields(a.path), "bytes": a.bytes, "rule": a.rule, "kind": a.kind,
                             "seen": asdict(a.seen), "content": a.content,
                             "evidence": readable_document(a.evidence) if a.evidence else None,
                             "disk_bytes": a.disk_bytes}
                            for a in c.actions],
                "reclaimable_bytes": c.reclaimable_bytes, "reclaimable_disk_bytes": c.reclaimable_disk_bytes,
                "kept_back": [readable(k) for k in c.kept_back],
                "read_only": c.read_only, "client": c.client, "scope": list(c.scope),
                "live": c.live is not None, "live_why": c.live,
            } for c in self.containers],
            "notes": [readable(n) for n in self.notes],
            "discovery": self.discovery,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict, source: str = "the plan file") -> Plan:
        """A plan read back from JSON; every field is type- and range-checked (PlanInvalid names the field)."""
        f = Fields(source, lambda msg: PlanInvalid(f"{msg}", hint="make a new plan with `mlcache clean --plan-out`"))
        if not isinstance(d, dict) or d.get("schema") not in PLAN_SCHEMAS:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise PlanInvalid(f"not an mlcache plan of a known format (schema {found!r}, expected {PLAN_SCHEMA!r})")
        containers = []
        for i, c in enumerate(f.seq(d.get("containers"), "containers")):
            where = f"containers[{i}]"
            c = f.obj(c, where)
            root = _path(f, c, "root", where)
            if not os.path.isabs(root):
                raise f.fail(f"{where}.root", "is not an absolute path")
            actions = []
            for j, a in enumerate(f.seq(c.get("actions"), f"{where}.actions")):
                aw = f"{where}.actions[{j}]"
                a = f.obj(a, aw)
                seen = f.obj(a.get("seen"), f"{aw}.seen")
                sw = f"{aw}.seen"
                actions.append(Action(
                    path=_path(f, a, "path", aw), bytes=f.integer(a, "bytes", aw),
                    rule=f.choice(a, "rule", aw, RULES), kind=f.text(a, "kind", aw),
                    seen=Seen(type=f.choice(seen, "type", sw, (FILE, DIR, SYMLINK, OTHER)),
                              size=f.integer(seen, "size", sw, low=-1), files=f.integer(seen, "files", sw, low=-1),
                              mtime_ns=f.integer(seen, "mtime_ns", sw, optional=True, low=-(1 << 63), high=1 << 63),
                              inode=f.integer(seen, "inode", sw, optional=True, high=1 << 64),
                              fingerprint=f.text(seen, "fingerprint", sw)),
                    content=f.text(a, "content", aw, optional=True),
                    evidence=_evidence(f, a, aw),
                    disk_bytes=f.integer(a, "disk_bytes", aw, optional=True)))
            containers.append(ContainerPlan(
                root=root, bundle_id=f.text(c, "bundle_id", where, optional=True), form=f.text(c, "form", where),
                actions=tuple(actions), reclaimable_bytes=f.integer(c, "reclaimable_bytes", where),
                kept_back=tuple(f.texts(c, "kept_back", where)),
                read_only=f.text(c, "read_only", where, optional=True),
                client=f.text(c, "client", where, optional=True),
                scope=tuple(_scope(f, c, where)), live=f.text(c, "live_why", where, optional=True),
                reclaimable_disk_bytes=f.integer(c, "reclaimable_disk_bytes", where, optional=True)))
        return cls(path=_path(f, d, "path", "the plan"), created=f.text(d, "created", "the plan"),
                   rules=tuple(f.texts(d, "rules", "the plan")),
                   include_persistent=f.flag(d, "include_persistent", "the plan"), containers=tuple(containers),
                   notes=tuple(f.texts(d, "notes", "the plan")), discovery=_discovery(f, d), schema=d["schema"])


def _evidence(f: Fields, a: dict, where: str) -> dict | None:
    """An action's evidence link, as make_plan wrote it: {"basis": text, "about": {fact: value}, refs...}."""
    ev = a.get("evidence")
    if ev is None:
        return None
    ev = f.obj(ev, f"{where}.evidence")
    f.text(ev, "basis", f"{where}.evidence")
    f.obj(ev.get("about"), f"{where}.evidence.about")
    return ev


def _scope(f: Fields, c: dict, where: str) -> list[str]:
    scope = f.texts(c, "scope", where)
    for i, sub in enumerate(scope):
        if not is_safe_relative(sub):
            raise f.fail(f"{where}.scope[{i}]", "is not a relative path inside the root")
    return scope


def _discovery(f: Fields, d: dict) -> dict | None:
    disc = d.get("discovery")
    if disc is None:
        return None
    disc = f.obj(disc, "discovery")
    home = f.text(disc, "home", "discovery")
    if not os.path.isabs(home):
        raise f.fail("discovery.home", "is not an absolute path")
    tmpdir = f.text(disc, "tmpdir", "discovery", optional=True)
    return {"home": home, "tmpdir": tmpdir}


def _path(f: Fields, d: dict, key: str, where: str) -> str:
    try:
        return path_from(d, key)
    except ValueError as exc:
        raise f.fail(f"{where}.{key}", str(exc).removeprefix(key + " ")) from None


def make_plan(audit: AuditResult, *, only: set[str] | None = None, keep: set[str] | None = None,
              include_persistent: bool = False) -> Plan:
    """Select the reclaimable paths of the chosen rules (backups and archives: a read-only preview)."""
    if not audit.plan_state:  # a programming error, never the user's: plans need the walk's states
        raise ValueError("make_plan needs an audit made with plan_state=True")
    unknown = (set(only or ()) | set(keep or ())) - set(RULES)
    if unknown:
        raise PlanInvalid(f"unknown rule(s): {', '.join(sorted(unknown))}",
                          hint="rules are: " + ", ".join(RULES))
    # Naming an opt-in rule with --only is as explicit as --include-persistent.
    opt_in = {r for r, (_, is_opt_in, _) in RULES.items() if is_opt_in} - REPAIR_RULES
    rules = set(only) if only else set(DEFAULT_RULES) | (opt_in if include_persistent else set())
    rules -= set(keep or ())
    containers = []
    for ca in audit.containers:
        c = ca.container
        read_only = None if c.cleanable_in_place else read_only_advice(c.form, c.store.kind)
        by_artifact = {a.path: a for a in ca.scan.artifacts}
        units = units_of(ca.scan.artifacts)
        chosen: dict[str, str] = {}
        evidence: dict[str, dict] = {}
        kept_back = []
        for f in ca.diagnosis.findings:
            if f.rule not in rules:
                continue
            for p in f.reclaimable_paths:
                if not c.in_scope(p):
                    kept_back.append(f"{p}: outside the client's caches")
                    continue
                if not may_act_on(p):
                    kept_back.append(f"{p}: protected path")
                    continue
                # The evidence must name this very target: its model, client, unit, pid, store or build.
                ev = f.links.get(p)
                wrong = "no evidence names it" if ev is None else link_mismatch(
                    ev["about"], target_facts(by_artifact[p], units[p], ca.fingerprints.content.get(p), c.client,
                                              ev["about"]))
                if wrong:
                    kept_back.append(f"{p}: {wrong}")
                    continue
                if p not in chosen:
                    chosen[p], evidence[p] = f.rule, {"rule": f.rule, **ev}
        # A framework's unit goes whole or not at all (rules/units.py).
        for p, why in sorted(partial_units(set(chosen), units).items()):
            kept_back.append(f"{p}: {why}")
            del chosen[p]
        # A target inside another target goes with it: fold it into the outer one. The artifacts are
        # in tree order (ScanResult), so a target's descendants follow it directly: no sort, no split.
        inside: dict[str, list] = {}  # each outer target's artifacts, nested ones (and targets) too
        owner = None
        for x in ca.scan.artifacts:
            if owner is not None and not x.path.startswith(owner + "/"):
                owner = None
            if owner is None and x.path in chosen:
                owner = x.path
                inside[owner] = []
            if owner is not None:
                inside[owner].append(x)
        outer = list(inside)
        actions = []
        blocks = ca.scan.total_disk_bytes is not None
        for p in outer:
            a = by_artifact[p]
            seen = a.state.seen(a.top)  # folded in during the walk: no per-file records were kept
            freed = (a.top.size if a.top.nlink <= 1 else 0) if a.top.type == FILE else a.state.freed
            actions.append(Action(p, freed, chosen[p], a.kind, seen, ca.fingerprints.content.get(p), evidence[p],
                                  disk_freed(inside[p]) if blocks else None))
        root = c.label if read_only else c.real_root
        containers.append(ContainerPlan(root, c.bundle_id, c.form, tuple(actions), sum(a.bytes for a in actions),
                                        tuple(kept_back), read_only, c.client_name, tuple(c.scope), c.live_why,
                                        disk_freed(x for p in outer for x in inside[p]) if blocks else None))
    # Absolute, so `mlcache apply` finds the same container from any working folder.
    return Plan(os.path.realpath(audit.path), datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                tuple(sorted(rules)), include_persistent, tuple(containers), discovery=audit.discovery)


def read_only_advice(form: str, store_kind: str) -> str:
    """Why a plan for this form is a preview only, and what to ask for instead."""
    if form == Form.BACKUP:
        return ("a device backup is read-only evidence, never modified; it also lacks tmp/ and Library/Caches. "
                "Ask the customer to offload and reinstall the app (or update it), or clean a container pulled "
                "from the device or simulator")
    return (f"a {store_kind} archive is read-only evidence, never modified; unpack it and clean the folder copy, "
            "or ask the customer to run the clean on the original container")
