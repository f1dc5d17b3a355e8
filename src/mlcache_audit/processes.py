"""What is running: the processes that use a container, and whether a pid that owns scratch is alive.

psutil is imported inside each function, so commands that never ask (JSON scans of offline copies,
--help, --version) do not pay for it.
"""

from __future__ import annotations

import os


def pid_running(pid: int) -> bool:
    """True when a process with this pid exists (psutil.pid_exists treats EPERM as alive, as sweepers
    testing kill(pid, 0) do). A recycled pid reads as alive: the safe side."""
    import psutil

    try:
        return psutil.pid_exists(pid)
    except (OSError, ValueError, OverflowError):
        return True


def processes_using(root: str) -> list[str]:
    """`name (pid N)` of every process with a file open or its working folder inside `root`."""
    import psutil

    prefix = root.rstrip(os.sep) + os.sep
    users = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            paths = [f.path for f in proc.open_files()]
            try:
                paths.append(proc.cwd())
            except (psutil.AccessDenied, psutil.ZombieProcess):
                pass
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
        if any(p == root or p.startswith(prefix) for p in paths):
            users.append(f"{proc.info['name']} (pid {proc.info['pid']})")
    return users


# Clients whose cache folder is not named like their process: Apple's and python.org's Pythons.
_ALIASES = {"com.apple.python3": ("python3", "Python"), "org.python.python": ("python", "python3", "Python"),
            "python": ("python", "python3", "Python")}


def client_process_names(client: str | None) -> set[str]:
    """The process names a per-process cache's client runs under (the folder's own name first)."""
    if not client:
        return set()
    names = {client, *_ALIASES.get(client, ())}
    if client.startswith("python3."):  # python3.12 and the like
        names |= {"python3", "Python"}
    return names


def processes_of_client(client: str | None) -> list[str]:
    """`name (pid N)` of every process whose name or executable is the client's; a process whose
    name cannot be read is counted (unsure means in use)."""
    import psutil

    names = client_process_names(client)
    if not names:
        return []
    users = []
    for proc in psutil.process_iter(["pid", "name", "exe"]):
        name, exe = proc.info.get("name"), proc.info.get("exe")
        if name in names or (exe and os.path.basename(exe) in names):
            users.append(f"{name} (pid {proc.info['pid']})")
    return users
