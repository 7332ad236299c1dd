"""Which process holds a run: a lock names its holder by host, pid and the pid's start time.

The start time tells a reused pid from the holder, so that a lock whose holder has died is
reclaimed; `Store.lock` keeps these locks in the store's `locks` table.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from runner.errors import RunNotPossible


class LockHeld(RunNotPossible):
    """Someone else is continuing this run (exit 3)."""


def _pid_start(pid: int) -> int:
    """When the process started (clock ticks since boot), or 0 where /proc cannot say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


_me: tuple[str, int, int] | None = None


def me() -> tuple[str, int, int]:
    """This process, as a lock names its holder (read once: a server takes a lock for every run)."""
    global _me
    if _me is None or _me[1] != os.getpid():  # a forked child is another process
        pid = os.getpid()
        _me = (socket.gethostname(), pid, _pid_start(pid))
    return _me


def alive(host: str, pid: int, pid_start: int) -> bool:
    """Whether a process is still there; one on another host is assumed to be."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not pid_start or _pid_start(pid) in (0, pid_start)


@dataclass
class Lock:
    run_id: str
    host: str
    pid: int
    since: float
    command: str

    def __str__(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.since))
        return f"`runner {self.command}` (pid {self.pid} on {self.host}, since {when})"
