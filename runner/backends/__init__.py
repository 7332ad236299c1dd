"""Container backends behind one seam (`base.Backend`): docker, a swarm, local processes, and a fake for engine tests.

`open_backend` is the one place that turns a backend's name into a backend;
the Docker SDK is imported only when the Docker or swarm backend is opened.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from runner.errors import UsageError

if TYPE_CHECKING:  # the command line imports this module: it stays light
    from runner.backends.base import Backend

BACKENDS = ("docker", "local", "swarm")
DEFAULT = "docker"
VARIABLE = "RUNNER_BACKEND"


def backend_name(option: str | None, environ=os.environ) -> str:
    """The backend `--backend` names, else RUNNER_BACKEND, else docker; never chosen by what is installed."""
    name = option or environ.get(VARIABLE) or DEFAULT
    if name not in BACKENDS:
        raise UsageError(f"{VARIABLE}={name!r} names no backend; it is one of {', '.join(BACKENDS)}")
    return name


def open_backend(name: str, threads: int = 4) -> Backend:
    """The backend called `name`; RunNotPossible if it cannot be had (no Docker engine answers)."""
    if name == "local":
        from runner.backends.local import LocalBackend

        return LocalBackend()
    if name == "swarm":
        from runner.backends.swarm import SwarmBackend, connect as connect_manager

        return SwarmBackend(connect_manager(threads), threads)
    from runner.backends.docker import DockerBackend, connect

    return DockerBackend(connect(threads), threads)
