"""The one narrow seam between container jobs and a container engine.

Container jobs (`executors/container.py`) describe a container with a
`ContainerSpec` and drive it through a `Backend`; `docker.py` is the Docker
engine behind it and `fake.py` a scripted stand-in for engine tests.  Every
error a backend meets leaves it as a `BackendError` whose message is for the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

DEFAULT_PIDS = 4096
DISAPPEARED = "the container disappeared: it was stopped or removed from outside runner"
KEPT_PREFIX = "runner-kept-"  # the name of a failed job's container left running for debugging


class BackendError(Exception):
    """The container engine refused or failed; the message is for the user."""


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    name: str
    labels: Mapping[str, str]
    mounts: tuple[tuple[str, str], ...]  # (host path, container path), read-write
    working_dir: str
    network: str = "bridge"
    cpus: float | None = None
    memory: int | None = None
    pids: int = DEFAULT_PIDS
    user: str | None = None
    command: tuple[str, ...] | None = None  # None: the container idles until removed, steps run by exec
    env: Mapping[str, str] = field(default_factory=dict)  # of `command`


class Backend(Protocol):
    """The one narrow seam between container jobs and a container engine."""

    async def ensure_image(self, image: str) -> None:
        """Make `image` available locally (pulling it if need be); BackendError if it cannot be."""

    async def start(self, spec: ContainerSpec) -> str:
        """Create and start a container that stays up until removed; return its id.

        Not cancellable: once the engine has created the container, its id is
        returned so that the caller can remove it.
        """

    async def create(self, spec: ContainerSpec) -> str:
        """Create a container that will run `spec.command`; return its id. Not cancellable."""

    async def run(self, container: str, output: Callable[[str, bytes], None]) -> int:
        """Start a created container, streaming its output; return its command's exit code.

        On cancellation the call returns at once; the process is ended when the
        container is removed.
        """

    async def exec(
        self, container: str, argv: list[str], env: Mapping[str, str], workdir: str, user: str | None,
        output: Callable[[str, bytes], None],
    ) -> int:
        """Run `argv` in the container, streaming output; return its exit code.

        On cancellation the call returns at once; the process is ended when the
        container is removed.
        """

    async def remove(self, container: str) -> None:
        """Kill and remove the container. Not cancellable."""

    async def out_of_memory(self, container: str) -> bool:
        """Whether the kernel killed a process in the container (running or exited) for memory."""

    async def running(self, container: str) -> bool:
        """Whether the container still exists and runs."""

    # Optional: `async digest(image) -> str`, the image's content digest (for cache
    # keys), `async image_path(image) -> str | None`, the PATH the image sets, and
    # `async keep(container, name)`, which renames a container left running for
    # debugging so that no reaper removes it.
