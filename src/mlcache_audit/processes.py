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
