"""Container jobs on a Docker Swarm (`--backend swarm`): one service per attempt.

The manager places each job's container on a node by its reservations and
`placement` constraints; runner keeps its own retries, so a service has one
replica and restart condition `none`.  It is a `replicated` service, not a
`replicated-job`: engine 20.10 leaves a removed job's task running with desired
state `complete` (its container stays on its node), where a replicated
service's tasks are stopped and removed with it.  The manager offers no
exec, so the container runs the step agent (`agent.py`) and steps are handed
to it through files in the node's scratch directory, which with the workspace
lies on storage every node mounts at the same path (checked at start,
`storage.py`).  Exit codes are read from the agent's files, never from a task
that may not have ended (moby #37577); a task that ends or whose node is lost
before its step has ended fails the step with a reason naming the node.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from secrets import token_hex
from typing import Callable, Mapping

import trio

from runner.backends import agent as step_agent
from runner.backends.base import DISAPPEARED, Backend, BackendError, ContainerSpec, OncePerImage
from runner.backends.docker import LABEL_OWNER, LABEL_RUN, _alive, _engine_errors, _first_line
from runner.errors import Problem, RunNotPossible, UsageError, WorkflowInvalid

LABEL_WORKSPACE = "dev.runner.workspace"  # set by the container executor on its jobs' containers
LABEL_KEPT = "dev.runner.kept"  # a failed job's service left running for debugging
AGENT_DIR = "agent"  # in the directory mounted at SCRATCH
SCRATCH = "/runner"  # where the container executor mounts a node's scratch directory
SCHEDULE_VARIABLE = "RUNNER_SWARM_SCHEDULE_TIMEOUT"
SCHEDULE_TIMEOUT = 120.0  # seconds a job may wait for a node that can take it
STOP_GRACE = 10 * 10**9  # nanoseconds between SIGTERM and SIGKILL when a service is removed
ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}
WAITING = {"new", "pending", "allocated"}  # no node yet
PULL_ERRORS = ("No such image", "pull access denied", "manifest unknown", "not found", "error pulling")


def connect(threads: int):
    """A client of a swarm manager; RunNotPossible if the engine is not one."""
    from runner.backends.docker import connect as connect_engine

    client = connect_engine(threads)
    try:
        swarm = client.api.info().get("Swarm") or {}
    except Exception as e:  # noqa: BLE001 - whatever the SDK raises, the user reads one line
        raise RunNotPossible(f"the Docker engine did not describe itself: {_first_line(e)}") from None
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        where = os.environ.get("DOCKER_HOST") or "the local engine"
        raise RunNotPossible(
            f"--backend swarm needs a swarm manager, and {where} is not one "
            f"(swarm state: {swarm.get('LocalNodeState') or 'unknown'}); point DOCKER_HOST (or the Docker context) "
            "at a manager, or start one with `docker swarm init` (see docs/distributed.md)"
        )
    return client


def _seconds(value: str | None) -> float:
    """RUNNER_SWARM_SCHEDULE_TIMEOUT, in seconds; UsageError if it is not a positive number."""
    if not value:
        return SCHEDULE_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not 0 < seconds < float("inf"):
        raise UsageError(f"{SCHEDULE_VARIABLE}={value!r} is not a number of seconds above 0")
    return seconds


def service_name(name: str) -> str:
    """A unique name the manager accepts: a DNS label (letters, digits, dashes; at most 63 characters)."""
    label = re.sub(r"[^a-zA-Z0-9]+", "-", name)[:55].strip("-")
    return f"{label}-{token_hex(3)}"


class _Job:
    """A job's service: its spec, its agent, and the node its task was placed on."""

    def __init__(self, spec: ContainerSpec, agent: step_agent.Agent):
        self.spec = spec
        self.agent = agent
        self.node: str | None = None  # the node's id, once placed
        self.ready = False


