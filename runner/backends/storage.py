"""The shared-storage check of a swarm: every node that may take a job sees the workspace and the run's directory.

One `global` service (not a `global-job`, whose removal leaves its containers
behind on engine 20.10) with restart condition `none` runs a probe task on each
node that is ready and active.  The task lists the workspace into a file named after its node in the
run's directory: a node whose file does not appear does not see the run's
directory; one whose listing differs from this machine's has a workspace of
its own at that path.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from secrets import token_hex

from runner.backends.docker import LABEL_OWNER, _engine_errors, _first_line
from runner.errors import RunNotPossible

PROBE_TIMEOUT = 60.0  # seconds for every node's probe task to end
ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}
SCRIPT = 'ls -A "$1" >"$2/$NODE.tmp" && mv "$2/$NODE.tmp" "$2/$NODE"'


def probe(api, image: str, workspace: str, run_dir: str, labels: dict[str, str]) -> None:
    """RunNotPossible naming each node that cannot take jobs: it does not see the paths, or cannot get `image`."""
    from docker import types
    from docker.errors import DockerException, NotFound

    nodes = {
        n["ID"]: n["Description"].get("Hostname", n["ID"])
        for n in api.nodes()
        if n["Spec"].get("Availability") == "active" and n["Status"].get("State") == "ready"
    }
    directory = Path(run_dir) / f"probe-{token_hex(4)}"
    directory.mkdir(mode=0o777)
    os.chmod(directory, 0o777)
    mounts = [types.Mount(path, path, type="bind", read_only=path == workspace) for path in (workspace, str(directory))]
    template = types.TaskTemplate(
        types.ContainerSpec(
            image, command=["sh", "-c", SCRIPT, "probe", workspace, str(directory)], env={"NODE": "{{.Node.ID}}"},
            mounts=mounts, labels=labels,
        ),
        restart_policy=types.RestartPolicy(condition="none", max_attempts=0),
    )
    labels = {**labels, LABEL_OWNER: f"{socket.gethostname()}:{os.getpid()}"}
    try:
        service = api.create_service(
            template, name=f"runner-probe-{token_hex(4)}", labels=labels, mode=types.ServiceMode("global")
        )["ID"]
    except (DockerException, *_engine_errors()) as e:
        raise RunNotPossible(f"the swarm manager refused the shared-storage probe: {_first_line(e)}") from None
    try:
        ended = _wait(api, service, set(nodes))
    finally:
        try:
            api.remove_service(service)
        except (NotFound, DockerException, *_engine_errors()):
            pass
    expected = sorted(os.listdir(workspace))
    unshared, no_image = [], []
    for node, name in sorted(nodes.items(), key=lambda n: n[1]):
        found = directory / node
        task = ended.get(node)
        named = f"{name} ({node[:12]})"
        if found.exists():
            if sorted(found.read_text(encoding="utf-8").splitlines()) != expected:
                unshared.append(f"{named}: its {workspace} is not this machine's")
        elif task is None:
            unshared.append(f"{named}: its probe did not end within {PROBE_TIMEOUT:g}s")
        elif task["Status"]["State"] == "complete":
            unshared.append(f"{named}: does not see {run_dir}")
        else:
            no_image.append(f"{named}: {task['Status'].get('Err') or task['Status']['State']}")
    shutil.rmtree(directory, ignore_errors=True)
    problems = []
    if unshared:
        problems.append(
            "--backend swarm needs the workspace and runner's state directory on storage every node mounts at the "
            "same path (NFS, for example); these nodes do not see them:\n  " + "\n  ".join(unshared)
            + "\nfix their mounts, or drain them (`docker node update --availability drain NODE`)"
        )
    if no_image:
        problems.append(
            f"these nodes cannot run image `{image}`:\n  " + "\n  ".join(no_image)
            + "\npush it to a registry every node can reach and name it so (--image-map IMAGE=REGISTRY/IMAGE)"
        )
    if problems:
        raise RunNotPossible("\n".join(problems))


def _wait(api, service: str, nodes: set[str]) -> dict[str, dict]:
    """The ended probe task of each node, once all have ended or the time is up."""
    deadline = time.monotonic() + PROBE_TIMEOUT
    ended: dict[str, dict] = {}
    while time.monotonic() < deadline:
        for task in api.tasks(filters={"service": service}):
            if task.get("NodeID") in nodes and task["Status"]["State"] in ENDED:
                ended.setdefault(task["NodeID"], task)
        if set(ended) >= nodes:
            break
        time.sleep(0.2)
    return ended
