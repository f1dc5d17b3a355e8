"""The README's console transcripts, run as a new user pastes them: every `$` command of every
```console block, in order, in one shell started in a fresh copy of the clone. The two set-up
commands (```sh blocks) are what .ci/run runs, so they are not repeated here; a block that opens
with `$ # macOS only`, and a command whose comment says `macOS only`, are not run on Linux.

Each command must exit 0 or 1 (2 is a usage error: a README that does not paste), and every output
line the transcript shows must appear in what the command printed, in order; `[...]` stands for
text cut from the transcript. `/tmp/` in the README is this test's own folder, the clone is its
`fresh/` (the README's transcripts name /tmp/fresh as the clone)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from conftest import ROOT

CUT = "[...]"


@dataclass
class Step:
    command: str
    lines: list[str] = field(default_factory=list)  # the output the transcript shows
    block: int = 0


def readme_steps(text: str) -> list[Step]:
    """Every command of every console block, with the output shown after it, in README order."""
    steps: list[Step] = []
    for n, block in enumerate(re.findall(r"^```console\n(.*?)^```", text, re.S | re.M)):
        lines = block.splitlines()
        if lines and lines[0].strip() == "$ # macOS only":
            continue
        current: Step | None = None
        for line in lines:
            if line.startswith("$ "):
                current = Step(line[2:], [], n)
                steps.append(current)
            elif current is not None:
                current.lines.append(line.rstrip())
    return [s for s in steps if "macOS only" not in s.command.partition("#")[2]]


def _pattern(line: str) -> re.Pattern | None:
    """A transcript line as a pattern over one printed line (None: the line only marks a cut)."""
    bare = line.strip()
    if not bare or re.fullmatch(r"\[\.\.\..*\]", bare):
        return None
    if set(bare) <= set("━╇┃─┼"):  # a table's rule: its columns, however wide the last one is printed
        return re.compile(re.escape(line[:line.rfind("╇") + 1]) + "━*")
    return re.compile(".*".join(re.escape(part) for part in line.split(CUT)))


def missing_lines(shown: list[str], printed: list[str]) -> list[str]:
    """The shown lines that do not appear in `printed`, in order."""
    printed = [p.rstrip() for p in printed]
    at, missing = 0, []
    for line in shown:
        pattern = _pattern(line)
        if pattern is None:
            continue
        for i in range(at, len(printed)):
            if pattern.fullmatch(printed[i]):
                at = i + 1
                break
        else:
            missing.append(line)
    return missing


def test_the_parser_reads_cuts_and_skips_macos_blocks():
    text = ("```console\n$ a\none [...] two\n[... 3 more ...]\n$ b   # macOS only\n```\n"
            "```console\n$ # macOS only\n$ c\n```\n```sh\n$ d\n```\n")
    steps = readme_steps(text)
    assert [s.command for s in steps] == ["a"]
    assert missing_lines(steps[0].lines, ["x", "one and two"]) == []
    assert missing_lines(["one [...] two", "z"], ["one and two"]) == ["z"]
    assert missing_lines(["b", "a"], ["a", "b"]) == ["a"]  # order counts


@pytest.mark.skipif(sys.platform == "win32", reason="the README's commands are POSIX shell")
def test_every_readme_console_command_runs_as_shown(tmp_path):
    steps = readme_steps((ROOT / "README.md").read_text())
    assert len(steps) >= 10
    clone = tmp_path / "fresh"
    clone.mkdir()
    for part in ("fixtures", "scripts"):
        shutil.copytree(ROOT / part, clone / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (clone / ".venv").symlink_to(sys.prefix)  # the environment the set-up command made
    def here(text: str) -> str:  # the README's /tmp/ (where a path starts) is this test's folder
        return re.sub(r"(^|[\s\"'=(])/tmp/", lambda m: f"{m.group(1)}{tmp_path}/", text)

    script = []
    for i, step in enumerate(steps):  # each command sees the exit status of the one before it (echo $?)
        script.append(f"echo '@@step {i}'\n(exit ${{rc_:-0}})\n{here(step.command)}\nrc_=$?\necho \"@@rc {i} $rc_\"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCACHE_HOME", "FORCE_COLOR", "GITHUB_"))}
    env["NO_COLOR"] = "1"
    env.setdefault("PATH", os.defpath)
    done = subprocess.run(["bash", "--norc", "--noprofile"], input="".join(script), cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    out = done.stdout
    problems = []
    for i, step in enumerate(steps):
        m = re.search(rf"^@@step {i}\n(.*?)^@@rc {i} (\d+)$", out, re.S | re.M)
        assert m, f"step {i} ({step.command}) did not finish: {done.stderr[-2000:]}"
        printed = m.group(1).splitlines()
        rc = int(m.group(2))
        if rc not in (0, 1):
            problems.append(f"`{step.command}` exited {rc}: {done.stderr[-500:]}")
        shown = [here(line) for line in step.lines]
        lost = missing_lines(shown, printed)
        if lost:
            problems.append(f"`{step.command}` did not print {lost[:3]}\n  printed: {printed[:40]}")
    assert not problems, "\n".join(problems)
