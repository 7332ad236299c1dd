"""`runner serve` guarded: no answer without a token, bad bodies refused with a message, tokens never logged.

The routes are taken from the server's own OpenAPI document (and the document is
checked to hold every route the application has), so that a new route cannot be
left unguarded or untested.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from conftest import write
from serving import Served

TOKEN = "guard-token-5b9c"
OTHER = "second-token-x1"

WORKFLOW = """
    version: 1
    inputs:
      who: {type: string, default: world}
      times: {type: integer, default: 1}
      options: {type: object, default: {}}
    jobs:
      greet:
        outputs: {text: "hello ${{ inputs.who }}"}
      shout:
        needs: greet
        outputs: {text: "${{ jobs.greet.outputs.text | upper }}"}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guard")
    (tmp / "workflows").mkdir()
    write(tmp / "workflows", WORKFLOW, "hello.yml")
    (tmp / "tokens").write_text(f"{TOKEN}\n")
    server = Served("--workflows", tmp / "workflows", "--state-dir", tmp / "state", "--token-file", tmp / "tokens",
                    cwd=tmp, env={"RUNNER_TOKENS": OTHER}, token=TOKEN)
    server.state = tmp / "state"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def document(served):
    return served.client.get("/openapi.json").json()


@pytest.fixture(scope="module")
def run_id(served):
    return served.start("hello.yml", wait=30)


