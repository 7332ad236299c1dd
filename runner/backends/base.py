"""The one narrow seam between container jobs and a container engine.

Container jobs (`executors/container.py`) describe a container with a
`ContainerSpec` and drive it through a `Backend`; `docker.py` is the Docker
engine behind it, `local.py` runs the same steps as processes on this machine
(`--backend local`), and `fake.py` is a scripted stand-in for engine tests.
Every error a backend meets leaves it as a `BackendError` (or, outside a job,
`RunNotPossible`) whose message is for the user.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping

DEFAULT_PIDS = 4096
# What a build needs of Docker's default capabilities: apt drops to its _apt user
# (SETUID, SETGID) and chowns its directories (CHOWN, DAC_OVERRIDE, FOWNER); package
# managers keep set-id bits (FSETID).  Raw sockets, device nodes, chroot, file
# capabilities and the audit log are left out; a job may add them back.
DEFAULT_CAPABILITIES = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE",
})
DISAPPEARED = "the container disappeared: it was stopped or removed from outside runner"
KEPT_PREFIX = "runner-kept-"  # the name of a failed job's container left running for debugging
ON_NODE = " on node "  # between a kept container's name and its machine's, where a backend has several
# cgroup v2, then v1: where a container finds how often the kernel killed for memory.
_OOM_PROBE = "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null"


class BackendError(Exception):
    """The container engine refused or failed; the message is for the user."""


class OncePerImage:
    """Work on an image done once however many jobs ask for it; its error is given to each of them."""

    def __init__(self) -> None:
        self._done: dict[str, object] = {}  # image → a trio.Event, set once its work has ended
        self._errors: dict[str, str] = {}

    async def __call__(self, image: str, work: Callable[[str], Awaitable[None]]) -> None:
        import trio

        if image not in self._done:
            done = self._done[image] = trio.Event()
            try:
                await work(image)
            except BackendError as e:
                self._errors[image] = str(e)
            finally:
                done.set()
        await self._done[image].wait()
        if image in self._errors:
            raise BackendError(self._errors[image])


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
    capabilities: frozenset[str] = DEFAULT_CAPABILITIES  # every other one is dropped
    aliases: tuple[str, ...] = ()  # names it answers to on `network` (a network of the job's own)
    hidden: tuple[str, ...] = ()  # container paths inside the mounts covered by an empty read-only directory
    placement: tuple[str, ...] = ()  # a cluster's constraints on the node that runs it (`placement:`)


class Backend(ABC):
    """The one narrow seam between container jobs and a container engine.

    What every backend must do is abstract; what only some can do has a
    default here that says so, so that callers never ask whether a method exists.
    """

    @abstractmethod
    async def ensure_image(self, image: str) -> None:
        """Make `image` available locally (pulling it if need be); BackendError if it cannot be."""

    @abstractmethod
    async def start(self, spec: ContainerSpec) -> str:
        """Create and start a container that stays up until removed; return its id.

        Not cancellable: once the engine has created the container, its id is
        returned so that the caller can remove it.
        """

    @abstractmethod
    async def create(self, spec: ContainerSpec) -> str:
        """Create a container that will run `spec.command`; return its id. Not cancellable."""

    @abstractmethod
    async def run(self, container: str, output: Callable[[str, bytes], None]) -> int:
        """Start a created container, streaming its output; return its command's exit code.

        On cancellation the call returns at once; the process is ended when the
        container is removed.
        """

    @abstractmethod
    async def exec(
        self, container: str, argv: list[str], env: Mapping[str, str], workdir: str, user: str | None,
        output: Callable[[str, bytes], None],
    ) -> int:
        """Run `argv` in the container, streaming output; return its exit code.

        On cancellation the call returns at once; the process is ended when the
        container is removed.
        """

    @abstractmethod
    async def remove(self, container: str) -> None:
        """Kill and remove the container. Not cancellable."""

    @abstractmethod
    async def running(self, container: str) -> bool:
        """Whether the container still exists and runs."""

    async def out_of_memory(self, container: str) -> bool:
        """Whether the kernel killed a process in the container (running or exited) for memory."""
        return False

    async def killed_for_memory(self, container: str) -> bool:
        """Whether the running container's cgroup counts a kill for memory (asked through `exec`)."""
        chunks: list[bytes] = []
        try:
            await self.exec(container, ["sh", "-c", _OOM_PROBE], {}, "/", None, lambda s, d: chunks.append(d))
        except BackendError:
            return False
        for line in b"".join(chunks).decode(errors="replace").splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                return True
        return False

    async def digest(self, image: str) -> str:
        """What identifies the image's content, for cache keys: by default its name."""
        return image

    async def keep(self, container: str, name: str) -> bool:
        """Leave a failed job's container running under `name`, out of any reaper's reach.

        False when the backend cannot keep containers; BackendError if the container is gone.
        """
        return False

    async def placed(self, container: str) -> tuple[str, str] | None:
        """For a backend with several machines: the container's name on the one it runs on, and that machine's."""
        return None

    async def image_path(self, image: str) -> str | None:
        """The PATH the image sets for its processes, if it sets one (None: the engine's default)."""
        return None

    def host_path(self, path: str) -> str:
        """Where the engine finds `path` to mount it; RunNotPossible if it cannot."""
        return path

    async def check_storage(self, workspace: str, run_dir: str) -> None:
        """RunNotPossible if a machine that may run jobs does not see these directories at the same paths."""

    def check(self, workflow) -> list[str]:
        """Warnings to print before the run starts; WorkflowInvalid, naming each key, for
        settings of the workflow's container jobs that this backend cannot honour."""
        return []

    def close(self) -> None:
        """Release the connections to the engine, once the run has ended (a server opens a backend for each run)."""

    def reap(self) -> list[str]:
        """Remove what runners on this machine that were killed mid-run left behind; the ids removed."""
        return []

    def remove_run(self, run_id: str, kept_only: bool = False) -> list[str]:
        """Remove the run's containers (those kept for debugging, or all); the names removed."""
        return []

    # Services (a job's `services:`): a backend that can run them says so and has all four.
    supports_services = False

    async def create_network(self, name: str, labels: Mapping[str, str]) -> str:
        """Create a network of the job's own, on which containers reach each other by alias; its id."""
        raise BackendError("this container backend cannot run services")

    async def remove_network(self, network: str) -> None:
        """Remove the network, disconnecting what is still attached (a container kept for debugging).

        Not cancellable.
        """

    async def start_service(self, spec: ContainerSpec) -> str:
        """Create and start a container running its image's own entrypoint, with `spec.command`
        (None: the image's command) as its arguments; its id.  Not cancellable."""
        raise BackendError("this container backend cannot run services")

    async def logs(self, container: str, lines: int) -> list[str]:
        """The last `lines` lines the container wrote (standard output and error)."""
        return []
