"""The Docker engine behind container jobs, through the Docker SDK.

The SDK blocks, so every call runs in a worker thread under a capacity limiter;
the trio event loop never waits on the engine.  docker-py's exceptions stop
here: callers see `BackendError` or `RunNotPossible` with a message for users.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from functools import partial
from typing import Callable, Mapping

import trio

from runner.errors import Problem, RunNotPossible, WorkflowInvalid
from runner.backends.base import DISAPPEARED, KEPT_PREFIX, Backend, BackendError, ContainerSpec, OncePerImage

LABEL_RUN = "dev.runner.run-id"
LABEL_OWNER = "dev.runner.owner"  # host:pid of the runner process that started the container
KEEP_ALIVE = (["tail"], ["-f", "/dev/null"])  # entrypoint, command: idle until removed
NETWORK_REMOVAL_TRIES = 10


def connect(threads: int = 32):
    """A client of the engine named by DOCKER_HOST (or the default socket); RunNotPossible if none answers."""
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        # Asks the engine for its API version: no engine answering fails here.
        client = docker.from_env(max_pool_size=threads, timeout=120)
        _local_socket(client.api)
    except (DockerException, *_engine_errors()) as e:
        if "Permission denied" in str(e) or "PermissionError" in str(e):
            raise RunNotPossible(
                f"permission denied on the Docker engine's socket {where}: "
                "runner's user must be root or in the socket's group (usually `docker`)"
            ) from None
        raise RunNotPossible(
            f"cannot reach the Docker engine at {where}: {_first_line(e)}\n"
            "Start it (`sudo systemctl start docker`, or `sudo dockerd &`), "
            "or point DOCKER_HOST at a running engine."
        ) from None
    return client


def _local_socket(api) -> None:
    """Spare calls to an engine on a UNIX socket two costs of docker-py's session, over a
    third of what a container job's step costs runner: looking up proxies in the environment and ~/.netrc, which no
    UNIX socket uses, and a connection pool of its own for every URL (its adapter keys
    pools by the whole URL, and each exec has URLs of its own), which opened a new
    connection for nearly every call."""
    if api.base_url != "http+docker://localhost":
        return
    api.trust_env = False
    adapter = api.get_adapter(api.base_url)
    pool = adapter.get_connection
    adapter.get_connection = lambda url, proxies=None: pool(api.base_url, proxies)


class HostPaths:
    """Where the engine finds a path of ours, when runner itself runs in one of its containers.

    The engine resolves bind mounts on its host, so a path inside runner's
    container must be translated through that container's own mounts.
    """

    def __init__(self, mounts: list[tuple[str, str]] | None):
        # (inside, on the host), longest first; None when runner is not in a container.
        self.mounts = sorted(mounts, key=lambda m: len(m[0]), reverse=True) if mounts is not None else None

    def __call__(self, path: str) -> str:
        if self.mounts is None:
            return path
        for inside, host in self.mounts:
            if path == inside or path.startswith(inside.rstrip("/") + "/"):
                return host + path[len(inside.rstrip("/")):]
        raise RunNotPossible(
            f"{path} is inside runner's own container and not on a volume the Docker engine can mount "
            "into job containers; mount the workspace from the host (for example -v \"$PWD:/work\" -w /work)"
        )

    @classmethod
    def discover(cls, api) -> "HostPaths":
        from docker.errors import DockerException

        hostname = socket.gethostname()
        for candidate in _own_container_ids():
            try:
                container = api.inspect_container(candidate)
            except (DockerException, *_engine_errors()):
                continue
            if container["Config"].get("Hostname") != hostname:
                continue  # another container's id seen from the host's mount table
            return cls([(m["Destination"], m["Source"]) for m in container["Mounts"] if m.get("Type") in ("bind", "volume")])
        return cls(None)


def _own_container_ids() -> list[str]:
    """Ids this process's container may have, if it is in one.

    Docker bind-mounts /etc/hostname from the container's own directory, and
    names the container in its cgroup; its default hostname is the short id.
    """
    if not os.path.exists("/.dockerenv"):
        return []
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[4] == "/etc/hostname":
                    found += re.findall(r"([0-9a-f]{64})", fields[3])
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            found += re.findall(r"([0-9a-f]{64})", f.read())
    except OSError:
        pass
    found.append(socket.gethostname())
    return list(dict.fromkeys(found))


class DockerBackend(Backend):
    def __init__(self, client, threads: int = 32):
        self.api = client.api
        self.limiter = trio.CapacityLimiter(threads)
        self.host_paths = HostPaths.discover(self.api)
        self._images = OncePerImage()

    def host_path(self, path: str) -> str:
        return self.host_paths(path)

    def close(self) -> None:
        self.api.close()  # its pooled sockets, at once rather than when the collector finds the client

    def check(self, workflow) -> list[str]:
        problems = [
            Problem(job.container.where.get("placement", job.location),
                    "--backend docker cannot honour `placement`: it runs every job on this engine; "
                    "run with --backend swarm, or remove the key")
            for w in workflow.workflows() for job in w.jobs.values()
            if job.container is not None and job.container.placement
        ]
        if problems:
            raise WorkflowInvalid(problems)
        return []

    async def _call(self, fn, *args, cancellable: bool = False):
        from docker.errors import DockerException

        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter, abandon_on_cancel=cancellable)
        except DockerException as e:
            raise BackendError(_first_line(e)) from None
        except _engine_errors() as e:  # the connection, in a call or while streaming
            raise BackendError(f"lost the Docker engine: {_first_line(e)}") from None

    async def ensure_image(self, image: str) -> None:
        await self._images(image, partial(trio.to_thread.run_sync, self._ensure_image, limiter=self.limiter))

    def _ensure_image(self, image: str) -> None:
        from docker.errors import DockerException, ImageNotFound

        try:
            self.api.inspect_image(image)
            return
        except ImageNotFound:
            pass
        except (DockerException, *_engine_errors()) as e:
            raise BackendError(_first_line(e)) from None
        repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
        try:
            self.api.pull(repository, tag=tag or "latest")
        except (DockerException, *_engine_errors()) as e:
            raise BackendError(
                f"image `{image}` is not available locally and could not be pulled ({_first_line(e)}); "
                f"to use a local image instead, pass --image-map {image}=LOCAL_IMAGE"
            ) from None

    async def start(self, spec: ContainerSpec) -> str:
        return await self._call(self._start, spec)

    def _start(self, spec: ContainerSpec, service: bool = False) -> str:
        container = self._create(spec, service)
        try:
            self.api.start(container)
        except Exception:
            self._remove(container)
            raise
        return container

    async def create(self, spec: ContainerSpec) -> str:
        return await self._call(self._create, spec)

    def _create(self, spec: ContainerSpec, service: bool = False) -> str:
        host_config = self.api.create_host_config(
            binds={self.host_path(ours): {"bind": inside, "mode": "rw"} for ours, inside in spec.mounts},
            tmpfs={inside: "ro" for inside in spec.hidden},
            security_opt=["no-new-privileges"],
            privileged=False,
            cap_drop=["ALL"],
            cap_add=sorted(spec.capabilities),
            init=True,
            network_mode=spec.network,
            pids_limit=spec.pids,
            mem_limit=spec.memory,
            memswap_limit=spec.memory,  # no swap beyond the limit: the limit means what it says
            nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
        )
        labels = {**spec.labels, LABEL_OWNER: f"{socket.gethostname()}:{os.getpid()}"}
        if service:
            entrypoint, command = None, list(spec.command) if spec.command is not None else None
        else:
            entrypoint, command = KEEP_ALIVE if spec.command is None else (list(spec.command[:1]), list(spec.command[1:]))
        endpoints = {spec.network: self.api.create_endpoint_config(aliases=list(spec.aliases))} if spec.aliases else None
        created = self.api.create_container(
            spec.image,
            entrypoint=entrypoint,
            command=command,
            environment=dict(spec.env),
            labels=labels,
            host_config=host_config,
            working_dir=spec.working_dir,
            user=spec.user or "",
            name=spec.name,
            detach=True,
            networking_config=self.api.create_networking_config(endpoints) if endpoints else None,
        )
        return created["Id"]

    # -- services: sidecar containers on a network of the job's own

    supports_services = True

    async def start_service(self, spec: ContainerSpec) -> str:
        return await self._call(self._start, spec, True)

    async def create_network(self, name: str, labels: Mapping[str, str]) -> str:
        labels = {**labels, LABEL_OWNER: f"{socket.gethostname()}:{os.getpid()}"}
        created = await self._call(lambda: self.api.create_network(name, driver="bridge", labels=labels))
        return created["Id"]

    async def remove_network(self, network: str) -> None:
        await trio.to_thread.run_sync(self._remove_network, network, limiter=self.limiter)

    def _remove_network(self, network: str) -> None:
        from docker.errors import DockerException, NotFound
        from requests import RequestException

        # A busy engine may still be releasing the endpoints of containers it has just
        # removed ("has active endpoints"): try again for a few seconds.
        for _ in range(NETWORK_REMOVAL_TRIES):
            try:
                for container in self.api.inspect_network(network).get("Containers") or {}:
                    self.api.disconnect_container_from_network(container, network, force=True)
                self.api.remove_network(network)
                return
            except NotFound:
                return
            except RequestException:
                return  # an engine that is gone took its networks with it
            except DockerException:
                time.sleep(0.5)  # in a worker thread, or in the reaper before the run starts

    async def logs(self, container: str, lines: int) -> list[str]:
        text = await self._call(lambda: self.api.logs(container, stdout=True, stderr=True, tail=lines))
        return text.decode(errors="replace").splitlines()

    async def run(self, container: str, output: Callable[[str, bytes], None]) -> int:
        from docker.errors import NotFound

        def run(deliver) -> int:
            try:
                # Attached before the start, so that no output is missed: the engine joins
                # the live streams before it answers. Without `logs`: the engine replays the
                # log after joining them, so a line written in between would come twice.
                chunks = self.api.attach(container, stdout=True, stderr=True, stream=True, logs=False, demux=True)
                self.api.start(container)
                if not _pass_on(chunks, deliver):
                    return -1
                code = self.api.wait(container)["StatusCode"]
                # `docker rm -f` marks the container as being removed before it kills it.
                if code in (137, 143) and self.api.inspect_container(container)["State"].get("Status") == "removing":
                    raise BackendError(DISAPPEARED)
                return code
            except NotFound:
                raise BackendError(DISAPPEARED) from None

        return await self._streaming(run, output)

    async def exec(
        self,
        container: str,
        argv: list[str],
        env: Mapping[str, str],
        workdir: str,
        user: str | None,
        output: Callable[[str, bytes], None],
    ) -> int:
        from docker.errors import APIError, NotFound

        def run(deliver) -> int:
            try:
                exec_id = self.api.exec_create(
                    container, argv, environment=dict(env), workdir=workdir, user=user or "", stdout=True, stderr=True
                )["Id"]
                if not _pass_on(self.api.exec_start(exec_id, stream=True, demux=True), deliver):
                    return -1
                return self.api.exec_inspect(exec_id)["ExitCode"]
            except (NotFound, APIError) as e:
                if isinstance(e, NotFound) or "is not running" in str(e):
                    raise BackendError(DISAPPEARED) from None
                raise

        return await self._streaming(run, output)

    async def _streaming(self, work: Callable[[Callable[[str, bytes], None]], int], output) -> int:
        """`work(deliver)` in a worker thread; what it delivers once this call has returned is dropped."""
        finished = threading.Event()

        def deliver(stream: str, data: bytes) -> None:
            if not finished.is_set():
                output(stream, data)

        try:
            return await self._call(work, deliver, cancellable=True)
        finally:
            finished.set()

    async def remove(self, container: str) -> None:
        await trio.to_thread.run_sync(self._remove, container, limiter=self.limiter)

    def _remove(self, container: str) -> None:
        from docker.errors import DockerException, NotFound

        try:
            self.api.remove_container(container, force=True, v=True)
        except NotFound:
            pass
        except (DockerException, *_engine_errors()):
            # Removal already in progress (a second Ctrl-C) or a passing engine error: retry once.
            # An engine that is gone took its containers with it.
            try:
                self.api.remove_container(container, force=True, v=True)
            except (DockerException, *_engine_errors()):
                pass

    async def out_of_memory(self, container: str) -> bool:
        try:
            state = (await self._call(self.api.inspect_container, container))["State"]
        except BackendError:
            return False
        if state.get("OOMKilled"):
            return True
        if not state.get("Running"):
            return False
        # A process killed in an exec does not set OOMKilled: ask the container's cgroup.
        return await self.killed_for_memory(container)

    async def digest(self, image: str) -> str:
        """The image's content digest (its id): the same whatever tag names it."""
        return (await self._call(self.api.inspect_image, image))["Id"]

    async def image_path(self, image: str) -> str | None:
        """The PATH the image sets for its processes, if it sets one."""
        env = (await self._call(self.api.inspect_image, image))["Config"].get("Env") or []
        return next((entry[5:] for entry in env if entry.startswith("PATH=")), None)

    async def keep(self, container: str, name: str) -> bool:
        """Rename a container left running for debugging; `reap` leaves such containers alone."""
        await self._call(self.api.rename, container, name)
        return True

    async def running(self, container: str) -> bool:
        # The engine reports a killed container as running for a moment after
        # its processes' streams end: wait a little for the state to settle.
        for _ in range(10):
            try:
                state = await self._call(self.api.inspect_container, container)
            except BackendError:
                return False
            if not state["State"].get("Running") or state["State"].get("Status") in ("removing", "exited", "dead"):
                return False
            await trio.sleep(0.2)
        return True

    def reap(self) -> list[str]:
        """Remove containers left by runners on this machine that were killed (SIGKILL) mid-run."""
        from docker.errors import DockerException

        host = socket.gethostname()
        reaped = []
        for container in self._list({"label": LABEL_OWNER}):
            owner_host, _, pid = container["Labels"][LABEL_OWNER].rpartition(":")
            if owner_host != host or not pid.isdigit() or _alive(int(pid)):
                continue
            if any(name.lstrip("/").startswith(KEPT_PREFIX) for name in container.get("Names") or ()):
                continue  # kept for debugging (--keep-on-failure) until `runner runs clean`
            try:
                self.api.remove_container(container["Id"], force=True, v=True)
                reaped.append(container["Id"])
            except (DockerException, *_engine_errors()):
                pass
        # Networks after containers: a network in use cannot be removed.
        for network in self.api.networks(filters={"label": LABEL_OWNER}):
            owner_host, _, pid = (network.get("Labels") or {}).get(LABEL_OWNER, "").rpartition(":")
            if owner_host == host and pid.isdigit() and not _alive(int(pid)):
                self._remove_network(network["Id"])
                reaped.append(network["Id"])
        return reaped

    def remove_run(self, run_id: str, kept_only: bool = False) -> list[str]:
        """Remove the run's containers (those kept for debugging, or all: the run's runner is gone).

        Returns the names removed.
        """
        from docker.errors import DockerException

        removed = []
        for container in self._list({"label": f"{LABEL_RUN}={run_id}"}):
            names = [n.lstrip("/") for n in container.get("Names") or ()]
            if kept_only and not any(n.startswith(KEPT_PREFIX) for n in names):
                continue
            try:
                self.api.remove_container(container["Id"], force=True, v=True)
                removed.append(names[0] if names else container["Id"][:12])
            except (DockerException, *_engine_errors()):
                pass
        if not kept_only:
            for network in self.api.networks(filters={"label": f"{LABEL_RUN}={run_id}"}):
                self._remove_network(network["Id"])
                removed.append(network["Name"])
        return removed

    def leftovers(self, run_id: str) -> list[str]:
        """Containers and networks of the run still present (none, once a run has ended)."""
        where = {"label": f"{LABEL_RUN}={run_id}"}
        return [c["Id"] for c in self._list(where)] + [n["Id"] for n in self.api.networks(filters=where)]

    def _list(self, filters: dict) -> list[dict]:
        """The containers `filters` selects; RunNotPossible if the engine cannot say."""
        from docker.errors import DockerException

        try:
            return self.api.containers(all=True, filters=filters)
        except (DockerException, *_engine_errors()) as e:
            raise RunNotPossible(f"the Docker engine failed to list containers: {_first_line(e)}") from None


def _pass_on(chunks, deliver: Callable[[str, bytes], None]) -> bool:
    """Hand demultiplexed output to the event loop from a worker thread; False if the run has moved on."""
    for out, err in chunks:
        for stream, data in (("stdout", out), ("stderr", err)):
            if data:
                try:
                    # Waits for the event loop to take the chunk: a step printing
                    # faster than runner can keep up is slowed, not buffered.
                    trio.from_thread.run_sync(deliver, stream, data)
                except (trio.RunFinishedError, trio.Cancelled):
                    return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _engine_errors() -> tuple[type[Exception], ...]:
    """What losing the engine raises besides docker-py's own errors, in a call or a stream."""
    from requests import RequestException
    from urllib3.exceptions import HTTPError

    return (RequestException, HTTPError, ConnectionError, TimeoutError)


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "explanation", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