class SwarmBackend(Backend):
    def __init__(self, client, threads: int = 32, environ: Mapping[str, str] = os.environ):
        self.api = client.api
        self.limiter = trio.CapacityLimiter(threads)
        self.schedule_timeout = _seconds(environ.get(SCHEDULE_VARIABLE))
        self._pinned: dict[str, str] = {}  # image → the name it runs under, pinned to its digest if it can be
        self._images = OncePerImage()
        self._jobs: dict[str, _Job] = {}
        self._node_names: dict[str, str] = {}
        self._node_status: dict[str, dict] = {}
        self._nodes_asked = float("-inf")
        self._nodes_lock = trio.Lock()

    def close(self) -> None:
        self.api.close()  # its pooled sockets, at once rather than when the collector finds the client

    async def _call(self, fn, *args):
        from docker.errors import DockerException

        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        except DockerException as e:
            raise BackendError(_first_line(e)) from None
        except _engine_errors() as e:
            raise BackendError(f"lost the swarm manager: {_first_line(e)}") from None

    # -- before the run

    def check(self, workflow) -> list[str]:
        problems = []
        for w in workflow.workflows():
            for job in w.jobs.values():
                c = job.container
                if c is not None and c.services:
                    problems.append(Problem(
                        c.where.get("services", job.location),
                        "--backend swarm cannot run `services`; run the job with --backend docker, "
                        "or start what it needs as a swarm service of your own",
                    ))
                if c is not None and c.network == "none":
                    problems.append(Problem(
                        c.where.get("network", job.location),
                        "--backend swarm cannot honour `network: none`: a swarm has no such network for services; "
                        "run the job with --backend docker, or remove the key",
                    ))
        if problems:
            raise WorkflowInvalid(problems)
        return []

    async def check_storage(self, workspace: str, run_dir: str) -> None:
        """A probe task on every node that may take a job; RunNotPossible naming the nodes that fail it."""
        from runner.backends import storage

        # An image pinned to its digest if there is one: every node can get it.
        images = sorted(self._pinned.values(), key=lambda image: ("@" not in image, image))
        if not images:
            return  # every image is named by an expression: each job's own task shows what its node lacks
        labels = {LABEL_WORKSPACE: workspace}
        await trio.to_thread.run_sync(
            storage.probe, self.api, images[0], workspace, run_dir, labels, limiter=self.limiter
        )

    async def ensure_image(self, image: str) -> None:
        """Pin the image to its digest in its registry, so that every node runs the same image."""
        async def pin(image: str) -> None:
            self._pinned[image] = await trio.to_thread.run_sync(self._pin, image, limiter=self.limiter)

        await self._images(image, pin)

    def _pin(self, image: str) -> str:
        from docker.errors import DockerException

        name = image.split("@", 1)[0]
        try:
            digest = self.api.inspect_distribution(image)["Descriptor"]["digest"]
            return f"{name}@{digest}"
        except (DockerException, *_engine_errors()) as e:
            unreachable = _first_line(e)
        try:
            self.api.inspect_image(image)
        except (DockerException, *_engine_errors()):
            raise BackendError(
                f"image `{image}` is in no registry the swarm manager can reach ({unreachable}); push it to a registry "
                f"every node can reach and name it so, or pass --image-map {image}=REGISTRY/IMAGE"
            ) from None
        # Only on this machine: the nodes that lack it fail the job, saying so.
        return image

    async def digest(self, image: str) -> str:
        await self.ensure_image(image)
        pinned = self._pinned[image]
        return pinned if "@" in pinned else (await self._call(self.api.inspect_image, image))["Id"]

    # -- a job's service

    async def start(self, spec: ContainerSpec) -> str:
        return await self._call(self._create_service, spec, None)

    async def create(self, spec: ContainerSpec) -> str:
        return await self._call(self._create_service, spec, spec.command)

    def _create_service(self, spec: ContainerSpec, first: tuple[str, ...] | None) -> str:
        from docker import types

        agent = step_agent.Agent(Path(self._scratch(spec)) / AGENT_DIR)
        if first is not None:  # queued before the container starts: the agent runs it at once
            agent.send(list(first), spec.env, spec.working_dir)
        mounts = [types.Mount(inside, ours, type="bind") for ours, inside in spec.mounts]
        mounts += [types.Mount(inside, None, type="tmpfs", read_only=True) for inside in spec.hidden]
        container = types.ContainerSpec(
            self._pinned.get(spec.image, spec.image),
            command=step_agent.command(f"{SCRATCH}/{AGENT_DIR}"),
            env=None if first is not None else dict(spec.env),
            workdir="/",
            user=spec.user or None,
            # Without runner's owner label: the docker backend's reaper on a node must leave
            # the swarm's containers to the swarm.
            labels=dict(spec.labels),
            mounts=mounts,
            init=True,
            stop_grace_period=STOP_GRACE,
            cap_add=sorted(spec.capabilities),
            cap_drop=["ALL"],
        )
        nano_cpus = int(spec.cpus * 1e9) if spec.cpus else None
        resources = types.Resources(
            cpu_limit=nano_cpus, cpu_reservation=nano_cpus, mem_limit=spec.memory, mem_reservation=spec.memory,
        )
        template = types.TaskTemplate(
            container,
            resources=resources,
            restart_policy=types.RestartPolicy(condition="none", max_attempts=0),
            placement=types.Placement(constraints=list(spec.placement)) if spec.placement else None,
        )
        mode = types.ServiceMode("replicated", replicas=1)
        labels = {**spec.labels, LABEL_OWNER: f"{socket.gethostname()}:{os.getpid()}"}
        created = self.api.create_service(template, name=service_name(spec.name), labels=labels, mode=mode)
        self._jobs[created["ID"]] = _Job(spec, agent)
        return created["ID"]

    @staticmethod
    def _scratch(spec: ContainerSpec) -> str:
        for ours, inside in spec.mounts:
            if inside == SCRATCH:
                return ours
        raise BackendError(
            f"--backend swarm runs steps through the directory mounted at {SCRATCH}, and the job has none"
        )

    async def run(self, container: str, output: Callable[[str, bytes], None]) -> int:
        job = self._job(container)
        await self._placed(container, job)
        return await job.agent.follow(1, output, lambda: self._alive(container, job))

    async def exec(
        self, container: str, argv: list[str], env: Mapping[str, str], workdir: str, user: str | None,
        output: Callable[[str, bytes], None],
    ) -> int:
        job = self._job(container)
        await self._placed(container, job)
        number = job.agent.send(argv, env, workdir)
        return await job.agent.follow(number, output, lambda: self._alive(container, job))

    def _job(self, container: str) -> _Job:
        job = self._jobs.get(container)
        if job is None:
            raise BackendError(DISAPPEARED)
        return job

    async def _placed(self, service: str, job: _Job) -> None:
        """Wait until the job's agent runs; BackendError if no node takes it in time or its task fails.

        The agent's file is looked at often, the manager asked about the task
        twice a second: a job that starts at once costs the manager nothing.
        """
        if job.ready:
            return
        started = trio.current_time()
        asked = started
        while not job.agent.started():
            await trio.sleep(step_agent.POLL)
            if trio.current_time() - asked < 0.5:
                continue
            asked = trio.current_time()
            task = await self._task(service)
            state = task["Status"]["State"] if task else "new"
            job.node = task.get("NodeID") if task else None
            if state in ENDED:
                raise BackendError(await self._failed_to_start(job, task))
            if state in WAITING and asked - started >= self.schedule_timeout:
                why = (task or {}).get("Status", {}).get("Err") or "the manager has not placed it"
                raise BackendError(
                    f"no node took the job's container within {self.schedule_timeout:g}s ({why}); "
                    "its `resources` or `placement` may ask for more than any node has"
                )
            if job.node:
                await self._lost(job.node)
        job.ready = True

    async def _failed_to_start(self, job: _Job, task: dict) -> str:
        error = task["Status"].get("Err") or task["Status"].get("Message") or task["Status"]["State"]
        node = await self._node_name(task.get("NodeID"))
        if any(text in error for text in PULL_ERRORS):
            image = job.spec.image
            return (
                f"node {node} cannot get image `{self._pinned.get(image, image)}` ({error}); push it to a registry "
                f"every node can reach and name it so (--image-map {image}=REGISTRY/IMAGE)"
            )
        return f"the job's container did not start on node {node}: {error}"

    async def _alive(self, service: str, job: _Job) -> None:
        """Raise if the job's task has ended or its node is lost while a step runs."""
        task = await self._task(service)
        if task is None or task["Status"]["State"] in ENDED:
            where = f" on node {await self._node_name(job.node)}" if job.node else ""
            error = (task or {}).get("Status", {}).get("Err")
            raise BackendError(f"{DISAPPEARED}{where}" + (f" ({error})" if error else ""))
        job.node = task.get("NodeID") or job.node
        if job.node:
            await self._lost(job.node)

    async def _lost(self, node: str) -> None:
        """Raise if the node's engine no longer answers the manager."""
        status = (await self._nodes()).get(node)
        if status is None:
            raise BackendError(f"node {self._node_names.get(node, node)} left the swarm while running the job")
        if status.get("State") == "down":
            raise BackendError(
                f"node {await self._node_name(node)} was lost while running the job: "
                f"its engine stopped answering the swarm manager ({status.get('Message') or 'down'})"
            )

    async def _nodes(self) -> dict[str, dict]:
        """Each node's status, asked of the manager at most once a second whatever the number of jobs."""
        async with self._nodes_lock:
            if trio.current_time() - self._nodes_asked >= 1:
                nodes = await self._call(self.api.nodes)
                self._node_status = {n["ID"]: n["Status"] for n in nodes}
                self._nodes_asked = trio.current_time()
        return self._node_status

    async def _task(self, service: str) -> dict | None:
        """The service's newest task (its only one, unless the manager gave it another)."""
        from docker.errors import NotFound

        def tasks() -> list[dict]:
            try:
                return self.api.tasks(filters={"service": service})
            except NotFound:  # the service was removed from outside runner
                return []

        return max(await self._call(tasks), key=lambda t: t.get("CreatedAt", ""), default=None)

    async def _node_name(self, node: str | None) -> str:
        if not node:
            return "(none)"
        if node not in self._node_names:
            try:
                description = (await self._call(self.api.inspect_node, node))["Description"]
                self._node_names[node] = f"{description.get('Hostname', node)} ({node[:12]})"
            except BackendError:
                return node
        return self._node_names[node]

    async def placed(self, container: str) -> tuple[str, str] | None:
        """The id of the service's container on its node, and the node's name."""
        try:
            task = await self._task(container)
        except BackendError:
            return None
        if task is None or not task.get("NodeID"):
            return None
        inside = (task["Status"].get("ContainerStatus") or {}).get("ContainerID", "")[:12]
        return inside or task["ID"], await self._node_name(task["NodeID"])

    async def remove(self, container: str) -> None:
        await trio.to_thread.run_sync(self._remove, container, limiter=self.limiter)
        self._jobs.pop(container, None)

    def _remove(self, service: str) -> None:
        from docker.errors import DockerException, NotFound

        for _ in range(2):  # a passing engine error: once more
            try:
                self.api.remove_service(service)
                return
            except NotFound:
                return
            except (DockerException, *_engine_errors()):
                continue

    async def running(self, container: str) -> bool:
        job = self._jobs.get(container)
        if job is None:
            return False
        try:
            await self._alive(container, job)
        except BackendError:
            return False
        return True

    async def out_of_memory(self, container: str) -> bool:
        # Each step runs in the task's container, which its agent keeps running.
        return await self.running(container) and await self.killed_for_memory(container)

    async def keep(self, container: str, name: str) -> bool:
        """Label the failed job's service so that no reaper takes it; it stays on its node."""

        def label() -> None:
            service = self.api.inspect_service(container)
            spec = service["Spec"]
            self.api.update_service(
                container, service["Version"]["Index"], task_template=spec["TaskTemplate"], name=spec["Name"],
                labels={**spec.get("Labels", {}), LABEL_KEPT: name}, mode=spec["Mode"],
            )

        await self._call(label)
        return True

    # -- what runners left behind

    def reap(self) -> list[str]:
        """Remove the services of runners on this machine that were killed (SIGKILL) mid-run."""
        host = socket.gethostname()
        reaped = []
        for service in self._services({"label": LABEL_OWNER}):
            labels = service["Spec"].get("Labels") or {}
            owner_host, _, pid = labels[LABEL_OWNER].rpartition(":")
            if owner_host != host or not pid.isdigit() or _alive(int(pid)) or LABEL_KEPT in labels:
                continue
            self._remove(service["ID"])
            reaped.append(service["ID"])
        return reaped

    def remove_run(self, run_id: str, kept_only: bool = False) -> list[str]:
        removed = []
        for service in self._services({"label": f"{LABEL_RUN}={run_id}"}):
            if kept_only and LABEL_KEPT not in (service["Spec"].get("Labels") or {}):
                continue
            self._remove(service["ID"])
            removed.append(service["Spec"]["Name"])
        return removed

    def _services(self, filters: dict) -> list[dict]:
        from docker.errors import DockerException

        try:
            return self.api.services(filters=filters)
        except (DockerException, *_engine_errors()) as e:
            raise RunNotPossible(f"the swarm manager failed to list services: {_first_line(e)}") from None
