"""`runner serve`: the API as a client sees it, against a real server on 127.0.0.1 (value jobs only here;
container jobs, pausing, cancelling and signals are in test_server_runs.py)."""

from __future__ import annotations

import json
import signal

import httpx
import pytest

from conftest import cli, write
from serving import Served

HELLO = """
    version: 1
    name: hello
    inputs:
      who: {type: string, default: world}
      times: {type: integer, default: 1}
    jobs:
      greet:
        outputs: {text: "hello ${{ inputs.who }}"}
      shout:
        needs: greet
        outputs: {text: "${{ jobs.greet.outputs.text | upper }}"}
    outputs:
      text: ${{ jobs.shout.outputs.text }}
    description: Greets whom it is told to.
"""

BROKEN = """
    version: 1
    jobs:
      a:
        needs: nowhere
        outputs: {x: 1}
"""


@pytest.fixture
def workflows(tmp_path):
    directory = tmp_path / "workflows"
    (directory / "nested").mkdir(parents=True)
    write(directory, HELLO, "hello.yml")
    write(directory / "nested", HELLO.replace("name: hello", "name: nested"), "again.yml")
    write(directory, BROKEN, "broken.yml")
    return directory


@pytest.fixture
def server(tmp_path, workflows):
    served = Served("--workflows", workflows, "--state-dir", tmp_path / "state", cwd=tmp_path)
    yield served
    served.stop()


def test_health_workflows_and_a_run_waited_for(server):
    assert server.client.get("/health").json() == {"status": "ok"}
    listed = server.client.get("/workflows").json()
    assert [w["name"] for w in listed["workflows"]] == ["hello.yml", "nested/again.yml"]
    hello = listed["workflows"][0]
    assert hello["title"] == "hello" and hello["description"] == "Greets whom it is told to."
    assert hello["inputs"][0] == {"name": "who", "type": "string", "default": "world", "required": False,
                                  "description": ""}
    assert hello["jobs"][1] == {"id": "shout", "name": "shout", "kind": "value", "needs": ["greet"]}
    broken = listed["invalid"][0]
    assert broken["name"] == "broken.yml"
    assert "runner: broken.yml is not registered:" in server.output()
    assert broken["problems"][0]["line"] == 4 and "nowhere" in broken["problems"][0]["message"]

    response = server.client.post("/runs", params={"wait": 30}, json={"workflow": "hello.yml", "inputs": {"who": "api"}})
    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "success"
    assert run["outputs"] == {"text": "HELLO API"}
    assert run["registered"] == "hello.yml"
    assert run["jobs"]["greet"]["state"] == "succeeded" and run["jobs"]["greet"]["outputs"] == {"text": "hello api"}
    assert run["jobs"]["shout"]["started"] >= run["jobs"]["greet"]["finished"]
    assert {"id": "shout", "name": "shout", "kind": "value", "needs": ["greet"]} in run["graph"]
    assert server.client.get(f"/runs/{run['run_id']}").json()["outputs"] == {"text": "HELLO API"}


def test_a_run_is_answered_once_begun_and_listed(server):
    response = server.client.post("/runs", json={"workflow": "nested/again.yml"})
    assert response.status_code == 201
    run_id = response.json()["run_id"]
    server.wait_for(run_id, "success")
    runs = server.client.get("/runs", params={"workflow": "nested/again.yml"}).json()["runs"]
    assert [r["run_id"] for r in runs] == [run_id]
    assert runs[0]["registered"] == "nested/again.yml" and runs[0]["status"] == "success"
    assert server.client.get("/runs", params={"status": "failure"}).json()["runs"] == []


