"""`--backend swarm` when things go wrong: a node lost mid-job, an image a node cannot get, a job no node
can take, a failed job kept for debugging, Ctrl-C and a killed runner; nothing is left on any node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BUSYBOX, ROOT, cli, write
from swarm_cluster import CLUSTER_RUN, SWARM, Tasks, cluster, manager, ours  # noqa: F401 (fixtures)
from test_resume import run_id_of


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


# An image only the manager has, named as if from a registry nobody reaches: the workers fail
# to pull it at once (an image named without a registry would first wait for Docker Hub's address).
LOCAL_ONLY = "127.0.0.1:9/runner-test/local-only:latest"


@pytest.fixture
def local_only(manager):
    manager.api.tag(BUSYBOX, LOCAL_ONLY)
    yield LOCAL_ONLY
    manager.api.remove_image(LOCAL_ONLY)


def test_a_node_that_cannot_get_the_image_is_named(cluster, tmp_path, local_only):
    # Named by an expression, the image is not probed before the run: the job's own task shows the failure.
    path = write(tmp_path, f"""
        version: 1
        jobs:
          local_only:
            image: '${{{{ "{local_only}" }}}}'
            placement: {{constraints: [node.role == worker]}}
            run: echo never
    """)
    done = cli("run", path, "--backend", "swarm", "--output-json", tmp_path / "out.json", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    reason = json.loads((tmp_path / "out.json").read_text())["jobs"]["local_only"]["reason"]
    assert "node runner-swarm-w" in reason and f"cannot get image `{local_only}`" in reason, reason
    assert "push it to a registry every node can reach" in reason


def test_the_probe_names_the_nodes_that_cannot_run_the_image(cluster, tmp_path, local_only):
    path = write(tmp_path, f"version: 1\njobs:\n  a:\n    image: '{local_only}'\n    run: echo never\n")
    done = cli("run", path, "--backend", "swarm", cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"these nodes cannot run image `{local_only}`" in done.stderr
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


