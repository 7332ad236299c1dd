"""A container backend without containers, for engine tests.

It runs a tiny script language instead of images (`sleep N`, `exit N`,
`out k=v`, `echo text`, `fail-until N`), so that ordering, limits, timeouts,
cancellation and retries are tested in milliseconds with trio's mock clock.
Container behaviour itself is tested against the real engine.
"""

from __future__ import annotations

import re
from pathlib import Path

import trio

from runner.backends.base import Backend


class FakeBackend(Backend):
    def __init__(self):
        self.started: list[str] = []
        self.removed: list[str] = []
        self.live = 0  # containers started and not yet removed
        self.most_running = 0
        self.attempts: dict[str, int] = {}
        self.specs: dict = {}

    async def ensure_image(self, image):
        await trio.lowlevel.checkpoint()

    async def start(self, spec):
        await trio.lowlevel.checkpoint()
        container = f"c{len(self.started)}"
        self.started.append(container)
        self.specs[container] = spec
        self.live += 1
        self.most_running = max(self.most_running, self.live)
        return container

    async def create(self, spec):
        return await self.start(spec)

    async def run(self, container, output):
        spec = self.specs[container]
        return await self.exec(container, list(spec.command), spec.env, spec.working_dir, spec.user, output)

    async def exec(self, container, argv, env, workdir, user, output):
        host_dir = Path(dict((inside, host) for host, inside in self.specs[container].mounts)["/runner"])
        script = (host_dir / Path(argv[-1]).name).read_text()
        script = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], script)
        for line in script.splitlines():
            word, _, rest = line.strip().partition(" ")
            if word == "sleep":
                await trio.sleep(float(rest))
            elif word == "exit":
                return int(rest)
            elif word == "echo":
                output("stdout", (rest + "\n").encode())
            elif word == "out":
                with open(host_dir / Path(env["RUNNER_OUTPUT"]).name, "a") as f:
                    f.write(rest + "\n")
            elif word == "fail-until":
                key = env["RUNNER_JOB"]
                self.attempts[key] = self.attempts.get(key, 0) + 1
                if self.attempts[key] < int(rest):
                    return 1
        return 0

    async def remove(self, container):
        self.removed.append(container)
        self.live -= 1

    async def running(self, container):
        return container in self.started and container not in self.removed
