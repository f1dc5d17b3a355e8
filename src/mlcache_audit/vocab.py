"""The domain's words, each spelled once: container forms, store kinds, outcome statuses, journal
events, severities and progress stages. StrEnum members are the strings the JSON documents carry
(`Status.REMOVED == "removed"`), so documents and renderers read exactly as before."""

from __future__ import annotations

from enum import StrEnum


class Form(StrEnum):
    """The form a container came in (shared/domain/CONTAINER-FORMS.md)."""

    RAW = "raw"
    XCAPPDATA = "xcappdata"
    DEVICE_HUB = "device-hub"
    SIMULATOR = "simulator"
    MACOS_CONTAINER = "macos-container"
    GROUP_CONTAINER = "group-container"
    PROCESS_CACHE = "process-cache"
    BACKUP = "backup"


LIVE_FORMS = frozenset({Form.SIMULATOR, Form.MACOS_CONTAINER, Form.GROUP_CONTAINER, Form.PROCESS_CACHE})


class StoreKind(StrEnum):
    """How a container's bytes are read: a folder on disk, or the members of an archive."""

    FOLDER = "folder"
    ZIP = "zip"
    TAR = "tar"


class Status(StrEnum):
    """How one planned entry ended."""

    REMOVED = "removed"
    QUARANTINED = "quarantined"
    WOULD_REMOVE = "would remove"
    WOULD_QUARANTINE = "would quarantine"
    RESTORED = "restored"
    SKIPPED = "skipped"
    FAILED = "failed"


DONE = frozenset({Status.REMOVED, Status.QUARANTINED})
DONE_OR_WOULD = DONE | {Status.WOULD_REMOVE, Status.WOULD_QUARANTINE}


class Event(StrEnum):
    """A record of the apply journal."""

    JOURNAL = "journal"
    START = "start"
    BEGIN = "begin"
    RENAMED = "renamed"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class Stage(StrEnum):
    """What the progress display hears of: counts of entries walked and bytes hashed."""

    WALKED = "walked"
    HASHED = "hashed"


# A container's areas, in the order a path is matched against them (the most specific first within
# Library), and the subsets each stage needs: all of them are this one list.
AREAS = ("Documents", "Library/Application Support", "Library/Caches", "Library/Preferences", "Library", "tmp")
STANDARD_DIRS = tuple(a for a in AREAS if "/" not in a)  # a container's top level: Documents, Library, tmp
OBSERVABLE_AREAS = ("tmp", "Library/Caches")  # areas a form may lack: unknown then, never clean
PROTECTED_AREAS = ("Documents", "Library/Preferences")  # never acted on
