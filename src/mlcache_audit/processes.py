"""What is running: the processes that use a container, and whether a pid that owns scratch is alive.

psutil is imported inside each function, so commands that never ask (JSON scans of offline copies,
--help, --version) do not pay for it. mlcache's own process and the workers it started are never
counted as users of anything (its parent, a shell or a test runner, is: it is another program).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def own_pids() -> set[int]:
    """This process and the worker processes it started (walk and --jobs workers)."""
    pids = {os.getpid()}
    try:
        import multiprocessing

        pids |= {p.pid for p in multiprocessing.active_children() if p.pid}
    except (ImportError, OSError):
        pass
    return pids


def pid_running(pid: int) -> bool:
    """True when a process with this pid exists (psutil.pid_exists treats EPERM as alive, as sweepers
    testing kill(pid, 0) do). A recycled pid reads as alive: the safe side."""
    import psutil

    try:
        return psutil.pid_exists(pid)
    except (OSError, ValueError, OverflowError):
        return True


@dataclass(frozen=True)
class OpenFiles:
    """Every process's open files and working folder, read once (psutil), mlcache's own left out."""

    paths: list[tuple[str, list[str]]]  # ("name (pid N)", paths)
    unchecked: list[str]  # processes of this user whose open files could not be read
    checked_own_user: int = 0  # how many processes of this user could be read

    @property
    def blind(self) -> str | None:
        """Why the in-use check cannot run at all (no process of this user could be read: a sandbox,
        a missing permission), or None. A few unreadable system processes do not make it blind."""
        if self.unchecked and not self.checked_own_user:
            return f"the open files of {', '.join(self.unchecked[:3])} cannot be read (access denied)"
        return None

    @classmethod
    def now(cls) -> OpenFiles:
        import psutil

        mine = own_pids()
        uid = os.getuid() if hasattr(os, "getuid") else None
        found, unchecked, own_user = [], [], 0
        for proc in psutil.process_iter(["pid", "name", "uids"]):
            pid, name = proc.info["pid"], proc.info.get("name")
            if pid in mine:
                continue
            try:
                paths = [f.path for f in proc.open_files()]
                try:
                    paths.append(proc.cwd())
                except (psutil.AccessDenied, psutil.ZombieProcess):
                    pass
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            except (psutil.AccessDenied, OSError):
                uids = proc.info.get("uids")
                if uid is not None and uids is not None and uids.real == uid:
                    unchecked.append(f"{name} (pid {pid})")
                continue
            uids = proc.info.get("uids")
            own_user += uid is not None and uids is not None and uids.real == uid
            found.append((f"{name} (pid {pid})", paths))
        return cls(found, unchecked, own_user)

    def using(self, root: str) -> list[str]:
        """`name (pid N)` of the processes with a file open or their working folder at or inside `root`."""
        prefix = root.rstrip(os.sep) + os.sep
        return [who for who, paths in self.paths if any(p == root or p.startswith(prefix) for p in paths)]


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


def processes_named(names: set[str]) -> list[tuple[int, str]]:
    """(pid, name) of every process but mlcache's own whose name or executable's name is in `names`."""
    import psutil

    mine = own_pids()
    found = []
    for proc in psutil.process_iter(["pid", "name", "exe"]):
        name, exe, pid = proc.info.get("name"), proc.info.get("exe"), proc.info["pid"]
        if pid not in mine and (name in names or (exe and os.path.basename(exe) in names)):
            found.append((pid, name))
    return found


def processes_of_client(client: str | None) -> list[str]:
    """`name (pid N)` of every process whose name or executable is the client's."""
    names = client_process_names(client)
    return [f"{name} (pid {pid})" for pid, name in processes_named(names)] if names else []
