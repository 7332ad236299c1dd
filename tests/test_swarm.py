"""`--backend swarm` on a real three-node swarm: the one `scripts/swarm-cluster up` builds on this machine.

The host's engine is the manager; two more engines, each in network and UTS
namespaces of their own, are the workers; a registry on the cluster's network
serves the test images.  What a test checks on "every node" it asks each
node's own engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import BUSYBOX, IMAGE_MAP, PYTHON, ROOT, cli, write
from test_resume import run_id_of
from test_workflows import RUNS

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
        while not self.stop.is_set():
            for service in self.api.services():
                labels = service["Spec"].get("Labels") or {}
                if self.mine(labels) and "dev.runner.run-id" in labels:  # a job's, not the storage probe's
                    self.images.add(service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])
                    for task in self.api.tasks(filters={"service": service["ID"]}):
                        if task.get("NodeID"):
                            self.nodes[task["ID"]] = task["NodeID"]
            time.sleep(0.2)


# -- the same results as on the docker backend


@pytest.mark.parametrize("name", ["build-and-report.yml", "matrix-fan-in.yml", "report-pipeline.yml",
                                  "retry-and-repeat.yml", "python-stats.yml", "tolerate-failures.yml"])
def test_example_gives_the_same_output_json_as_on_docker(cluster, tmp_path, name):
    args, env, outputs = RUNS[name]
    results = {}
    for backend, images in (("docker", IMAGE_MAP), ("swarm", SWARM_IMAGES)):
        out = tmp_path / f"{backend}.json"
        done = cli("run", ROOT / "workflows" / name, *args, *images, "--backend", backend,
                   "--state-dir", tmp_path / backend, "--output-json", out, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        results[backend] = summary(out)
    assert results["swarm"] == results["docker"]
    assert results["swarm"]["outputs"] == outputs


CHAIN = """
    version: 1
    defaults: {image: runner-test/busybox}
    jobs:
      first:
        steps:
          - id: s
            run: |
              echo "word=hello" >> "$RUNNER_OUTPUT"
              echo "GREETING=hi there" >> "$RUNNER_ENV"
          - id: t
            run: echo "env=$GREETING" >> "$RUNNER_OUTPUT"
        outputs: {word: '${{ steps.s.outputs.word }}', env: '${{ steps.t.outputs.env }}'}
      python:
        needs: first
        image: runner-test/python
        shell: python
        steps:
          - id: up
            run: |
              import os
              with open(os.environ["RUNNER_OUTPUT"], "a") as f:
                  f.write("upper=" + ${{ jobs.first.outputs.word }}.upper() + "\\n")
        outputs: {upper: '${{ steps.up.outputs.upper }}'}
      squares:
        needs: first
        matrix: {n: [1, 2, 3]}
        steps:
          - id: sq
            run: echo "sq=$((${{ matrix.n }} * ${{ matrix.n }}))" >> "$RUNNER_OUTPUT"
        outputs: {sq: '${{ steps.sq.outputs.sq | int }}'}
      flaky:
        retry: {attempts: 3}
        run: |
          echo x >> count-$RUNNER_RUN_ID
          [ "$(wc -l < count-$RUNNER_RUN_ID)" -ge 2 ]
      slow:
        timeout: 2s
        run: echo started; sleep 60
      step_timeout:
        steps:
          - run: sleep 60
            timeout: 1s
            continue_on_error: true
          - run: echo after
    outputs:
      word: '${{ jobs.first.outputs.word }}'
      env: '${{ jobs.first.outputs.env }}'
      total: '${{ jobs.squares.outputs | map(attribute="sq") | sum }}'
