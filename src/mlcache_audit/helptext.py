"""The examples each command's --help ends with. Every one is a command line that parses as
printed (tests/test_cli.py resolves each through click), with what it does beside it."""

from __future__ import annotations

_EXAMPLES = {
    "mlcache": [("mlcache scan container/", "what is there, verdict first"),
                ("mlcache clean container/", "what would go (changes nothing)"),
                ("mlcache scan", "every ML cache of this Mac")],
    "scan": [("mlcache scan container/", "one container, verdict first"),
             ("mlcache scan exports/*.zip --jobs 2", "customers' exports, two at a time"),
             ("mlcache scan container/ --format html -o report.html", "one page for a ticket"),
             ("mlcache scan", "every ML cache of this Mac, one client each")],
    "clean": [("mlcache clean container/", "what would go, and why (changes nothing)"),
              ("mlcache clean container/ --apply", "remove it (asks first)"),
              ("mlcache clean container/ --plan-out plan.json", "save the plan for review"),
              ("mlcache clean container/ --quarantine aside/ --apply --yes", "move aside instead of deleting")],
    "apply": [("mlcache apply plan.json", "carry out a reviewed plan (asks first)")],
    "restore": [("mlcache restore aside/", "put back what --quarantine aside/ moved")],
    "snapshot": [("mlcache snapshot container/ -o baseline.json", "a baseline for check and diff")],
    "diff": [("mlcache diff baseline.json container/", "what grew since the baseline")],
    "check": [("mlcache check container/ --baseline baseline.json --max-growth 1MB", "fail on growth"),
              ('mlcache check container/ --launch "bash launch.sh" --launches 5 --max-growth-per-launch 1MB',
               "fail on growth per launch")],
    "watch": [("mlcache watch container/ --process MyApp", "what each launch of MyApp adds"),
              ("mlcache watch container/ --interval 5 --count 3", "three changed 5 s intervals")],
    "schema": [("mlcache schema scan", "the JSON Schema of scan --format json")],
}


def examples(command: str) -> list[tuple[str, str]]:
    return list(_EXAMPLES[command])


def epilog(command: str, extra: str = "") -> str:
    """The help's closing block (\\b keeps click from re-wrapping it)."""
    lines = [f"  {c}\n      {what}" for c, what in _EXAMPLES[command]]
    return (extra + "\n\n" if extra else "") + "\b\nExamples:\n" + "\n".join(lines)


def _rules_help() -> str:
    from mlcache_audit.domain import RULES

    lines, line = [], "  "
    for rule in RULES:
        if len(line) + len(rule) > 76:
            lines.append(line.rstrip())
            line = "  "
        line += rule + ", "
    lines.append(line.rstrip(", ") + ".")
    return "\b\nRules (--only, --keep; what each does: docs/rules.md):\n" + "\n".join(lines)


RULES_HELP = _rules_help()
