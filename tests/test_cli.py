"""The command itself: help, version, errors, silence of heavy imports, docs that match."""

import hashlib
import json
import subprocess
import sys

import pytest

from conftest import ROOT, run
from mlcache_audit.cli import cli

COMMANDS = sorted(cli.commands)


def test_every_command_has_help_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert set(COMMANDS) == {"apply", "check", "clean", "diff", "restore", "scan", "schema", "snapshot", "watch"}
    for name in COMMANDS:
        result = run(name, "--help")
        assert result.exit_code == 0 and len(cli.commands[name].help or "") > 20, name
        assert f"mlcache {name}" in readme, name


@pytest.mark.parametrize("name", ["mlcache", *COMMANDS])
def test_every_help_ends_with_examples_that_parse_as_printed(name):
    """Each example in --help is a command line click accepts: the command, its options and their
    values (choices, ranges) as printed. Nothing is run: the examples name folders of the reader's."""
    import shlex

    from mlcache_audit.helptext import examples

    result = run(*([] if name == "mlcache" else [name]), "--help")
    assert result.exit_code == 0 and "Examples:" in result.stdout
    assert "..." not in "".join(line for line in result.stdout.splitlines() if line.startswith("  ") and
                                line.split()[0] in COMMANDS)  # no summary cut short
    for line, what in examples(name):
        assert line in result.stdout and what in result.stdout
        words = shlex.split(line)
        assert words[0] == "mlcache"
        with cli.make_context("mlcache", words[1:] or ["--help"], resilient_parsing=not words[1:]) as ctx:
            if words[1:]:
                sub, cmd, rest = cli.resolve_command(ctx, words[1:])
                cmd.make_context(sub, rest, parent=ctx)


def test_every_option_whose_value_is_a_path_completes_as_one():
    """A path-valued option (its help names a file, folder or home) is a click.Path, which shells
    with click's completion complete as file names; commands that always take paths offer no
    --home or --tmpdir (they would be ignored)."""
    import click
    from click.shell_completion import CompletionItem

    seen = 0
    for name, cmd in cli.commands.items():
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.is_flag or p.hidden:
                continue
            text = (p.help or "").lower()
            if isinstance(p.type, (click.Choice, click.IntRange, click.FloatRange)) or "bytes" in text or \
                    "--launch" in p.opts:  # a shell command line, whose help says it is never read from a file
                continue
            if any(w in text for w in (" file", "folder", "snapshot", "home")):
                assert isinstance(p.type, click.Path), f"{name} {p.opts}"
                items = p.type.shell_complete(click.Context(cmd), p, "")
                assert items and isinstance(items[0], CompletionItem) and items[0].type in ("file", "dir")
                seen += 1
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        takes_no_path = any(isinstance(p, click.Argument) and not p.required for p in cmd.params)
        assert ("--home" in opts) == takes_no_path, name  # discovery options only where PATH may be left out
    assert seen >= 10


def test_every_rule_is_documented_in_the_readme():
    from mlcache_audit.rules import RULES

    readme = (ROOT / "README.md").read_text()
    for rule in RULES:
        assert f"`{rule}`" in readme, rule


def test_exit_code_table_matches_the_enum():
    from mlcache_audit.errors import ExitCode

    readme = (ROOT / "README.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} |" in readme, code


def test_version_and_module_entry_point():
    assert "mlcache, version" in run("--version").stdout
    done = subprocess.run([sys.executable, "-m", "mlcache_audit", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "mlcache, version" in done.stdout


def test_coremltools_stays_quiet_and_off_the_start_up_path(built):
    """Scanning a source model imports coremltools; none of its chatter reaches the screen."""
    code = ("import sys; from mlcache_audit.cli import main; sys.argv=['mlcache','--version'];\n"
            "try: main()\nexcept SystemExit: pass\n"
            "assert 'coremltools' not in sys.modules and 'numpy' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    done = subprocess.run([sys.executable, "-m", "mlcache_audit", "scan", str(built["recompile"]), "--format", "json"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    arts = json.loads(done.stdout)["containers"][0]["artifacts"]
    source = [a for a in arts if a["kind"] == "source_model"][0]
    assert source["model"]["outputs"] == ["scores", "boxes", "filter"]  # coremltools did read it


def test_internal_errors_are_one_line_unless_debug(built, monkeypatch):
    import mlcache_audit.audit as audit

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(audit, "audit_path", broken)
    result = run("scan", built["healthy"])
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "internal error: RuntimeError: boom" in result.stderr and "--debug" in result.stderr
    with pytest.raises(RuntimeError):
        run("--debug", "scan", built["healthy"])


def test_usage_errors_are_exit_2():
    assert run("scan").exit_code == 2
    assert run("clean", ".", "--only", "no-such-rule").exit_code == 2
    assert run("frobnicate").exit_code == 2


def test_committed_fixtures_are_what_the_script_builds(built):
    """fixtures/ is rebuilt by fixtures/build_fixtures.py; the two must not drift apart."""
    def digest_tree(top):
        out = {}
        for p in sorted(top.rglob("*")):
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(top))] = hashlib.sha256(p.read_bytes()).hexdigest()
        return out

    for key in ("recompile", "healthy", "studio", "simulator", "macos", "backup", "llm", "coreai", "home"):
        committed = ROOT / "fixtures" / built[key].name
        assert digest_tree(committed) == digest_tree(built[key]), key
    for key in ("healthy_zip", "studio_tgz"):  # reproducible archives: rebuilding changes no byte
        committed = ROOT / "fixtures" / built[key].name
        assert hashlib.sha256(committed.read_bytes()).digest() == hashlib.sha256(built[key].read_bytes()).digest(), key


def test_a_closed_pipe_is_not_reported_as_a_failed_budget(built):
    """`mlcache scan | head -1`: the reader leaves early; the exit must not be 1 (a budget failure)."""
    import signal

    # The JSON document is one write far larger than a pipe's buffer (64 KiB), so the write is still
    # blocked when the reader leaves: the broken pipe is certain, not a race.
    proc = subprocess.Popen([sys.executable, "-m", "mlcache_audit", "scan", str(built["recompile"]),
                             "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    assert proc.stdout.read(10) == b'{"schema":'
    proc.stdout.close()
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGPIPE
    assert proc.stderr.read() == b""