"""


def test_chains_matrix_retries_and_timeouts_give_the_same_output_json_as_on_docker(cluster, tmp_path):
    results = {}
    for backend, images in (("docker", IMAGE_MAP), ("swarm", SWARM_IMAGES)):
        workspace = tmp_path / backend
        workspace.mkdir()
        path = write(workspace, CHAIN)
        done = cli("run", path, *images, "--backend", backend, "--output-json", workspace / "out.json", cwd=workspace)
        assert done.returncode == 1, done.stdout + done.stderr
        results[backend] = summary(workspace / "out.json")
    assert results["swarm"] == results["docker"]
    jobs = results["swarm"]["jobs"]
    assert results["swarm"]["outputs"] == {"word": "hello", "env": "hi there", "total": 14}
    assert jobs["python"]["outputs"] == {"upper": "HELLO"}
    assert jobs["flaky"]["attempts"] == 2 and jobs["flaky"]["result"] == "success"
    assert jobs["slow"]["result"] == "failure" and "timed out after 2s" in jobs["slow"]["reason"]
    assert jobs["step_timeout"]["result"] == "success"


CACHED = """
    version: 1
    jobs:
      build:
        image: runner-test/busybox
        cache: true
        cache_outputs: [made.txt]
        steps:
          - id: s
            run: |
              echo made > made.txt
              echo "value=$RUNNER_RUN_ID" >> "$RUNNER_OUTPUT"
        outputs: {value: '${{ steps.s.outputs.value }}'}
"""


def test_cache_hits_on_the_swarm_as_on_docker(cluster, tmp_path):
    path = write(tmp_path, CACHED)
    first = cli("run", path, *SWARM, "--output-json", tmp_path / "first.json", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    (tmp_path / "made.txt").unlink()
    second = cli("run", path, *SWARM, "--output-json", tmp_path / "second.json", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    before, after = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("first", "second"))
    assert after["jobs"]["build"]["cached_from"] == before["run_id"]
    assert after["jobs"]["build"]["outputs"] == before["jobs"]["build"]["outputs"]
    assert (tmp_path / "made.txt").read_text() == "made\n"


RESUMED = """
    version: 1
    defaults: {image: runner-test/busybox}
    jobs:
      first:
        steps:
          - id: s
            run: echo "token=$RANDOM" >> "$RUNNER_OUTPUT"
        outputs: {token: '${{ steps.s.outputs.token }}'}
      flaky:
        needs: first
        run: test -f /workspace/fixed && echo "fixed, got ${{ jobs.first.outputs.token }}"
    outputs: {token: '${{ jobs.first.outputs.token }}'}
"""


def test_resume_on_the_swarm_runs_only_what_did_not_succeed(cluster, tmp_path):
    path = write(tmp_path, RESUMED)
    first = cli("run", path, *SWARM, "--output-json", tmp_path / "first.json", cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    run_id = run_id_of(first.stdout)
    (tmp_path / "fixed").write_text("")
    second = cli("resume", run_id, *SWARM, "--output-json", tmp_path / "second.json", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"resuming run {run_id}: running flaky again; keeping first" in second.stdout
    before, after = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("first", "second"))
    assert after["outputs"] == before["outputs"] and after["jobs"]["first"]["reason"] == "kept from attempt 1"
    assert f"fixed, got {before['outputs']['token']}" in second.stdout


# -- placement on the cluster's nodes

SPREAD = """
    version: 1
    jobs:
      spread:
        image: runner-test/busybox
        matrix: {n: [1, 2, 3, 4, 5, 6]}
        resources: {cpus: %s}
        run: echo "job ${{ matrix.n }}"; sleep 2
