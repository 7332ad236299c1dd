"""`runner serve` with container jobs: logs as they are written, pause, cancel, resume, and signals."""

from __future__ import annotations

import json
import signal
import time

import pytest
from httpx_sse import connect_sse

from conftest import BUSYBOX, cli, write
from serving import Served

SLOW = f"""
    version: 1
    name: slow
    jobs:
      first:
        image: {BUSYBOX}
        steps:
          - name: count
            run: for i in 1 2 3 4; do echo "line $i"; sleep 0.5; done
      second:
        needs: first
        image: {BUSYBOX}
        steps:
          - run: echo second
"""

LONG = f"""
    version: 1
    jobs:
      sleeper:
        image: {BUSYBOX}
        steps:
          - run: echo started; sleep 300
      cleanup:
        needs: sleeper
        if: always()
        outputs: {{done: yes}}
"""

FLAKY = f"""
    version: 1
    jobs:
      check:
        image: {BUSYBOX}
        steps:
          - run: test -f /workspace/fixed
      after:
        needs: check
        outputs: {{ok: 1}}
"""


@pytest.fixture
def workflows(tmp_path):
    directory = tmp_path / "workflows"
    directory.mkdir()
    write(directory, SLOW, "slow.yml")
    write(directory, LONG, "long.yml")
    write(directory, FLAKY, "flaky.yml")
    return directory


@pytest.fixture
def server(tmp_path, workflows, docker):
    served = Served("--workflows", workflows, "--state-dir", tmp_path / "state", cwd=tmp_path)
    yield served
    served.stop()


def test_a_container_jobs_log_lines_stream_while_it_runs(server):
    run_id = server.start("slow.yml")
    seen = []
    with connect_sse(server.client, "GET", f"/runs/{run_id}/events") as source:
        for event in source.iter_sse():
            seen.append((event.event, time.monotonic(), event.json()))
    kinds = [s[0] for s in seen]
    assert kinds[-1] == "run.finished"
    logs = [s[2]["line"] for s in seen if s[0] == "node.log"]
    assert logs == ["line 1", "line 2", "line 3", "line 4", "second"]
    first_line = next(s[1] for s in seen if s[0] == "node.log")
    first_done = next(s[1] for s in seen if s[0] == "node.finished")
    assert first_done - first_line > 1.0  # the first line came as it was written, not at the job's end

    whole = server.client.get(f"/runs/{run_id}/logs/first/1")
    assert whole.text == "line 1\nline 2\nline 3\nline 4\n"
    assert whole.headers["x-log-size"] == str(len(whole.text))
    assert server.client.get(f"/runs/{run_id}/logs/first/1", params={"offset": 7}).text == "line 2\nline 3\nline 4\n"
    assert server.client.get(f"/runs/{run_id}/logs/first/1", params={"tail": 2}).text == "line 3\nline 4\n"
    assert server.client.get(f"/runs/{run_id}/logs/nojob").status_code == 404
    assert cli("logs", run_id, "first", "--state-dir", server_state(server)).stdout.endswith("line 4\n")


def server_state(server) -> str:
    return server.stdout[0].split("runs kept in ")[1].rstrip(")\n")


def test_pause_lets_running_jobs_finish_and_starts_nothing_until_unpaused(server):
    run_id = server.start("slow.yml")
    server.wait_for(run_id, "running")
    assert server.client.post(f"/runs/{run_id}/pause").json() == {"run_id": run_id, "status": "paused"}
    deadline = time.monotonic() + 30
    while server.client.get(f"/runs/{run_id}").json()["jobs"].get("first", {}).get("state") != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)
    run = server.client.get(f"/runs/{run_id}").json()
    assert run["status"] == "paused" and "second" not in run["jobs"]
    listed = cli("runs", "list", "--state-dir", server_state(server)).stdout
    assert f"{run_id}  " in listed and "paused" in listed
    assert server.client.post(f"/runs/{run_id}/unpause").json()["status"] == "running"
    run = server.wait_for(run_id, "success")
    assert run["jobs"]["second"]["state"] == "succeeded"
    kinds = [e["event"] for e in server.events(run_id)]
    paused, unpaused = kinds.index("run.paused"), kinds.index("run.unpaused")
    assert paused < kinds.index("node.finished") < unpaused < len(kinds) - 1 - kinds[::-1].index("node.started")


