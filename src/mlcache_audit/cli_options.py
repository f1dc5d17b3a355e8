"""The options several commands share, parsed into typed values: PATH arguments (never empty,
completed as file names), the source options (one SourceOptions), the acting and output options."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from mlcache_audit.errors import PathNotFound


def _nonempty_path(ctx, param, value):
    """An empty PATH (an unset shell variable) is an error, never the current folder."""
    if value == "":
        container = param.param_type_name == "argument" and param.name in ("path", "old", "new")
        raise PathNotFound(f"{param.human_readable_name} is empty (an unset shell variable?)",
                           hint="give a container folder, an .xcappdata, a backup or an archive" if container
                           else "give a file or folder name")
    return value


def _nonempty_file(ctx, param, value):
    """The same for a file or folder option, taken as text so that an empty value is seen as empty."""
    return None if value is None else Path(_nonempty_path(ctx, param, value))


def _path_argument(name: str, required: bool = True):
    """A PATH argument: never empty, completed as a file or folder name by the shell."""
    return click.argument(name, type=click.Path(), callback=_nonempty_path, required=required)


def _nonempty_paths(ctx, param, values):
    return tuple(_nonempty_path(ctx, param, v) for v in values)


def _paths_argument(fn):
    """PATH...: any number of containers (none: discover this Mac), scanned one after the other or,
    with --jobs N, in N processes."""
    fn = click.option("--jobs", "-j", type=click.IntRange(1), default=1, show_default=True,
                      help="With several PATHs: scan this many at once, in separate processes.")(fn)
    return click.argument("paths", metavar="[PATH]...", nargs=-1, type=click.Path(), callback=_nonempty_paths)(fn)


def _path_option(*names: str, **kw):
    """An option whose value is a file or folder: never empty, completed as a path by the shell."""
    return click.option(*names, type=click.Path(), callback=_nonempty_file, **kw)


def source_options(fn=None, *, discovery: bool = True):
    """Options shared by every command that reads a container; handed on as one SourceOptions.
    `discovery`: the command may run with no PATH, so it takes --home and --tmpdir (a command that
    always names its paths, diff or watch, does not offer them)."""
    if fn is None:
        return functools.partial(source_options, discovery=discovery)

    def wrapper(*args, bundle_id, no_hash_cache, max_archive_members, max_archive_bytes, max_hash_bytes,
                max_containers, home=None, tmpdir=None, **kwargs):
        from mlcache_audit.commands import SourceOptions
        from mlcache_audit.units import parse_size

        source = SourceOptions(bundle_id, not no_hash_cache, max_archive_members, parse_size(max_archive_bytes),
                               parse_size(max_hash_bytes), str(home) if home else None, str(tmpdir) if tmpdir else None,
                               max_containers)
        return fn(*args, source=source, **kwargs)

    wrapper = functools.wraps(fn)(wrapper)
    if discovery:
        wrapper = _path_option("--tmpdir", help="With no PATH: the temp folder holding MPSGraph scratch (default "
                                                "$TMPDIR on your own Mac).")(wrapper)
        wrapper = _path_option("--home", envvar="MLCACHE_HOME", help="With no PATH: discover in this home folder "
                                                                     "(a copied one) instead of yours; MLCACHE_HOME.")(wrapper)
    for option in reversed([
        click.option("--bundle-id", help="Only the container of this app (a backup or simulator holds many)."),
        click.option("--no-hash-cache", is_flag=True,
                     help="Do not read or write the content-hash cache (~/.cache/mlcache, ~/Library/Caches/mlcache "
                          "on macOS; MLCACHE_CACHE_DIR moves it)."),
        click.option("--max-archive-members", type=click.IntRange(1), default=1_000_000, show_default=True,
                     help="Refuse archives with more members than this (zip-bomb guard)."),
        click.option("--max-archive-bytes", default="256GiB", show_default=True,
                     help="Refuse archives that declare more uncompressed bytes than this (zip-bomb guard)."),
        click.option("--max-hash-bytes", default="64GiB", show_default=True,
                     help="Hash at most this many bytes in one run; past it, possible copies are left unjudged."),
        click.option("--max-containers", type=click.IntRange(1), default=5_000, show_default=True,
                     help="Stop the search for containers in one PATH after this many (a note says where it stopped)."),
    ]):
        wrapper = option(wrapper)
    return wrapper


def acting_options(fn):
    fn = _path_option("--quarantine", help="Move entries into this folder (on the "
                      "container's volume, with a manifest) instead of deleting them.")(fn)
    return click.option("--yes", is_flag=True, help="Do not ask; needed to act when standard input is not a "
                        "terminal.")(fn)


def output_option(fn):
    return _path_option("-o", "--output",
                        help="Write the document to this file instead of standard output.")(fn)


def why_option(fn):
    return click.option("--why", is_flag=True,
                        help="Show the evidence of every path that can go (text and markdown; JSON always has it).")(fn)
