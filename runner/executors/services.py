"""A container job's `services:`: sidecar containers on a network of the job's own.

The network is created for each attempt; each service joins it under its name,
so that the job reaches `db:5432` with no port published on the host.  Services
start before the job's first step, each waited for until its healthcheck passes,
and are removed, with the network, after the job's own container whatever
happened.  They are sandboxed as job containers are: the same capabilities, no
new privileges, a process limit.
"""

from __future__ import annotations

import shlex
from typing import Any, Callable, Mapping

import trio

from runner.backends.base import DISAPPEARED, BackendError, ContainerSpec
from runner.expr.templates import TemplateError, render_value, to_text
from runner.masking import Masker
from runner.model.durations import format_duration
from runner.model.workflow import Service

LOG_LINES = 10  # of a service's own output, quoted when it fails to become healthy


class ServiceFailed(Exception):
    """A service could not be started or did not become healthy; the message is for the user."""


class Services:
    """The services of one attempt of a job, and the network they share with its container."""

    def __init__(self, backend, network: str, labels: Mapping[str, str], masker: Masker | None):
        self.backend = backend
        self.network = network  # the name of the job's network, also the prefix of its services' names
        self.labels = labels
        self.masker = masker
        self.network_id: str | None = None
        self.started: list[str] = []  # container ids, for removal

    async def start(self, services: tuple[Service, ...], scope: Mapping[str, Any],
                    image_for: Callable[[str], str], capabilities: frozenset[str]) -> None:
        """Create the network, start every service and wait until each is healthy; ServiceFailed if not."""
        specs = []
        for service in services:
            try:
                image = image_for(to_text(render_value(service.image, scope)))
                env = {k: to_text(v) for k, v in render_value(dict(service.env), scope).items()}
                command = render_value(service.command, scope)
            except TemplateError as e:
                raise ServiceFailed(f"service `{service.name}`: {e}") from None
            if isinstance(command, str):
                command = shlex.split(command)
            specs.append(ContainerSpec(
                image=image,
                name=f"{self.network}-{service.name}",
                labels={**self.labels, "dev.runner.service": service.name},
                mounts=(),
                working_dir="",  # the image's own
                network=self.network,
                command=tuple(to_text(arg) for arg in command) if command is not None else None,
                env=env,
                capabilities=capabilities,
                aliases=(service.name,),
            ))
        for service, spec in zip(services, specs):
            try:
                await self.backend.ensure_image(spec.image)
            except BackendError as e:
                raise ServiceFailed(f"service `{service.name}`: {e}") from None
        try:
            self.network_id = await self.backend.create_network(self.network, self.labels)
        except BackendError as e:
            raise ServiceFailed(f"cannot create the job's network for its services: {e}") from None
        ids = []
        for service, spec in zip(services, specs):
            try:
                ids.append(await self.backend.start_service(spec))
            except BackendError as e:
                raise ServiceFailed(f"service `{service.name}` did not start: {e}") from None
            self.started.append(ids[-1])
        failures: list[str] = []
        async with trio.open_nursery() as nursery:
            for service, container in zip(services, ids):
                if service.healthcheck is not None:
                    nursery.start_soon(self._wait_healthy, service, container, scope, failures)
        if failures:
            raise ServiceFailed("; ".join(failures))

    async def _wait_healthy(self, service: Service, container: str, scope, failures: list[str]) -> None:
        check = service.healthcheck
        try:
            argv = ["sh", "-c", to_text(render_value(check.run, scope))]
        except TemplateError as e:
            failures.append(f"service `{service.name}` healthcheck: {e}")
            return
        started = trio.current_time()
        deadline = started + check.timeout
        tries, code = 0, None
        while check.retries is None or tries < check.retries:
            tries += 1
            with trio.move_on_at(deadline):
                try:
                    code = await self.backend.exec(container, argv, {}, "/", None, lambda stream, data: None)
                except BackendError as e:
                    stopped = "stopped" if str(e) == DISAPPEARED else str(e)
                    failures.append(f"service `{service.name}` {stopped} before it was healthy{await self._last_lines(container)}")
                    return
                if code == 0:
                    return
            if trio.current_time() + check.interval >= deadline:
                break
            await trio.sleep(check.interval)
        last = f"its check last exited {code}" if code is not None else "its check never finished"
        failures.append(
            f"service `{service.name}` is not healthy after {tries} {'try' if tries == 1 else 'tries'} "
            f"in {format_duration(round(trio.current_time() - started))} ({last}){await self._last_lines(container)}"
        )

    async def _last_lines(self, container: str) -> str:
        try:
            lines = await self.backend.logs(container, LOG_LINES)
        except BackendError:
            return ""
        if not lines:
            return "; it wrote nothing"
        text = " | ".join(line.rstrip() for line in lines)
        return "; its last log lines: " + (self.masker.text(text) if self.masker is not None else text)

    async def remove(self) -> None:
        """Remove the services, then their network; not cancellable."""
        with trio.CancelScope(shield=True):
            for container in self.started:
                await self.backend.remove(container)
            if self.network_id is not None:
                await self.backend.remove_network(self.network_id)