def test_cancel_stops_the_run_lets_cleanup_run_and_removes_its_containers(server):
    run_id = server.start("long.yml")
    with server.client.stream("GET", f"/runs/{run_id}/events") as response:
        for line in response.iter_lines():
            if '"line":"started"' in line:
                break
    response = server.client.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 202
    run = server.wait_for(run_id, "cancelled", timeout=30)
    assert run["jobs"]["sleeper"]["state"] == "cancelled"
    assert run["jobs"]["cleanup"]["state"] == "succeeded"
    # the docker fixture finds no container left behind


def test_resume_runs_again_what_failed_as_a_new_attempt(server, workflows):
    response = server.client.post("/runs", params={"wait": 60}, json={"workflow": "flaky.yml"})
    run_id = response.json()["run_id"]
    assert response.json()["status"] == "failure"
    assert server.client.post(f"/runs/{run_id}/cancel").status_code == 409  # it has ended
    (workflows / "fixed").write_text("")  # the workflow's directory is its workspace
    resumed = server.client.post(f"/runs/{run_id}/resume", params={"wait": 60}, json={})
    assert resumed.status_code == 201, resumed.text
    run = resumed.json()
    assert run["run_id"] == run_id and run["status"] == "success"
    assert [a["command"] for a in run["attempts"]] == ["run", "resume"]
    first = server.events(run_id)  # a stream ends with an attempt's run.finished
    assert first[-1]["event"] == "run.finished" and first[-1]["data"]["status"] == "failure"
    second = server.events(run_id, after=first[-1]["id"])
    assert second[0]["event"] == "run.started" and second[0]["data"]["attempt"] == 2
    assert second[-1]["event"] == "run.finished" and second[-1]["data"]["status"] == "success"
    assert [e["id"] for e in first + second] == list(range(1, len(first) + len(second) + 1))
    again = server.client.post(f"/runs/{run_id}/resume", json={})
    assert again.status_code == 409 and "nothing to resume" in again.json()["detail"]


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_cancels_the_runs_as_the_cli_does_and_removes_their_containers(tmp_path, workflows, docker, signum, status):
    served = Served("--workflows", workflows, "--state-dir", tmp_path / "state", cwd=tmp_path)
    run_id = served.start("long.yml")
    with served.client.stream("GET", f"/runs/{run_id}/events") as response:
        for line in response.iter_lines():
            if '"line":"started"' in line:
                break
    assert served.stop(signum) == status
    shown = json.loads(cli("runs", "show", run_id, "--format", "json", "--state-dir", tmp_path / "state").stdout)
    assert shown["status"] == "cancelled"
    assert shown["jobs"]["sleeper"]["result"] == "cancelled" and shown["jobs"]["cleanup"]["result"] == "success"


def test_runs_of_a_killed_server_show_as_killed_and_resume(tmp_path, workflows, docker):
    served = Served("--workflows", workflows, "--state-dir", tmp_path / "state", cwd=tmp_path)
    run_id = served.start("slow.yml")
    with served.client.stream("GET", f"/runs/{run_id}/events") as response:
        for line in response.iter_lines():
            if '"line":"line 1"' in line:
                break
    assert served.stop(signal.SIGKILL) == -signal.SIGKILL
    again = Served("--workflows", workflows, "--state-dir", tmp_path / "state", cwd=tmp_path)
    try:
        assert again.client.get(f"/runs/{run_id}").json()["status"] == "killed"
        before = again.events(run_id)
        assert before[-1]["event"] != "run.finished"  # the stream of a dead run ends all the same
        resumed = again.client.post(f"/runs/{run_id}/resume", params={"wait": 60}, json={})
        assert resumed.status_code == 201 and resumed.json()["status"] == "success"
        events = again.events(run_id)
        assert events[:len(before)] == before and events[-1]["event"] == "run.finished"
    finally:
        again.stop()


