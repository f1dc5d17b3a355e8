"""Caps on how much one PATH may hold: the zip-bomb guards (what an archive may declare before
mlcache refuses to read it, --max-archive-*) and the container search (--max-containers). A cap
that drops work always says so, in the output and in the JSON.

Apart from sources/archive.py so that reading a folder never imports zipfile and tarfile."""

DEFAULT_MAX_MEMBERS = 1_000_000
DEFAULT_MAX_BYTES = 256 * 1024**3
DEFAULT_MAX_CONTAINERS = 5_000
PROBES_PER_CONTAINER = 8  # folders the container search may look into per container it may find
