"""Exit codes and the typed errors the core raises; the CLI turns them into one-line messages."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; the README's table mirrors this enum."""

    OK = 0
    CHECK_FAILED = 1  # a budget was exceeded, or an apply did not finish every planned entry
    BAD_INPUT = 2  # usage error or unreadable input: never reads as "the cache grew"
    INTERRUPTED = 130


class MlcacheError(Exception):
    """Base of every error that is the user's input, not a bug; carries a one-line message."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def __reduce__(self):
        # Pickled whole (a --jobs worker's error reaches the parent): Exception's default pickles only
        # `args`, which cannot rebuild a subclass with keyword-only fields.
        return _rebuild, (type(self), dict(self.__dict__))


def _rebuild(cls: type, state: dict) -> MlcacheError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class PathNotFound(MlcacheError):
    """The path given does not exist."""


class PathUnreadable(MlcacheError):
    """The path given exists but cannot be read (no permission on it or on a folder above it), or
    no container in it can be: `place` is what could not be read, `reason` why."""

    def __init__(self, message: str, hint: str | None = None, *, place: str, reason: str):
        super().__init__(message, hint)
        self.place, self.reason = place, reason


class NotAContainer(MlcacheError):
    """The path exists but holds no app container, backup or archive that mlcache recognises."""


class EncryptedBackup(MlcacheError):
    """A device backup whose Manifest.db is encrypted."""


class CorruptInput(MlcacheError):
    """A backup or archive that cannot be read at all (truncated database, broken archive)."""


class ArchiveLimitExceeded(MlcacheError):
    """An archive over the member-count or uncompressed-size cap (a zip bomb guard)."""


class ReadOnlyEvidence(MlcacheError):
    """An attempt to clean a backup or an archive, which are never modified."""


class PlanInvalid(MlcacheError):
    """A saved plan that is not a plan, has an unknown schema, or names another container."""


class BudgetConfigError(MlcacheError):
    """A budget, size or config value that cannot be understood."""


class DocumentInvalid(MlcacheError):
    """A plan, snapshot, baseline, config or manifest with a field that is missing or of the wrong type or range."""


class OutputNotWritable(MlcacheError):
    """A file mlcache was asked to write (a plan, snapshot, report, JUnit) cannot be written there."""


class ContainerBusy(MlcacheError):
    """Another mlcache run holds this container's lock (it is cleaning or restoring it now)."""


class StateNotWritable(MlcacheError):
    """mlcache's state folder (journals, locks) cannot be written, so nothing may be acted on."""
