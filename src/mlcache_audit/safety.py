"""Pure predicates that say which paths mlcache may ever act on; shared by plan and apply."""

from __future__ import annotations

import unicodedata

from mlcache_audit.sources.detect import IOS_METADATA_PLIST, MACOS_METADATA_PLIST
from mlcache_audit.vocab import PROTECTED_AREAS

# Never touched, whatever a plan or an option says.
PROTECTED_PREFIXES = PROTECTED_AREAS
PROTECTED_FILES = (IOS_METADATA_PLIST, MACOS_METADATA_PLIST, "AppDataInfo.plist")


def is_safe_relative(path: str) -> bool:
    """A non-empty relative `/`-separated path that cannot leave its root (no `..`, `.`, or empty part)."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\x00" in path or "\\" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _fold(path: str) -> str:
    """A name as macOS compares it: APFS and HFS+ volumes are usually case-insensitive and
    normalisation-insensitive, so `documents/`, `DOCUMENTS/` and an NFD `Documents/` are one folder."""
    return unicodedata.normalize("NFC", path).casefold()


_PREFIXES = tuple(_fold(p) for p in PROTECTED_PREFIXES)
_FILES = tuple(_fold(f) for f in PROTECTED_FILES)


def is_protected(path: str) -> bool:
    """Documents/, Library/Preferences/ and the container's metadata plists are never acted on."""
    folded = _fold(path)
    for prefix in _PREFIXES:
        if folded == prefix or folded.startswith(prefix + "/") or prefix.startswith(folded + "/"):
            return True
    return folded in _FILES or folded.rsplit("/", 1)[-1] in _FILES


def may_act_on(path: str) -> bool:
    """The one test every planned path must pass, at plan time and again right before acting."""
    return is_safe_relative(path) and not is_protected(path)


def refusal(scope, path: str, evidence) -> str | None:
    """Why a planned action is never acted on, whatever the disk says, or None: a protected or
    unsafe path, a path outside a per-process client's scope, or no evidence (a plan/1 action the
    re-plan does not hold)."""
    if not may_act_on(path):
        return "protected or unsafe path: never acted on"
    if scope and not any(path == sub or path.startswith(sub + "/") for sub in scope):
        return "outside the client's caches: never acted on"
    return "no evidence (plan/1)" if evidence is None else None
