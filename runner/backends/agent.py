"""The step agent: how runner runs steps in a container it cannot exec into.

A swarm service's container is on whichever node the manager chose, and the
manager offers no exec. So the container's command is a small POSIX sh loop
(it works in busybox and Debian images) that runs the requests runner leaves
in a directory on shared storage, one at a time, in order, as Tekton's
entrypoint sequences steps:

    N.sh    runner's request: a sh script that enters the working directory,
            exports the environment and execs the step's command (removed
            once it has ended: the environment may hold secrets)
    N.out   its standard output, N.err its standard error, tailed by runner as
            they grow, so that logs stream live
    N.code  its exit status, written once it has ended (renamed into place:
            runner never reads half of it)

Requests are renamed into place too, so the agent never runs half of one.  It
runs until its container is removed.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Callable, Mapping

import trio

# $1: the agent's directory, as the container sees it.
SCRIPT = r"""
d=$1 n=1
: >"$d/ready"
while :; do
  if [ -f "$d/$n.sh" ]; then
    sh "$d/$n.sh" </dev/null >"$d/$n.out" 2>"$d/$n.err"
    echo $? >"$d/$n.tmp" && mv "$d/$n.tmp" "$d/$n.code"
    rm -f "$d/$n.sh"
    n=$((n + 1))
  else
    sleep 0.05 2>/dev/null || sleep 1
  fi
done
"""
POLL = 0.05  # seconds between looks at a request's files
CHUNK = 64 * 1024


def command(directory: str) -> list[str]:
    """The container's command: the agent, serving `directory` (a container path)."""
    return ["sh", "-c", SCRIPT, "runner-agent", directory]


def request(argv: list[str], env: Mapping[str, str], workdir: str) -> str:
    """A request's script: what `docker exec` does, in sh.

    A variable's name may be any text without `=` (`node-version`, `a.b`), as `docker exec` allows,
    but sh exports only names that are identifiers: the others are handed to the command by `env`.
    """
    lines = [f"cd {shlex.quote(workdir)} || exit 126"]
    exported, others = [], []
    for name, value in env.items():
        (exported if _SH_NAME.fullmatch(name) else others).append(f"{name}={value}")
    lines += [f"export {shlex.quote(assignment)}" for assignment in exported]
    lines.append("exec " + " ".join(shlex.quote(part) for part in (["env", *others] if others else []) + argv))
    return "\n".join(lines) + "\n"


_SH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Agent:
    """Runner's side of one container's agent: its directory on shared storage."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.next = 1
        directory.mkdir(mode=0o777, exist_ok=True)
        os.chmod(directory, 0o777)  # the job's user may not be root

    def send(self, argv: list[str], env: Mapping[str, str], workdir: str) -> int:
        """Hand the agent its next request; the request's number."""
        number, self.next = self.next, self.next + 1
        staged = self.directory / f"{number}.req"
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(request(argv, env, workdir))
        os.rename(staged, self.directory / f"{number}.sh")
        return number

    def started(self) -> bool:
        """Whether the agent runs (its container has started)."""
        return (self.directory / "ready").exists()

    async def follow(self, number: int, output: Callable[[str, bytes], None], check: Callable) -> int:
        """Pass on the request's output as it grows; its exit status once it has one.

        `check()` is awaited every second while the request runs: it raises if
        the container is gone (its node lost, its task ended).
        """
        offsets = {"out": 0, "err": 0}
        code_file = self.directory / f"{number}.code"
        waited = 0.0
        while True:
            ended = code_file.exists()  # before the last read: nothing written after it is missed
            for ext, stream in (("out", "stdout"), ("err", "stderr")):
                offsets[ext] = self._pass_on(self.directory / f"{number}.{ext}", offsets[ext], stream, output)
            if ended:
                text = code_file.read_text(encoding="utf-8").strip()
                return int(text) if text.lstrip("-").isdigit() else -1
            await trio.sleep(POLL)
            waited += POLL
            if waited >= 1:
                waited = 0.0
                await check()

    @staticmethod
    def _pass_on(path: Path, offset: int, stream: str, output: Callable[[str, bytes], None]) -> int:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                while data := f.read(CHUNK):
                    output(stream, data)
                    offset += len(data)
        except FileNotFoundError:
            pass
        return offset