def test_pages_of_runs_follow_the_cursor(server):
    ids = [server.start("hello.yml", wait=30) for _ in range(3)]
    first = server.client.get("/runs", params={"limit": 2}).json()
    assert [r["run_id"] for r in first["runs"]] == ids[::-1][:2]
    second = server.client.get("/runs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["run_id"] for r in second["runs"]] == ids[:1] and second["next_cursor"] is None


def test_errors_are_problems_located_as_the_cli_locates_them(server, workflows):
    unknown = server.client.post("/runs", json={"workflow": "nope.yml"})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["detail"] == "no workflow `nope.yml` is registered"

    bad = server.client.post("/runs", json={"workflow": "hello.yml", "inputs": {"times": "many", "whom": 1}})
    assert bad.status_code == 422
    problems = bad.json()["problems"]
    by_message = {p["message"]: p for p in problems}
    times = by_message["input `times`: expected an integer, got 'many'"]
    assert times["file"].endswith("hello.yml") and times["line"] == 5 and times["path"] == "inputs.times"
    assert any("`whom` is not an input" in m and "did you mean `who`" in m for m in by_message)
    cli_run = cli("run", workflows / "hello.yml", "--input", "times=many")
    assert "input `times`: expected an integer, got 'many'" in cli_run.stderr

    invalid = server.client.post("/runs", json={"workflow": "broken.yml"})
    assert invalid.status_code == 422 and invalid.json()["problems"][0]["line"] == 4

    not_json = server.client.post("/runs", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["detail"].startswith("the body is not JSON")
    for text in (b'{"workflow": "hello.yml", "inputs": {"times": NaN}}', b"[" * 100_000 + b"]" * 100_000):
        odd = server.client.post("/runs", content=text)
        assert odd.status_code == 400 and odd.json()["detail"].startswith("the body is not JSON")
    far = server.client.get("/runs/nope/events", headers={"Last-Event-ID": str(2**70)})
    assert far.status_code in (400, 404)
    wrong = server.client.post("/runs", json={"workflow": "hello.yml", "inputs": ["who"]})
    assert wrong.status_code == 422 and wrong.json()["detail"] == "`inputs` must be an object"
    huge = server.client.post("/runs", json={"workflow": "hello.yml", "inputs": {"who": "x" * (2 << 20)}})
    assert huge.status_code == 413
    posted = server.client.post("/runs", json={"source": HELLO})
    assert posted.status_code == 403 and "--allow-posted-workflows" in posted.json()["detail"]
    assert server.client.get("/runs/nope").status_code == 404
    assert server.client.get("/runs/nope/events").status_code == 404
    assert server.client.post("/runs/nope/cancel").status_code == 404
    assert server.client.get("/nowhere").json()["status"] == 404
    assert server.client.delete("/runs").status_code == 405
    for response in (unknown, bad, invalid, not_json, wrong, huge, posted):
        assert "Traceback" not in response.text


def test_events_resume_after_the_last_event_id_without_loss_or_duplicates(server):
    run_id = server.start("hello.yml", wait=30)
    events = server.events(run_id, sse=True)
    assert [e["event"] for e in events] == [
        "run.started", "node.started", "node.finished", "node.started", "node.finished", "run.finished",
    ]
    assert [e["id"] for e in events] == list(range(1, 7))
    assert events[2]["data"] == {"node": "greet", "job": "greet", "state": "succeeded", "result": "success",
                                 "reason": "", "attempts": 1, "duration_s": events[2]["data"]["duration_s"]}
    assert events[-1]["data"]["status"] == "success" and events[-1]["data"]["outputs"] == {"text": "HELLO WORLD"}
    resumed = server.events(run_id, sse=True, **{"Last-Event-ID": "3"})
    assert resumed == events[3:]
    assert server.events(run_id, after=5) == [{k: e[k] for k in ("id", "event", "data")} for e in events[5:]]


def test_runs_of_the_cli_and_of_the_api_are_the_same_runs(server, tmp_path, workflows):
    api_run = server.start("hello.yml", {"who": "api"}, wait=30)
    state = tmp_path / "state"
    listed = json.loads(cli("runs", "list", "--format", "json", "--state-dir", state).stdout)
    assert api_run in [r["id"] for r in listed]
    shown = json.loads(cli("runs", "show", api_run, "--format", "json", "--state-dir", state).stdout)
    assert shown["outputs"] == {"text": "HELLO API"}

    done = cli("run", workflows / "hello.yml", "--input", "who=cli", "--state-dir", state, "--output-json",
               tmp_path / "out.json")
    assert done.returncode == 0, done.stderr
    cli_run = json.loads((tmp_path / "out.json").read_text())["run_id"]
    runs = server.client.get("/runs").json()["runs"]
    assert runs[0]["run_id"] == cli_run and runs[0]["registered"] == "hello.yml"
    assert server.client.get(f"/runs/{cli_run}").json()["outputs"] == {"text": "HELLO CLI"}
    events = server.events(cli_run)
    assert events[0]["event"] == "run.started" and events[-1]["event"] == "run.finished"


def test_one_job_with_given_values(server):
    response = server.client.post("/workflows/hello.yml/jobs/shout/run",
                                  json={"set": {"jobs.greet.outputs.text": "given"}})
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "success" and run["jobs"]["shout"]["outputs"] == {"text": "GIVEN"}
    assert list(run["jobs"]) == ["shout"]
    missing = server.client.post("/workflows/hello.yml/jobs/shout/run", json={})
    assert missing.status_code == 422 and "jobs.greet.outputs.text" in missing.json()["detail"]
    assert server.client.post("/workflows/hello.yml/jobs/nojob/run", json={}).status_code == 404


def test_posted_workflows_when_allowed(tmp_path, workflows):
    served = Served("--workflows", workflows, "--state-dir", tmp_path / "state", "--allow-posted-workflows",
                    cwd=tmp_path)
    try:
        response = served.client.post("/runs", params={"wait": 30}, json={"source": HELLO, "inputs": {"who": "text"}})
        assert response.status_code == 201 and response.json()["outputs"] == {"text": "HELLO TEXT"}
        broken = served.client.post("/runs", json={"source": "version: 1\njobs: {a: {needs: b}}\n"})
        assert broken.status_code == 422 and broken.json()["problems"][0]["line"] == 2
    finally:
        served.stop()


def test_tokens_guard_every_endpoint_but_health_and_are_never_logged(tmp_path, workflows):
    token = "s3cret-token-value"
    (tmp_path / "tokens").write_text(f"# clients\n{token}\n")
    served = Served("--workflows", workflows, "--state-dir", tmp_path / "state", "--token-file", tmp_path / "tokens",
                    cwd=tmp_path, token=token)
    try:
        anonymous = httpx.Client(base_url=served.api)
        run_id = served.start("hello.yml", wait=30)
        assert anonymous.get("/health").status_code == 200
        for method, path in [("GET", "/workflows"), ("GET", "/runs"), ("POST", "/runs"), ("GET", f"/runs/{run_id}"),
                             ("GET", f"/runs/{run_id}/events"), ("GET", f"/runs/{run_id}/logs/greet"),
                             ("POST", f"/runs/{run_id}/cancel"), ("POST", f"/runs/{run_id}/pause"),
                             ("POST", f"/runs/{run_id}/resume"), ("GET", "/openapi.json"),
                             ("POST", "/workflows/hello.yml/jobs/greet/run")]:
            response = anonymous.request(method, path, headers={"Authorization": "Bearer wrong"})
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"
            assert anonymous.request(method, path).status_code == 401
        assert anonymous.get(f"/runs/{run_id}/events", params={"token": token}).status_code == 200
        assert anonymous.get(f"/runs/{run_id}", params={"token": token}).status_code == 401
        assert anonymous.get("/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        served.stop()
    assert token not in served.output()


def test_no_other_address_without_tokens(tmp_path, workflows):
    refused = cli("serve", "--host", "0.0.0.0", "--workflows", workflows, cwd=tmp_path, env={"RUNNER_TOKENS": ""})
    assert refused.returncode == 2
    assert "--host 0.0.0.0" in refused.stderr and "--token-file" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_openapi_document_describes_every_route(server):
    document = server.client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/api/v1/health", "/api/v1/openapi.json", "/api/v1/workflows", "/api/v1/workflows/{name}",
        "/api/v1/workflows/{name}/jobs/{job}/run", "/api/v1/runs", "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/events", "/api/v1/runs/{run_id}/logs/{target}", "/api/v1/runs/{run_id}/cancel",
        "/api/v1/runs/{run_id}/pause", "/api/v1/runs/{run_id}/unpause", "/api/v1/runs/{run_id}/resume",
    }


def test_sigterm_with_nothing_running_exits_143(tmp_path, workflows):
    served = Served("--workflows", workflows, "--state-dir", tmp_path / "state", cwd=tmp_path)
    assert served.stop(signal.SIGTERM) == 143


def test_answers_match_the_openapi_document(server):
    import jsonschema

    document = server.client.get("/openapi.json").json()

    def check(method: str, template: str, response):
        operation = document["paths"][template][method]
        assert str(response.status_code) in operation["responses"], (method, template, response.status_code)
        declared = operation["responses"][str(response.status_code)]
        media = response.headers["content-type"].split(";")[0]
        assert media in declared["content"], (method, template, media)
        if media in ("application/json", "application/problem+json"):
            schema = {**declared["content"][media]["schema"], "components": document["components"]}
            jsonschema.Draft202012Validator(schema).validate(response.json())

    c = server.client
    run_id = server.start("hello.yml", wait=30)
    check("get", "/api/v1/health", c.get("/health"))
    check("get", "/api/v1/workflows", c.get("/workflows"))
    check("get", "/api/v1/workflows/{name}", c.get("/workflows/hello.yml"))
    check("get", "/api/v1/workflows/{name}", c.get("/workflows/broken.yml"))
    check("post", "/api/v1/runs", c.post("/runs", json={"workflow": "hello.yml"}))
    check("post", "/api/v1/runs", c.post("/runs", params={"wait": 30}, json={"workflow": "hello.yml"}))
    check("post", "/api/v1/runs", c.post("/runs", json={"workflow": "hello.yml", "inputs": {"times": "x"}}))
    check("post", "/api/v1/runs", c.post("/runs", params={"wait": "soon"}, json={}))
    check("get", "/api/v1/runs", c.get("/runs"))
    check("get", "/api/v1/runs", c.get("/runs", params={"status": "nope"}))
    check("get", "/api/v1/runs/{run_id}", c.get(f"/runs/{run_id}"))
    check("get", "/api/v1/runs/{run_id}/logs/{target}", c.get(f"/runs/{run_id}/logs/greet"))
    check("post", "/api/v1/runs/{run_id}/pause", c.post(f"/runs/{run_id}/pause"))
    check("post", "/api/v1/runs/{run_id}/cancel", c.post(f"/runs/{run_id}/cancel"))
    check("post", "/api/v1/runs/{run_id}/resume", c.post(f"/runs/{run_id}/resume", json={"from": "shout"}, params={"wait": 30}))
    check("post", "/api/v1/runs/{run_id}/resume", c.post(f"/runs/{run_id}/resume", json={"from": 3}))
    check("post", "/api/v1/workflows/{name}/jobs/{job}/run", c.post("/workflows/hello.yml/jobs/greet/run", json={}))
    with c.stream("GET", f"/runs/{run_id}/events") as response:
        check("get", "/api/v1/runs/{run_id}/events", response)
        for line in response.iter_lines():
            if line:
                schema = {"$ref": "#/components/schemas/Event", "components": document["components"]}
                jsonschema.Draft202012Validator(schema).validate(json.loads(line))


def test_a_port_in_use_is_a_message_and_exit_3(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = cli("serve", "--port", port, "--state-dir", tmp_path / "state", cwd=tmp_path)
    assert refused.returncode == 3
    assert f"runner: cannot listen on 127.0.0.1:{port}: Address already in use" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_backend_option_chooses_what_runs_container_jobs(tmp_path):
    directory = tmp_path / "workflows"
    directory.mkdir()
    write(directory, """
        version: 1
        jobs:
          show:
            image: runner-test/busybox:latest
            steps:
              - run: echo "ran as a process of this machine"
    """, "local.yml")
    # No Docker engine answers at this address: only --backend local can run the job.
    served = Served("--workflows", directory, "--state-dir", tmp_path / "state", "--backend", "local",
                    cwd=tmp_path, env={"DOCKER_HOST": "unix:///nonexistent.sock", "RUNNER_BACKEND": "docker"})
    try:
        run_id = served.start("local.yml")
        assert served.wait_for(run_id, "success", "failure")["status"] == "success"
        assert served.client.get(f"/runs/{run_id}/logs/show/1").text == "ran as a process of this machine\n"
    finally:
        served.stop()
