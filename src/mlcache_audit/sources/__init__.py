"""Sources: open whatever form a container arrives in and present one read-only view of it."""

from mlcache_audit.sources.base import Container, Entry
from mlcache_audit.sources.detect import open_containers

__all__ = ["Container", "Entry", "open_containers"]
