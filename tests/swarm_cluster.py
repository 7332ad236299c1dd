"""The three-node swarm `scripts/swarm-cluster up` builds on this machine, as the swarm tests see it.

The host's engine is the manager; two more engines, each in network and UTS
namespaces of their own, are the workers; a registry on the cluster's network
serves the test images.  What a test checks on "every node" it asks each
node's own engine.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from conftest import BUSYBOX, PYTHON

REGISTRY = os.environ.get("RUNNER_REGISTRY", "10.213.7.1:5000")
CLUSTER_RUN = "/run/runner-swarm"  # where scripts/swarm-cluster keeps the workers' sockets and pids
WORKERS = ("w1", "w2")
HOW_TO_START = "the swarm tests need the three-node test cluster: run `sudo scripts/swarm-cluster up`"
# Every image a test workflow names, from the registry every node reaches.
SWARM_IMAGES = [
    arg
    for local, public in ((BUSYBOX, "alpine:3.20"), (PYTHON, "python:3.12-slim"))
    for name in (local.split(":")[0], public)
    for arg in ("--image-map", f"{name}={REGISTRY}/{local}")
]
SWARM = ["--backend", "swarm", *SWARM_IMAGES]
WORKSPACE_LABEL = "dev.runner.workspace"


def worker(name: str):
    import docker

    return docker.DockerClient(base_url=f"unix://{CLUSTER_RUN}/{name}.sock", timeout=30)


@pytest.fixture(scope="session")
def manager():
    """The swarm manager; fails (never skips) when the test cluster is not up."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=60)
        swarm = client.info().get("Swarm") or {}
        nodes = client.api.nodes() if swarm.get("ControlAvailable") else []
        for name in WORKERS:
            worker(name).ping()
        client.api.inspect_distribution(f"{REGISTRY}/{BUSYBOX}")
    except DockerException as e:
        pytest.fail(f"{HOW_TO_START} ({e})", pytrace=False)
    ready = [n for n in nodes if n["Status"]["State"] == "ready"]
    if len(ready) < 3:
        pytest.fail(f"{HOW_TO_START} (found {len(ready)} ready swarm nodes, not 3)", pytrace=False)
    return client


def ours(tmp_path: Path):
    return lambda labels: (labels or {}).get(WORKSPACE_LABEL, "").startswith(str(tmp_path))


@pytest.fixture
def cluster(manager, tmp_path):
    """The manager, checked after the test: no service of the test's runs on it, no container on any node."""
    yield manager
    mine = ours(tmp_path)
    services = [s["Spec"]["Name"] for s in manager.api.services() if mine(s["Spec"].get("Labels"))]
    for service in manager.api.services():
        if mine(service["Spec"].get("Labels")):
            manager.api.remove_service(service["ID"])
    assert not services, f"services left behind: {services}"
    assert leftovers(manager, tmp_path, wait=20) == [], "containers left behind"


def leftovers(manager, tmp_path: Path, wait: float) -> list[str]:
    """The containers of the test's runs on any node, after waiting up to `wait` seconds for them to go
    (a node removes a removed service's container on its own time)."""
    mine = ours(tmp_path)
    deadline = time.monotonic() + wait
    while True:
        found = [
            f"{node}: {c['Names'][0]}"
            for node, client in (("manager", manager), *((w, worker(w)) for w in WORKERS))
            for c in client.api.containers(all=True)
            if mine(c.get("Labels"))
        ]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def summary(path: Path) -> dict:
    """The run's --output-json, without what differs from run to run (ids, durations)."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("run_id", "duration_s", "cached_from")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(path.read_text()))


class Tasks:
    """The nodes the tasks of the test's jobs ran on, watched while a run goes on."""

    def __init__(self, manager, tmp_path: Path):
        self.api = manager.api
        self.mine = ours(tmp_path)
        self.nodes: dict[str, str] = {}  # task id → node id
        self.images: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def _watch(self):
        from docker.errors import NotFound

        while not self.stop.is_set():
            for service in self.api.services():
                labels = service["Spec"].get("Labels") or {}
                if self.mine(labels) and "dev.runner.run-id" in labels:  # a job's, not the storage probe's
                    self.images.add(service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])
                    try:
                        tasks = self.api.tasks(filters={"service": service["ID"]})
                    except NotFound:  # removed since it was listed
                        continue
                    for task in tasks:
                        if task.get("NodeID"):
                            self.nodes[task["ID"]] = task["NodeID"]
            time.sleep(0.2)