"""


def test_jobs_land_on_every_node_and_reserve_their_cpus(cluster, tmp_path):
    cpus = min(n["Description"]["Resources"]["NanoCPUs"] for n in cluster.api.nodes()) / 1e9
    path = write(tmp_path, SPREAD % cpus)
    with Tasks(cluster, tmp_path) as tasks:
        done = cli("run", path, *SWARM, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[spread (n=6)/1] job 6" in done.stdout
    # Each job takes all of a node's CPUs: the six land on all three nodes.
    assert len(set(tasks.nodes.values())) == 3, tasks.nodes
    # Every node runs the same image: named by its digest.
    assert tasks.images and all("@sha256:" in image for image in tasks.images), tasks.images


def test_a_job_no_node_can_take_fails_after_the_scheduling_timeout(cluster, tmp_path):
    path = write(tmp_path, """
        version: 1
        jobs:
          huge:
            image: runner-test/busybox
            resources: {cpus: 64}
            run: echo never
          nowhere:
            image: runner-test/busybox
            placement: {constraints: [node.labels.runner-test-nothing == yes]}
            run: echo never
    """)
    done = cli("run", path, *SWARM, "--output-json", tmp_path / "out.json", cwd=tmp_path,
               env={"RUNNER_SWARM_SCHEDULE_TIMEOUT": "3"})
    assert done.returncode == 1, done.stdout + done.stderr
    jobs = json.loads((tmp_path / "out.json").read_text())["jobs"]
    for job, why in (("huge", "insufficient resources"), ("nowhere", "scheduling constraints")):
        assert "no node took the job's container within 3s" in jobs[job]["reason"], jobs[job]
        assert why in jobs[job]["reason"], jobs[job]


def test_placement_constraints_choose_the_node(cluster, tmp_path):
    path = write(tmp_path, """
        version: 1
        jobs:
          manager:
            image: runner-test/busybox
            placement: {constraints: [node.role == manager]}
            matrix: {n: [1, 2, 3]}
            run: echo on the manager
    """)
    with Tasks(cluster, tmp_path) as tasks:
        done = cli("run", path, *SWARM, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    managers = {n["ID"] for n in cluster.api.nodes() if n["Spec"]["Role"] == "manager"}
    assert tasks.nodes and set(tasks.nodes.values()) <= managers


# -- failures


def test_a_worker_engine_killed_mid_job_fails_the_attempt_naming_its_node_and_the_retry_runs_elsewhere(cluster, tmp_path):
    path = write(tmp_path, """
        version: 1
        jobs:
          long:
            image: runner-test/busybox
            placement: {constraints: [node.role == worker]}
            retry: {attempts: 2}
            run: echo "started"; sleep 20; echo "finished"
    """)
    names = {n["ID"]: n["Description"]["Hostname"] for n in cluster.api.nodes()}
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", path, *SWARM, "--output-json", tmp_path / "out.json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    killed = None
    try:
        with Tasks(cluster, tmp_path) as tasks:
            deadline = time.monotonic() + 60
            while not tasks.nodes and time.monotonic() < deadline:
                time.sleep(0.2)
            assert tasks.nodes, "the job was never placed"
            first_node = next(iter(tasks.nodes.values()))
            killed = names[first_node].rsplit("-", 1)[1]  # runner-swarm-w1 → w1
            time.sleep(2)  # the step runs
            os.kill(int(Path(f"{CLUSTER_RUN}/{killed}.pid").read_text()), signal.SIGKILL)
            output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
        if killed is not None:  # the cluster as it was, for the tests after this one
            subprocess.run([ROOT / "scripts" / "swarm-cluster", "up"], check=True, capture_output=True, timeout=180)
    assert process.returncode == 0, output
    job = json.loads((tmp_path / "out.json").read_text())["jobs"]["long"]
    assert job["attempts"] == 2 and job["result"] == "success"
    assert f"node {names[first_node]} ({first_node[:12]}) was lost while running the job" in output
    assert len(set(tasks.nodes.values())) == 2 and "finished" in output


def test_a_node_that_cannot_get_the_image_is_named(cluster, tmp_path):
    # The image is on the manager only, and named by an expression: the job's own task shows the failure.
    path = write(tmp_path, """
        version: 1
        jobs:
          local_only:
            image: '${{ "runner-test/busybox" }}'
            placement: {constraints: [node.role == worker]}
            run: echo never
    """)
    done = cli("run", path, "--backend", "swarm", "--output-json", tmp_path / "out.json", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    reason = json.loads((tmp_path / "out.json").read_text())["jobs"]["local_only"]["reason"]
    assert "node runner-swarm-w" in reason and "cannot get image `runner-test/busybox`" in reason, reason
    assert "push it to a registry every node can reach" in reason


def test_the_probe_names_the_nodes_that_cannot_run_the_image(cluster, tmp_path):
    path = write(tmp_path, "version: 1\njobs:\n  a:\n    image: runner-test/busybox\n    run: echo never\n")
    done = cli("run", path, "--backend", "swarm", cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "these nodes cannot run image `runner-test/busybox`" in done.stderr
    assert "runner-swarm-w1" in done.stderr and "runner-swarm-w2" in done.stderr
    assert "Traceback" not in done.stderr


def test_keep_on_failure_names_the_node_and_runs_clean_removes_the_service(cluster, tmp_path):
    path = write(tmp_path, "version: 1\njobs:\n  bad:\n    image: runner-test/busybox\n    run: exit 4\n")
    done = cli("run", path, *SWARM, "--keep-on-failure", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    nodes = [n["Description"]["Hostname"] for n in cluster.api.nodes()]
    assert any(f"container kept for debugging on node {node} (" in done.stdout for node in nodes), done.stdout
    run_id = run_id_of(done.stdout)
    assert [s for s in cluster.api.services() if ours(tmp_path)(s["Spec"].get("Labels"))]
    clean = cli("runs", "clean", run_id, cwd=tmp_path)
    assert clean.returncode == 0 and "removed runner-" in clean.stdout, clean.stdout + clean.stderr


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_ctrl_c_removes_the_services_and_a_killed_runner_s_are_reaped_by_the_next_run(cluster, tmp_path, how):
    path = write(tmp_path, """
        version: 1
        jobs:
          slow:
            image: runner-test/busybox
            matrix: {n: [1, 2]}
            run: echo "waiting"; sleep 60
    """)
    with Tasks(cluster, tmp_path) as tasks:
        process = subprocess.Popen([sys.executable, "-m", "runner", "run", path, *SWARM], cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while len(tasks.nodes) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        process.send_signal(how)
        output, _ = process.communicate(timeout=60)
    services = [s for s in cluster.api.services() if ours(tmp_path)(s["Spec"].get("Labels"))]
    if how == signal.SIGINT:
        assert process.returncode == 130, output
        assert services == []
        return
    assert len(services) == 2
    again = cli("run", write(tmp_path, "version: 1\njobs:\n  a:\n    image: runner-test/busybox\n    run: 'true'\n",
                             "other.yml"), *SWARM, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [s for s in cluster.api.services() if ours(tmp_path)(s["Spec"].get("Labels"))] == []


# -- refusals


def test_an_engine_that_is_not_a_swarm_manager_is_refused(manager, tmp_path):
    path = write(tmp_path, "version: 1\njobs:\n  a:\n    image: runner-test/busybox\n    run: 'true'\n")
    done = cli("run", path, "--backend", "swarm", cwd=tmp_path,
               env={"DOCKER_HOST": f"unix://{CLUSTER_RUN}/w1.sock"})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "--backend swarm needs a swarm manager" in done.stderr and "docs/distributed.md" in done.stderr


def test_services_and_no_network_are_refused_on_the_swarm_where_they_are_written(manager, tmp_path):
    path = write(tmp_path, """
        version: 1
        jobs:
          a:
            image: runner-test/busybox
            services:
              db: {image: runner-test/busybox}
            run: 'true'
          b:
            image: runner-test/busybox
            network: none
            run: 'true'
    """)
    done = cli("run", path, cwd=tmp_path, env={"RUNNER_BACKEND": "swarm"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "workflow.yml:5:5: --backend swarm cannot run `services`" in done.stderr
    assert "workflow.yml:10:5: --backend swarm cannot honour `network: none`" in done.stderr


@pytest.mark.parametrize("backend", ["docker", "local"])
def test_placement_is_refused_where_it_is_written_by_backends_without_a_cluster(tmp_path, backend):
    path = write(tmp_path, """
        version: 1
        jobs:
          a:
            image: runner-test/busybox
            placement: {constraints: [node.role == manager]}
            run: 'true'
    """)
    done = cli("run", path, cwd=tmp_path, env={"RUNNER_BACKEND": backend})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"workflow.yml:5:5: --backend {backend} cannot honour `placement`" in done.stderr


def test_a_malformed_placement_is_refused_by_the_schema(tmp_path):
    path = write(tmp_path, """
        version: 1
        jobs:
          a:
            image: runner-test/busybox
            placement: {constraints: [on the manager please]}
            run: 'true'
    """)
    done = cli("validate", path, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "workflow.yml:5:" in done.stderr and "a placement constraint is `ATTRIBUTE == VALUE`" in done.stderr
