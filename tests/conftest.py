"""Shared fixtures: the real Docker engine, the local test images, and running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUSYBOX = "runner-test/busybox:latest"
PYTHON = "runner-test/python:latest"
# The example workflows name public images; these local ones stand in for them.
IMAGE_MAP = ["--image-map", f"alpine:3.20={BUSYBOX}", "--image-map", f"python:3.12-slim={PYTHON}"]
LABEL = "dev.runner.run-id"

HOW_TO_START = (
    "the tests of container behaviour need a running Docker engine and the local test images.\n"
    "Start the engine with `sudo scripts/docker-engine` (or `sudo dockerd &`), build the images with "
    "`scripts/test-images`, or run everything with `scripts/dev test`."
)


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory, monkeypatch) -> Path:
    """Runs are kept under a temporary XDG_STATE_HOME, never the user's ~/.local/state, and
    outside the test's workspace (tmp_path), as by default."""
    home = tmp_path_factory.mktemp("xdg-state")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    monkeypatch.delenv("RUNNER_STATE_DIR", raising=False)
    return home


def state_of(workspace: Path) -> Path:
    """The state directory runner uses by default for the workflows of `workspace`."""
    from runner.history.store import project_state_dir

    return project_state_dir(workspace)


@pytest.fixture(scope="session")
def docker_client():
    """The engine the tests use; fails (never skips) when there is none."""
    import docker
    from docker.errors import DockerException, ImageNotFound

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as e:
        pytest.fail(f"cannot reach the Docker engine ({e}): {HOW_TO_START}", pytrace=False)
    for image in (BUSYBOX, PYTHON):
        try:
            client.images.get(image)
        except ImageNotFound:
            pytest.fail(f"the test image {image} is missing: {HOW_TO_START}", pytrace=False)
    return client


@pytest.fixture
def docker(docker_client, tmp_path):
    """The engine, checked after the test for containers the runner left behind.

    Only containers whose workspace is the test's own (or the example workflows',
    this repository) count, so that other runs on the same engine do not disturb the check.
    """
    yield docker_client
    from docker.errors import NotFound

    def mine(workspace: str) -> bool:
        return workspace == str(ROOT) or workspace.startswith(str(tmp_path))

    # The low-level listing carries the labels: no per-container call that a
    # container removed in the meantime could fail.
    left = [
        c for c in docker_client.api.containers(all=True, filters={"label": LABEL})
        if mine(c["Labels"].get("dev.runner.workspace", ""))
    ]
    for container in left:
        try:
            docker_client.api.remove_container(container["Id"], force=True)
        except NotFound:
            pass
    networks = [
        n for n in docker_client.api.networks(filters={"label": LABEL})
        if mine((n.get("Labels") or {}).get("dev.runner.workspace", ""))
    ]
    for network in networks:
        try:
            docker_client.api.remove_network(network["Id"])
        except NotFound:
            pass
    assert not left, f"containers left behind: {[c['Names'] for c in left]}"
    assert not networks, f"networks left behind: {[n['Name'] for n in networks]}"


def installed(command: str) -> str:
    """A command the test extras install beside the tests' own interpreter.

    Looked up there, never on PATH: what happens to be installed on the machine
    must not decide what the tests run.
    """
    path = Path(sysconfig.get_path("scripts")) / command
    if not path.exists():
        pytest.fail(f"{path} is missing: it comes with the test extras; run `scripts/dev setup`", pytrace=False)
    return str(path)


def write(directory: Path, text: str, name: str = "workflow.yml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`runner ARGS…` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
