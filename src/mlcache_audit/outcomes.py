"""What apply and restore report: one outcome per planned entry, per container, per run (plain data,
read by report/json.py and the renderers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlcache_audit.vocab import DONE, DONE_OR_WOULD, Status


@dataclass(frozen=True)
class Outcome:
    path: str
    bytes: int
    rule: str
    status: Status
    reason: str = ""
    disk_bytes: int | None = None  # allocated bytes it gave back (measured), or a preview's planned figure


@dataclass(frozen=True)
class ContainerOutcome:
    root: str
    bundle_id: str | None
    outcomes: tuple[Outcome, ...]
    recovered: tuple[str, ...] = ()
    client: str | None = None  # whose caches (per-process clients share one root)
    container_key: str | None = None  # identity.ContainerKey.text: what renderers and tools join on


@dataclass(frozen=True)
class ApplyResult:
    dry_run: bool
    quarantine: str | None
    containers: tuple[ContainerOutcome, ...]

    @property
    def freed_bytes(self) -> int:
        return sum(o.bytes for c in self.containers for o in c.outcomes if o.status in DONE)

    @property
    def freed_disk_bytes(self) -> int:
        return sum(o.disk_bytes or 0 for c in self.containers for o in c.outcomes if o.status in DONE)

    @property
    def would_free_bytes(self) -> int:
        return sum(o.bytes for c in self.containers for o in c.outcomes if o.status in (Status.WOULD_REMOVE, Status.WOULD_QUARANTINE))

    @property
    def complete(self) -> bool:
        """True when every planned entry was done (or, in a dry run, could be)."""
        return all(o.status in DONE_OR_WOULD
                   for c in self.containers for o in c.outcomes)


@dataclass(frozen=True)
class RestoreResult:
    outcomes: tuple[Outcome, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return all(o.status == Status.RESTORED for o in self.outcomes)


def container_outcome(cp, outcomes: tuple[Outcome, ...], recovered, key: str | None) -> ContainerOutcome:
    """The outcome of one container of a plan (`cp`: its ContainerPlan)."""
    return ContainerOutcome(cp.root, cp.bundle_id, outcomes, tuple(recovered), cp.client or cp.bundle_id, key)


def plan_key_text(cp) -> str | None:
    """The identity key of a plan's container as it is now (None for read-only evidence)."""
    from mlcache_audit.identity import key_of

    key = None if cp.read_only else key_of(cp.root, cp.client if cp.scope else None)
    return key.text if key else None