def _operations(document, run_id):
    """Every (method, path, operation) of the document, its path parameters filled with real names."""
    values = {"run_id": run_id, "name": "hello.yml", "job": "greet", "target": "greet"}
    for template, methods in document["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        for method, operation in methods.items():
            yield method.upper(), path.removeprefix("/api/v1"), operation


def test_the_document_holds_every_route_of_the_application(document):
    from runner.server.app import routes

    paths = {re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", r.path) for r in routes() if r.path.startswith("/api/")}
    documented = {f"{method} {path}" for path, methods in document["paths"].items() for method in methods}
    for route in routes():
        if route.path.startswith("/api/"):
            path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
            for method in route.methods - {"HEAD"}:
                assert f"{method.lower()} {path}" in documented, f"{method} {route.path} is not in the OpenAPI document"
    assert paths == set(document["paths"])


def test_every_operation_but_health_answers_401_without_a_valid_token(served, document, run_id):
    anonymous = httpx.Client(base_url=served.api, timeout=30)
    operations = list(_operations(document, run_id))
    assert len(operations) >= 14
    for method, path, operation in operations:
        if path == "/health":
            assert operation["security"] == []
            assert anonymous.get(path).json() == {"status": "ok"}
            continue
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Bearer {TOKEN[:-1]}"},
                        {"Authorization": "Bearer é€".encode()}):
            response = anonymous.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"] == "application/problem+json"
            assert "Bearer TOKEN" in response.json()["detail"]
        # ?token= is for the event stream only (a browser's EventSource sends no header).
        by_query = anonymous.request(method, path, params={"token": TOKEN}, json={})
        if path.endswith("/events"):
            assert by_query.status_code == 200
            for wrong in ("wrong", "€", "", TOKEN.upper()):
                assert anonymous.get(path, params={"token": wrong}).status_code == 401, wrong
        else:
            assert by_query.status_code == 401, (method, path)
    # Both the file's token and RUNNER_TOKENS' are valid.
    for token in (TOKEN, OTHER):
        assert anonymous.get("/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # Nothing else answers without a token either: an unknown path is 401, not 404.
    assert anonymous.get("/nowhere").status_code == 401
    assert anonymous.get("/runs/../workflows").status_code == 401


def _posts(document, run_id):
    return [(path, operation) for method, path, operation in _operations(document, run_id)
            if method == "POST" and "requestBody" in operation]


def _check_refused(response, *statuses):
    assert response.status_code in statuses, (response.request.url, response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == response.status_code and problem["detail"]
    assert "Traceback" not in response.text and "internal error" not in problem["detail"]
    return problem


def test_bad_bodies_get_4xx_with_a_message(served, document, run_id):
    posts = _posts(document, run_id)
    assert {path for path, _ in posts} >= {"/runs", f"/runs/{run_id}/resume", "/workflows/hello.yml/jobs/greet/run"}
    deep = "[" * 100_000 + "]" * 100_000
    not_json = [b"{nope", b"\xff\xfe\x00", b'{"a": NaN}', b'{"a": 1e999}', b'{"a": "\\ud800"}', deep.encode(),
                b'{"a": ' + b"9" * 5000 + b"}", b"\x00" * 100]
    for path, operation in posts:
        for body in not_json:
            problem = _check_refused(served.client.post(path, content=body, headers={"content-type": "application/json"}),
                                     400)
            assert problem["detail"].startswith("the body is not JSON"), problem
        for body in ([], "text", 1, None, True):
            _check_refused(served.client.post(path, content=json.dumps(body)), 422)
        fields = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]
        for name, schema in fields.items():
            for wrong in (1, [], "text", {}, True):
                if _fits(wrong, schema):
                    continue
                problem = _check_refused(served.client.post(path, json={name: wrong}), 422)
                assert f"`{name}`" in problem["detail"], problem
        huge = served.client.post(path, content=b'{"inputs": {"who": "' + b"x" * (2 << 20) + b'"}}',
                                  headers={"content-type": "application/json"})
        assert "1048576 bytes" in _check_refused(huge, 413)["detail"]
        # Without a Content-Length (chunked), the limit holds too.
        chunks = (b"x" * 65536 for _ in range(40))
        _check_refused(served.client.post(path, content=chunks, headers={"content-type": "application/json"}), 413)

    # Values of the wrong type inside `inputs` are located problems, as the CLI gives them.
    problems = _check_refused(served.client.post("/runs", json={"workflow": "hello.yml", "inputs": {
        "times": {"a": 1}, "options": "text", "who": ["x"]}}), 422)["problems"]
    assert {p["path"] for p in problems} >= {"inputs.times", "inputs.options"}
    for field, wrong in (("workflow", "hello.yml\x00"), ("workflow", "../../../etc/passwd"), ("workflow", "x" * 100_000)):
        _check_refused(served.client.post("/runs", json={field: wrong}), 404)
    # A big but allowed input, and a deep one, run.
    big = served.client.post("/runs", params={"wait": 30}, json={"workflow": "hello.yml", "inputs": {"who": "x" * 500_000}})
    assert big.status_code == 201 and big.json()["status"] == "success"
    deep_input = json.loads('{"a":' * 300 + "1" + "}" * 300)
    nested = served.client.post("/runs", params={"wait": 30}, json={"workflow": "hello.yml", "inputs": {"options": deep_input}})
    assert nested.status_code == 201, nested.text[:300]


def test_bad_queries_and_headers_get_4xx_with_a_message(served, run_id):
    for path, params in [("/runs", {"limit": "x"}), ("/runs", {"limit": "-1"}), ("/runs", {"limit": "1e9"}),
                         ("/runs", {"limit": "0"}), ("/runs", {"cursor": "nan:x"}), ("/runs", {"cursor": "inf:x"}),
                         ("/runs", {"status": "nope"}), ("/runs", {"cursor": "nope:x"}),
                         (f"/runs/{run_id}/events", {"after": "x"}), (f"/runs/{run_id}/logs/greet", {"tail": "-1"}),
                         (f"/runs/{run_id}/logs/greet", {"offset": "x"})]:
        _check_refused(served.client.get(path, params=params), 400)
    for wait in ("nan", "inf", "-1", "1e400", "x", "3601"):
        _check_refused(served.client.post("/runs", params={"wait": wait}, json={"workflow": "hello.yml"}), 400)
    for given in ("x", "9" * 40, "-1", "١٢"):
        _check_refused(served.client.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": given.encode()}), 400)
    # An id past every event is no error: the stream of an ended run is empty.
    past = served.client.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": "9" * 15})
    assert past.status_code == 200 and past.text == ""


def test_a_token_never_appears_in_the_server_output_or_its_state(served, run_id):
    anonymous = httpx.Client(base_url=served.api, timeout=30)
    # The token in every place a client might put it, right and wrong, with errors the server logs.
    served.client.post("/runs", json={"workflow": "hello.yml", "inputs": {"who": TOKEN}})
    anonymous.get(f"/runs/{run_id}/events", params={"token": TOKEN})
    anonymous.get("/runs", params={"token": TOKEN})
    anonymous.get(f"/runs/{run_id}", headers={"Authorization": f"Bearer {TOKEN}-not"})
    served.client.get(f"/runs/{TOKEN}")
    served.client.get(f"/runs/{run_id}/events", params={"token": TOKEN, "after": "x"})
    served.client.post("/runs", content=TOKEN.encode(), headers={"content-type": "application/json"})
    assert served.client.get("/health").status_code == 200
    output = served.output()
    assert TOKEN not in output and OTHER not in output
    assert "Traceback" not in output
    for path in served.state.rglob("*"):
        if path.is_file() and not path.name.endswith(("-wal", "-shm")):
            data = path.read_bytes()
            assert OTHER.encode() not in data, path


def _fits(value, schema) -> bool:
    kind = schema.get("type")
    return {"string": isinstance(value, str), "object": isinstance(value, dict),
            "boolean": isinstance(value, bool)}.get(kind, True)