def test_runs_beyond_the_concurrency_wait_their_turn(tmp_path, workflows, docker):
    write(workflows, "version: 1\njobs:\n  a: {outputs: {x: 1}}\n", "quick.yml")
    served = Served("--workflows", workflows, "--state-dir", tmp_path / "state", "--concurrency", "1", cwd=tmp_path)
    try:
        long_run = served.start("long.yml")
        queued = served.client.post("/runs", json={"workflow": "quick.yml"})
        assert queued.status_code == 201 and queued.json()["status"] == "queued"
        dropped = served.start("quick.yml")
        listed = {r["run_id"]: r["status"] for r in served.client.get("/runs").json()["runs"]}
        assert listed[queued.json()["run_id"]] == "queued" and listed[long_run] == "running"
        assert served.client.post(f"/runs/{dropped}/cancel").status_code == 202
        assert served.client.post(f"/runs/{long_run}/cancel").status_code == 202
        assert served.wait_for(queued.json()["run_id"], "success")["jobs"]["a"]["state"] == "succeeded"
        assert served.wait_for(dropped, "cancelled")["reason"].startswith("cancelled before it started")
    finally:
        served.stop()


def test_a_quiet_stream_sends_a_heartbeat_every_15_seconds(server):
    run_id = server.start("long.yml")
    started = time.monotonic()
    with server.client.stream("GET", f"/runs/{run_id}/events", headers={"Accept": "text/event-stream"}) as response:
        for line in response.iter_lines():
            if line.startswith(":"):
                break
    assert line == ": heartbeat" and 14 < time.monotonic() - started < 25
    server.client.post(f"/runs/{run_id}/cancel")
    server.wait_for(run_id, "cancelled")


def test_secrets_are_masked_in_events_logs_and_runs(tmp_path, workflows, docker):
    write(workflows, f"""
        version: 1
        secrets: [DEPLOY_KEY]
        jobs:
          show:
            image: {BUSYBOX}
            steps:
              - run: echo "key is $DEPLOY_KEY"
                env: {{DEPLOY_KEY: "${{{{ secrets.DEPLOY_KEY }}}}"}}
          leak:
            outputs: {{key: "${{{{ secrets.DEPLOY_KEY }}}}"}}
        outputs:
          key: ${{{{ jobs.leak.outputs.key }}}}
    """, "secret.yml")
    secret = "hunter2-very-secret"
    served = Served("--workflows", workflows, "--state-dir", tmp_path / "state", cwd=tmp_path,
                    env={"DEPLOY_KEY": secret})
    try:
        run_id = served.start("secret.yml", wait=60)
        events = served.client.get(f"/runs/{run_id}/events").text
        assert "key is ***" in events and secret not in events
        run = served.client.get(f"/runs/{run_id}").text
        assert '"key":"***"' in run.replace(" ", "") and secret not in run
        assert served.client.get(f"/runs/{run_id}/logs/show").text.strip().endswith("key is ***")
    finally:
        served.stop()
    assert secret not in served.output()


def test_image_map_applies_to_every_run_of_the_server(tmp_path, docker):
    directory = tmp_path / "mapped"
    directory.mkdir()
    write(directory, """
        version: 1
        jobs:
          where:
            image: alpine:3.20
            steps:
              - run: echo "mapped onto busybox"
    """, "mapped.yml")
    served = Served("--workflows", directory, "--state-dir", tmp_path / "state",
                    "--image-map", f"alpine:3.20={BUSYBOX}", cwd=tmp_path)
    try:
        run = served.client.post("/runs", params={"wait": 60}, json={"workflow": "mapped.yml"}).json()
        assert run["status"] == "success", run
        assert served.client.get(f"/runs/{run['run_id']}/logs/where/1").text == "mapped onto busybox\n"
    finally:
        served.stop()
    bad = cli("serve", "--image-map", "alpine", cwd=tmp_path)
    assert bad.returncode == 2 and "--image-map takes NAME=VALUE, got 'alpine'" in bad.stderr
