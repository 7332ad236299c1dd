"""`--backend swarm` on a real three-node swarm (`tests/swarm_cluster.py`): the same results as on the
docker backend, jobs placed on the cluster's nodes, and what a swarm cannot do refused where it is written.
"""

from __future__ import annotations

import json

import pytest

from conftest import IMAGE_MAP, ROOT, cli, write
from swarm_cluster import SWARM, SWARM_IMAGES, CLUSTER_RUN, Tasks, cluster, manager, summary  # noqa: F401 (fixtures)
from test_resume import run_id_of
from test_workflows import RUNS


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
        env: {node-version.x: "20"}  # a name sh cannot export
        steps:
          - id: up
            run: |
              import os
              with open(os.environ["RUNNER_OUTPUT"], "a") as f:
                  f.write("upper=" + ${{ jobs.first.outputs.word }}.upper() + "\\n")
                  f.write("odd=" + os.environ["node-version.x"] + "\\n")
        outputs: {upper: '${{ steps.up.outputs.upper }}', odd: '${{ steps.up.outputs.odd }}'}
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
    assert jobs["python"]["outputs"] == {"upper": "HELLO", "odd": "20"}
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


@pytest.mark.parametrize("first", ["", "- run: 'true'"], ids=["one step", "second step"])
def test_a_step_killed_for_memory_on_the_swarm_names_the_limit(cluster, tmp_path, first):
    path = write(tmp_path, f"""
        version: 1
        jobs:
          hog:
            image: runner-test/python
            resources: {{memory: 64m}}
            steps:
              {first}
              - id: allocate
                shell: python
                run: |
                  data = b"x" * (500 * 1024 * 1024)
                  print("allocated", len(data))
    """)
    out = tmp_path / "out.json"
    done = cli("run", path, *SWARM, "--output-json", out, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    reason = json.loads(out.read_text())["jobs"]["hog"]["reason"]
    assert "step `allocate`" in reason and "out of memory (limit 64 MiB)" in reason, reason


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


def test_a_scheduling_timeout_that_is_not_a_number_is_refused(manager, tmp_path):
    path = write(tmp_path, "version: 1\njobs:\n  a:\n    image: runner-test/busybox\n    run: 'true'\n")
    done = cli("run", path, "--backend", "swarm", cwd=tmp_path, env={"RUNNER_SWARM_SCHEDULE_TIMEOUT": "soon"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "RUNNER_SWARM_SCHEDULE_TIMEOUT='soon' is not a number of seconds above 0" in done.stderr
