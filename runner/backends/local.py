"""Container jobs as processes on this machine (`--backend local`), for machines without Docker.

Nothing is sandboxed: a step runs as runner's user, with this machine's network
and programs, in the workflow's directory itself (the directory Docker mounts
at /workspace).  Container jobs still speak of /workspace and /runner (the
node's scratch directory): wherever one of them begins an argument, an
environment value or the working directory, it is translated to the directory
it stands for.  A script that names /workspace in its own text is not rewritten.

Each step runs in a session of its own, so that a timeout or a cancellation
kills everything it started, and removing the job's "container" kills what its
steps left running in the background, as removing a container does.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Mapping

import trio

from runner.backends.base import DISAPPEARED, Backend, BackendError, ContainerSpec
from runner.errors import Problem, WorkflowInvalid

# What a step sees of runner's own environment. The rest, secrets among it, stays
# out, as it stays out of a container.
PASSED = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM")
DRAIN = 0.1  # seconds to read what a step's background processes print after it has exited
CHUNK = 64 * 1024
NOT_SANDBOXED = (
    "warning: --backend local: container jobs run as processes on this machine, as your user, "
    "with its network, files and programs: nothing is sandboxed"
)
INSTEAD = "run with --backend docker, or remove the key"


@dataclass
class _Job:
    """What stands for a job's container: its spec, and the process groups its steps started."""

    spec: ContainerSpec
    paths: list[tuple[str, str]]  # (in the container, on this machine), longest first
    groups: set[int] = field(default_factory=set)


class LocalBackend(Backend):
    def __init__(self, environ: Mapping[str, str] = os.environ):
        self.base_env = {name: environ[name] for name in PASSED if name in environ}
        self._jobs: dict[str, _Job] = {}
        self._ids = itertools.count(1)

    def check(self, workflow) -> list[str]:
        problems = []
        for w in workflow.workflows():
            for job in w.jobs.values():
                c = job.container
                if c is None:
                    continue
                refused = {
                    "network": c.network == "none" and "cannot honour `network: none`: jobs use this machine's network",
                    "resources": any(v is not None for v in (c.resources.cpus, c.resources.memory, c.resources.pids))
                    and "cannot enforce `resources`: jobs are processes without limits",
                    "user": c.user is not None and "cannot honour `user`: jobs run as runner's own user",
                    "capabilities": (c.capabilities.add or c.capabilities.drop)
                    and "cannot honour `capabilities`: jobs run with runner's own privileges",
                    "services": bool(c.services) and "cannot run `services`: it starts no containers",
                }
                for key, message in refused.items():
                    if message:
                        where = c.where.get(key, job.location)
                        problems.append(Problem(where, f"--backend local {message}; {INSTEAD}"))
                if c.placement:
                    problems.append(Problem(
                        c.where.get("placement", job.location),
                        "--backend local cannot honour `placement`: it has no cluster to place jobs on; "
                        "run with --backend swarm, or remove the key",
                    ))
        if problems:
            raise WorkflowInvalid(problems)
        images = sorted(workflow.images())
        named = f" ({', '.join(images)})" if images else ""
        return [NOT_SANDBOXED, f"note: --backend local ignores `image`{named}: steps run with this machine's programs"]

    async def ensure_image(self, image: str) -> None:
        await trio.lowlevel.checkpoint()

    async def digest(self, image: str) -> str:
        return "local"  # the image is not used: cached results must not depend on it

    async def start(self, spec: ContainerSpec) -> str:
        await trio.lowlevel.checkpoint()
        container = f"local-{next(self._ids)}"
        paths = sorted(((inside, ours) for ours, inside in spec.mounts), key=lambda p: len(p[0]), reverse=True)
        self._jobs[container] = _Job(spec, paths)
        return container

    async def create(self, spec: ContainerSpec) -> str:
        return await self.start(spec)

    async def run(self, container: str, output: Callable[[str, bytes], None]) -> int:
        spec = self._job(container).spec
        return await self.exec(container, list(spec.command or ()), {}, spec.working_dir, spec.user, output)

    async def exec(
        self,
        container: str,
        argv: list[str],
        env: Mapping[str, str],
        workdir: str,
        user: str | None,
        output: Callable[[str, bytes], None],
    ) -> int:
        job = self._job(container)
        here = lambda value: _translate(value, job.paths)  # noqa: E731
        cwd = here(workdir)
        if not os.path.isdir(cwd):
            raise BackendError(f"the working directory {workdir} does not exist on this machine")
        environment = {**self.base_env, **{k: here(v) for k, v in {**job.spec.env, **env}.items()}}
        command = [here(part) for part in argv]
        try:
            process = await trio.lowlevel.open_process(
                command, cwd=cwd, env=environment, start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        except OSError as e:
            # As a shell reports a program it cannot run, with its exit status.
            output("stderr", f"runner: cannot run {command[0]} on this machine: {e.strerror}\n".encode())
            return 127 if isinstance(e, FileNotFoundError) else 126
        job.groups.add(process.pid)
        finished = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, process.stdout, "stdout", output)
                nursery.start_soon(_pump, process.stderr, "stderr", output)
                await process.wait()
                # Background processes may hold the pipes open: take what they have
                # printed by now, and no more.
                nursery.cancel_scope.deadline = trio.current_time() + DRAIN
            finished = True
        finally:
            if not finished:
                _kill(process.pid)
                with trio.CancelScope(shield=True):
                    await process.wait()
            for pipe in (process.stdout, process.stderr):
                with trio.CancelScope(shield=True):
                    await pipe.aclose()
            if not _alive(process.pid):
                job.groups.discard(process.pid)
        code = process.returncode
        return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it

    async def remove(self, container: str) -> None:
        job = self._jobs.pop(container, None)
        for group in job.groups if job is not None else ():
            _kill(group)
        await trio.lowlevel.checkpoint()

    async def running(self, container: str) -> bool:
        await trio.lowlevel.checkpoint()
        return container in self._jobs

    def _job(self, container: str) -> _Job:
        job = self._jobs.get(container)
        if job is None:
            raise BackendError(DISAPPEARED)
        return job


def _translate(value: str, paths: list[tuple[str, str]]) -> str:
    """`value` with a leading container path (/workspace, /runner) replaced by the directory it stands for."""
    for inside, ours in paths:
        if value == inside or value.startswith(inside.rstrip("/") + "/"):
            return ours + value[len(inside.rstrip("/")):]
    return value


async def _pump(stream, name: str, output: Callable[[str, bytes], None]) -> None:
    while data := await stream.receive_some(CHUNK):
        output(name, data)


def _kill(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(group: int) -> bool:
    """Whether any process of the group is left (a step's background processes)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
