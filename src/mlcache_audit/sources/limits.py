"""Zip-bomb guards: what an archive may declare before mlcache refuses to read it (--max-archive-*).

Apart from sources/archive.py so that reading a folder never imports zipfile and tarfile."""

DEFAULT_MAX_MEMBERS = 1_000_000
DEFAULT_MAX_BYTES = 256 * 1024**3
