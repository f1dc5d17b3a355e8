"""The house's shape, kept so: no module over 450 lines, no import cycle, the scan package's layers
one-way, and apply.py the only module that deletes or moves anything in a container."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "src" / "mlcache_audit"
MAX_LINES = 450
# Modules that remove or rename files of their own in mlcache's state folder, never a container's.
OWN_STATE = {"journal.py": "its journal file (and a damaged one set aside)", "locks.py": "a write probe"}
MOVERS = {"unlink", "remove", "rename", "renames", "replace", "rmdir", "removedirs", "rmtree", "move"}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = path
    return out


def _top_level_imports(path: Path, name: str) -> set[str]:
    """Modules of the package imported when `name` is imported (not inside functions, not TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("mlcache_audit"))
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    mod = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([mod] if mod else []))
                if mod.startswith("mlcache_audit"):
                    found.add(mod)
                    found.update(f"{mod}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
    visit(tree.body)
    return found


def test_no_module_is_over_450_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()
            if len(p.read_text().splitlines()) > MAX_LINES}
    assert not long, long


def test_no_import_cycle():
    mods = modules()
    graph = {n: {m for m in _top_level_imports(p, n) if m in mods and m != n} for n, p in mods.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def dfs(n):
        state[n] = 1
        path.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
            if m not in state:
                dfs(m)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            dfs(n)


def test_the_scan_packages_layers_are_one_way():
    """model <- classify <- account <- walk, split; describe and identity beside; no module of the
    package imports the package itself (its __init__), at the top or inside a function."""
    layers = {"model": 0, "classify": 1, "identity": 1, "account": 2, "describe": 2, "walk": 3, "split": 3}
    for name, layer in layers.items():
        path = PKG / "scan" / f"{name}.py"
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlcache_audit.scan"):
                assert node.module != "mlcache_audit.scan", f"scan/{name}.py imports the package's __init__"
                other = node.module.rsplit(".", 1)[1]
                if other in layers:
                    assert layers[other] < layer or (name, other) == ("split", "walk"), \
                        f"scan/{name}.py imports scan/{other}.py against the layers"


def test_only_apply_deletes_or_moves():
    for path in modules().values():
        rel = path.relative_to(PKG).as_posix()
        if rel == "apply.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            attr, owner = node.func.attr, ast.unparse(node.func.value)
            if attr not in MOVERS:
                continue
            if attr == "replace" and owner not in ("os",):
                continue  # str.replace, dataclasses.replace
            if attr == "move" and owner != "shutil":
                continue
            assert rel in OWN_STATE, f"{rel}:{node.lineno} calls {owner}.{attr}: only apply.py deletes or moves"


def test_the_places_mlcache_writes_are_one_object():
    from mlcache_audit.places import Places

    home = Path("/Users/ada")
    mac = Places.from_environ({}, platform="darwin", home=home)
    assert mac.state == home / "Library/Application Support/mlcache" and mac.cache == home / "Library/Caches/mlcache"
    linux = Places.from_environ({"XDG_STATE_HOME": "/x/state"}, platform="linux", home=home)
    assert linux.state == Path("/x/state/mlcache") and linux.cache == home / ".cache/mlcache"
    moved = Places.from_environ({"MLCACHE_STATE_DIR": "/s", "MLCACHE_CACHE_DIR": "/c"}, platform="darwin", home=home)
    assert (moved.state, moved.cache, moved.journals, moved.locks) == (Path("/s"), Path("/c"), Path("/s/journals"),
                                                                       Path("/s/locks"))


def test_color_choice_precedence():
    """--color beats NO_COLOR, which beats FORCE_COLOR, which beats terminal detection."""
    from mlcache_audit.cli import color_choice

    assert color_choice(None, {}) is None
    assert color_choice(None, {"FORCE_COLOR": "1"}) is True
    assert color_choice(None, {"NO_COLOR": "1", "FORCE_COLOR": "1"}) is False
    assert color_choice("always", {"NO_COLOR": "1"}) is True
    assert color_choice("never", {"FORCE_COLOR": "1"}) is False
    assert color_choice("auto", {"NO_COLOR": "1"}) is None


def test_color_always_and_never_reach_the_output(built, monkeypatch):
    from conftest import run

    assert "\x1b[" in run("--color", "always", "scan", built["recompile"]).stdout
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[" in run("scan", built["recompile"]).stdout
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in run("scan", built["recompile"]).stdout
    assert "\x1b[" not in run("--color", "never", "scan", built["recompile"]).stdout


def test_evidence_gathering_takes_its_readers(built):
    """The rules stay pure: what they need from outside (the watch history, the process table)
    is gathered by readers handed in, so a test can say what runs."""
    from mlcache_audit.audit import gather_evidence
    from mlcache_audit.scan import scan_container
    from mlcache_audit.sources import open_containers

    c = open_containers(str(built["home"] / "Library" / "Developer" / "CoreSimulator"))[0]
    seen = []
    ev = gather_evidence(scan_container(c), launches_of=lambda client: seen.append(client) or {"tmp/x": 1},
                         pid_running=lambda pid: True)
    assert seen and ev.launches == {"tmp/x": 1} and ev.running_pids is not None


def test_counts_read_in_words():
    from mlcache_audit.units import plural

    assert [plural(1, "file"), plural(2, "file"), plural(1, "copy"), plural(3, "copy"), plural(0, "entry"),
            plural(1, "launch")] == ["1 file", "2 files", "1 copy", "3 copies", "0 entries", "1 launch"]
