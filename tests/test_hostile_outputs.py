"""Round three of hostile input, on what mlcache writes: an output over its own input, a full disk
on every output, and names from a container that would reach a terminal or a CI log raw."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run, tree_state
from mlcache_audit import docfields


# -- an output over an input --------------------------------------------------------------------
def _inputs_and_outputs(built, tmp_path):
    """(command args with an OUT placeholder, the input it must not destroy) for every command that
    writes and every option it writes with, the output naming the input or a place inside it."""
    zip_ = tmp_path / "healthy.zip"
    shutil.copy2(built["healthy_zip"], zip_)
    folder = tmp_path / "app"
    shutil.copytree(built["recompile"], folder, symlinks=True)
    snap = tmp_path / "base.json"
    assert run("snapshot", folder, "-o", snap).exit_code == 0
    plan = tmp_path / "plan.json"
    assert run("clean", folder, "--plan-out", plan).exit_code == 0
    inside = folder / "Library" / "Caches" / "report.json"
    cases = []
    for fmt in ("json", "jsonl", "text", "markdown", "html"):
        cases.append((["scan", zip_, "--format", fmt, "-o", "OUT"], zip_))
        cases.append((["scan", folder, "--format", fmt, "-o", "OUT"], inside))
    cases += [
        (["snapshot", zip_, "-o", "OUT"], zip_),
        (["clean", folder, "--plan-out", "OUT"], inside),
        (["clean", folder, "--format", "json", "-o", "OUT"], inside),
        (["apply", plan, "--yes", "-o", "OUT"], plan),
        (["apply", plan, "--yes", "-o", "OUT"], inside),
        (["diff", snap, folder, "-o", "OUT"], snap),
        (["check", folder, "--max-total", "1GB", "--baseline", snap, "--max-growth", "1GB", "-o", "OUT"], snap),
        (["check", folder, "--max-total", "1GB", "--junit", "OUT"], inside),
        (["check", zip_, "--max-total", "1GB", "--step-summary", "OUT"], zip_),
    ]
    return cases, folder


def test_an_output_over_an_input_or_inside_a_container_is_refused_before_anything_is_written(built, tmp_path):
    cases, folder = _inputs_and_outputs(built, tmp_path)
    for args, target in cases:
        link = tmp_path / "link-to-target"  # the same file reached through a symlink counts too
        for out in (target, link):
            if out == link:
                link.unlink(missing_ok=True)
                link.symlink_to(target)
            existed = target.exists()
            before = target.read_bytes() if existed else None
            state = tree_state(folder)
            result = run(*[out if a == "OUT" else a for a in args])
            assert result.exit_code == 2, (args, out, result.stdout, result.stderr)
            assert "nothing was written" in result.stderr and "internal error" not in result.stderr, args
            assert (target.read_bytes() if existed else None) == before or not existed, args
            assert target.exists() == existed, args
            assert tree_state(folder) == state, args  # nothing acted on either


def test_an_output_inside_a_discovered_container_is_refused(fx, tmp_path):
    home = fx("home")
    inside = next(home.glob("Library/Containers/*/Data")) / "Library" / "out.jsonl"
    for fmt in ("json", "jsonl"):
        result = run("scan", "--home", home, "--format", fmt, "-o", inside)
        assert result.exit_code == 2 and "lies inside the container" in result.stderr
        assert not inside.exists()


# -- a full disk on every output ----------------------------------------------------------------
class _FullFile(io.StringIO):
    """A text file whose disk fills at one step: write, flush or close."""

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage

    def _full(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write(self, text):
        if self.stage == "write":
            self._full()
        return super().write(text)

    def flush(self):
        if self.stage == "flush":
            self._full()

    def close(self):
        if self.stage == "close" and not self.closed:
            super().close()
            self._full()
        super().close()


@pytest.mark.parametrize("stage", ["write", "flush", "close"])
@pytest.mark.parametrize("option", ["-o", "--plan-out", "--junit", "--step-summary"])
def test_a_full_disk_on_any_output_is_one_line_and_exit_2(option, stage, fx, tmp_path, monkeypatch):
    root = fx("recompile")
    monkeypatch.setattr(docfields, "open_output", lambda path, mode="w": _FullFile(stage))
    out = tmp_path / "out.file"
    args = {"-o": ["scan", root, "--format", "json", "-o", out],
            "--plan-out": ["clean", root, "--plan-out", out],
            "--junit": ["check", root, "--max-total", "1GB", "--junit", out],
            "--step-summary": ["check", root, "--max-total", "1GB", "--step-summary", out]}[option]
    result = run(*args)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("mlcache: error: cannot write") and "No space left on device" in lines[-1]
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_standard_output_on_a_full_disk_is_one_line_and_exit_2(built):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    for args in (["scan", str(built["recompile"]), "--format", "json"], ["scan", str(built["recompile"])],
                 ["schema", "scan"], ["--version"]):
        with open("/dev/full", "w") as full:
            proc = subprocess.run([sys.executable, "-m", "mlcache_audit", *args], stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip().splitlines() == ["mlcache: error: cannot write the output: No space left on device"], args


def test_a_full_disk_on_the_journal_acts_on_nothing_or_says_what_was_done(fx, monkeypatch):
    from mlcache_audit import journal as journal_mod

    real = journal_mod.Journal.write
    for fail_at in range(1, 12):
        root = fx("recompile")
        calls = {"n": 0}

        def write(self, record, sync=True, real=real, calls=calls, fail_at=fail_at):
            calls["n"] += 1
            if calls["n"] >= fail_at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(self, record, sync)

        monkeypatch.setattr(journal_mod.Journal, "write", write)
        before = tree_state(root)
        result = run("clean", root, "--apply", "--yes", "--format", "json")
        monkeypatch.setattr(journal_mod.Journal, "write", real)
        assert result.exit_code in (0, 1) and "internal error" not in result.stderr, result.stderr
        doc = json.loads(result.stdout)
        after = tree_state(root)
        for c in doc["containers"]:
            for o in c["outcomes"]:
                gone = not any(k == o["path"] or k.startswith(o["path"] + "/") for k in after)
                was = any(k == o["path"] for k in before)
                if o["status"] == "removed":
                    assert gone, o
                elif was and o["status"] == "skipped":
                    assert not gone, o  # skipped means untouched
        shutil.rmtree(root.parent)


# -- names that would reach a terminal raw ------------------------------------------------------
HOSTILE_PIECES = ["\n::stop-commands::x", "\r", "\x1b[31m", "\x1b]0;title\x07", "::error::forged", "\u2028",
                  "\x9b2J", "\udcff\udcfe", "[bold]", "<b>x<b>", "|", "`"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(HOSTILE_PIECES), min_size=1, max_size=3),
       where=st.sampled_from(["client", "tmp", "device"]))
def test_names_from_a_container_never_reach_a_screen_raw(pieces, where, built, tmp_path_factory):
    name = "app" + "".join(pieces)
    base = tmp_path_factory.mktemp("names")
    home = base / "home"
    shutil.copytree(built["home"], home, symlinks=True)
    caches = home / "Library" / "Caches"
    if where == "client":
        os.rename(caches / "python", os.fsencode(str(caches / name)))
    elif where == "tmp":
        sims = sorted(home.glob("Library/Developer/CoreSimulator/Devices/*/data/Containers/Data/Application/*"))
        src = next((built["recompile"] / "tmp").glob("*.mlmodelc"))
        shutil.copytree(os.fsencode(str(src)), os.fsencode(str(sims[0] / "tmp" / (name + ".mlmodelc"))))
    else:
        import plistlib

        for plist in home.glob("Library/Developer/CoreSimulator/Devices/*/device.plist"):
            doc = plistlib.loads(plist.read_bytes())
            plist.write_bytes(plistlib.dumps({**doc, "name": name.encode("utf-8", "surrogateescape")
                                              .decode("utf-8", "replace")}, fmt=plistlib.FMT_BINARY))
    for args in (["scan", "--home", home], ["scan", "--home", home, "--format", "markdown"],
                 ["scan", "--home", home, "--format", "html"], ["clean", "--home", home],
                 ["clean", "--home", home, "--format", "markdown"]):
        result = run(*args)
        assert result.exit_code == 0, (args, result.stderr)
        for stream in (result.stdout, result.stderr):
            assert "\x1b" not in stream and "\r" not in stream and "\x9b" not in stream and "\u2028" not in stream
            assert not any(line.startswith("::") for line in stream.splitlines()), args
    shutil.rmtree(base)
