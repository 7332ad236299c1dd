"""http jobs against real servers on 127.0.0.1 (runner/executors/http.py).

Status codes, redirects, slow and endless bodies, Retry-After, non-JSON bodies
and TLS with a self-signed certificate, each served by a real server in a
thread; runs go through runner.engine.run.run_workflow (or the CLI, where the exit
status, the console or a signal matter).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import cli, write
from runner.model.results import Result
from runner.load.workflow import load_workflow
from servers import Handler, run, serve, self_signed_certificate

SECRET = "s3cr3t-T0ken/+&="  # characters that URL encoding changes


class Api(Handler):
    def route(self, method, path, query, body):
        state = self.server.state
        if path == "/json":
            self.reply(200, {"items": [1, 2, 3], "name": "runner"}, headers={"X-Request-Id": "abc"})
        elif path == "/text":
            self.reply(200, "<html>not json</html>", "text/html")
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self.reply(code, query.get("body", f"status {code}"))
        elif path == "/echo":
            self.reply(200, {
                "method": method, "query": self.path.partition("?")[2],
                "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode(),
            })
        elif path == "/redirect":
            self.send_response(int(query.get("code", 302)))
            self.send_header("Location", query["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/slow":
            with self.server.lock:
                state["in_flight"] = state.get("in_flight", 0) + 1
                state["most_in_flight"] = max(state.get("most_in_flight", 0), state["in_flight"])
            try:
                time.sleep(float(query.get("delay", 1)))
                self.reply(200, {"slept": float(query.get("delay", 1))})
            finally:
                with self.server.lock:
                    state["in_flight"] -= 1
        elif path == "/trickle":  # headers at once, then one byte every 0.1s
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif path == "/endless":  # a chunked body that never ends
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"y" * 65536
            while True:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        elif path == "/big":  # says how large it is before sending anything
            self.send_response(200)
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
            self.wfile.write(b"z" * 1000)
            self.close_connection = True
        elif path == "/flaky":  # fails `fail` times per key, then succeeds
            key = query["key"]
            with self.server.lock:
                hits = state.setdefault(key, [])
                hits.append(time.monotonic())
                count = len(hits)
            if count <= int(query.get("fail", 1)):
                headers = {"Retry-After": query["after"]} if "after" in query else {}
                self.reply(int(query.get("status", 503)), "busy, try again", headers=headers)
            else:
                self.reply(200, {"hits": count})
        else:
            self.reply(404, "no such page")


@pytest.fixture
def api():
    with serve(Api) as server:
        yield server


@pytest.fixture
def other():
    """A second server: another origin (another port)."""
    with serve(Api) as server:
        yield server


def free_port() -> int:
    """A port on which nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- requests and responses ------------------------------------------------------------------


def test_response_is_in_scope_for_outputs(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          get:
            http: {{url: "{api.url}/json"}}
            outputs:
              count: ${{{{ response.json['items'] | length }}}}
              name: ${{{{ response.json.name }}}}
              status: ${{{{ response.status }}}}
              type: ${{{{ response.headers['Content-Type'] }}}}
              id: ${{{{ response.headers['x-request-id'] }}}}
              text: ${{{{ response.text }}}}
              url: ${{{{ response.url }}}}
          after:
            needs: get
            outputs:
              doubled: ${{{{ jobs.get.outputs.count * 2 }}}}
        outputs:
          doubled: ${{{{ jobs.after.outputs.doubled }}}}
    """)
    assert r.outcome.status is Result.SUCCESS
    outputs = r.job("get")["outputs"]
    assert outputs == {
        "count": 3, "name": "runner", "status": 200, "type": "application/json", "id": "abc",
        "text": '{"items": [1, 2, 3], "name": "runner"}', "url": f"{api.url}/json",
    }
    assert r.summary["outputs"] == {"doubled": 6}


def test_each_request_is_a_log_line_of_the_node_and_an_event(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          get: {{http: {{url: "{api.url}/json"}}}}
    """)
    [line] = r.logs("get")
    assert line.startswith(f"GET {api.url}/json → 200 OK in ") and line.endswith(", 38 bytes")
    log = next(e for e in r.events if e["type"] == "log")
    assert log["step"] == "request" and log["node"] == "get"
    types = [e["type"] for e in r.events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert "node_started" in types and "node_finished" in types
    files = list((tmp_path / "state" / "runs").glob("*/logs/get/request.log"))
    assert len(files) == 1 and "→ 200 OK" in files[0].read_text()


def test_method_headers_params_and_bodies_are_sent(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          as_json:
            http:
              method: POST
              url: "{api.url}/echo"
              headers: {{X-Custom: hello, X-Number: 7}}
              params: {{q: [a, b], n: 1, flag: true}}
              json: {{list: [1, 2], nested: {{k: v}}, computed: "${{{{ 6 * 7 }}}}", native: "${{{{ [1, 2] }}}}"}}
            outputs: {{echo: "${{{{ response.json }}}}"}}
          as_form:
            http:
              method: PUT
              url: "{api.url}/echo"
              form: {{name: runner, size: 3}}
            outputs: {{echo: "${{{{ response.json }}}}"}}
          as_text:
            http:
              method: PATCH
              url: "{api.url}/echo"
              body: "plain ${{{{ 1 + 1 }}}}"
              headers: {{Content-Type: text/plain}}
            outputs: {{echo: "${{{{ response.json }}}}"}}
          computed_method:
            http: {{method: "${{{{ 'delete' }}}}", url: "{api.url}/echo"}}
            outputs: {{method: "${{{{ response.json.method }}}}"}}
    """)
    assert r.outcome.status is Result.SUCCESS, r.summary
    sent = r.job("as_json")["outputs"]["echo"]
    assert sent["method"] == "POST"
    assert sent["query"] == "q=a&q=b&n=1&flag=true"
    assert sent["headers"]["x-custom"] == "hello" and sent["headers"]["x-number"] == "7"
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["headers"]["user-agent"].startswith("runner/")
    assert json.loads(sent["body"]) == {"list": [1, 2], "nested": {"k": "v"}, "computed": 42, "native": [1, 2]}
    form = r.job("as_form")["outputs"]["echo"]
    assert form["method"] == "PUT" and form["body"] == "name=runner&size=3"
    assert form["headers"]["content-type"] == "application/x-www-form-urlencoded"
    text = r.job("as_text")["outputs"]["echo"]
    assert text["method"] == "PATCH" and text["body"] == "plain 2" and text["headers"]["content-type"] == "text/plain"
    assert r.job("computed_method")["outputs"] == {"method": "DELETE"}


def test_head_request_has_no_body(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          head:
            http: {{method: HEAD, url: "{api.url}/json"}}
            outputs: {{status: "${{{{ response.status }}}}", text: "${{{{ response.text }}}}"}}
    """)
    assert r.job("head")["outputs"] == {"status": 200, "text": ""}


# -- status codes ----------------------------------------------------------------------------


def test_unexpected_status_names_method_url_status_and_the_start_of_the_body(tmp_path, api):
    body = "x" * 300
    r = run(tmp_path, f"""
        version: 1
        jobs:
          missing: {{http: {{url: "{api.url}/status/404?body={body}"}}}}
    """)
    job = r.job("missing")
    assert job["result"] == "failure"
    assert job["reason"] == (
        f"GET {api.url}/status/404?body={body} returned 404 Not Found (expected 2xx): " + "x" * 200 + "…"
    )
    assert r.summary["status"] == "failure"


def test_secrets_are_masked_before_the_body_is_cut_and_in_urls_however_encoded(tmp_path, api, monkeypatch):
    # The secret straddles the 200th character of the body: cut first, its start would show.
    body = "b" * 195 + SECRET
    r = run(tmp_path, f"""
        version: 1
        secrets: [TOKEN]
        jobs:
          leaky:
            http:
              url: "{api.url}/status/500"
              params: {{body: "{body.replace(SECRET, '${{ secrets.TOKEN }}')}", token: "${{{{ secrets.TOKEN }}}}"}}
    """, monkeypatch, secrets={"TOKEN": SECRET})
    reason = r.job("leaky")["reason"]
    assert "returned 500 Internal Server Error" in reason
    assert reason.endswith(": " + "b" * 195 + "***")
    everything = json.dumps(r.summary) + json.dumps(r.events)
    for fragment in (SECRET, SECRET[:6], "s3cr3t-T0ken%2F", "s3cr3t-T0ken/%2B"):
        assert fragment not in everything, fragment
    [line] = r.logs("leaky")
    assert "token=***" in line and "→ 500 Internal Server Error" in line


def test_expect_decides_success(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          gone:
            http: {{url: "{api.url}/status/404", expect: 404}}
            outputs: {{status: "${{{{ response.status }}}}"}}
          one_of:
            http: {{url: "{api.url}/status/201", expect: [200, 201]}}
          not_listed:
            http: {{url: "{api.url}/json", expect: [201, 204]}}
    """)
    assert r.job("gone")["result"] == "success" and r.job("gone")["outputs"] == {"status": 404}
    assert r.job("one_of")["result"] == "success"
    assert r.job("not_listed")["result"] == "failure"
    assert "returned 200 OK (expected 201, 204)" in r.job("not_listed")["reason"]


def test_a_body_that_is_not_json_fails_only_the_outputs_that_use_it(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          text_only:
            http: {{url: "{api.url}/text"}}
            outputs: {{text: "${{{{ response.text }}}}"}}
          wants_json:
            http: {{url: "{api.url}/text"}}
            outputs: {{value: "${{{{ response.json.value }}}}"}}
    """)
    assert r.job("text_only")["outputs"] == {"text": "<html>not json</html>"}
    job = r.job("wants_json")
    assert job["result"] == "failure"
    where = f"{tmp_path / 'workflow.yml'}:8:22"
    assert job["reason"].startswith(f"{where}: outputs.value: `response.json`: the body is not JSON (Expecting value")
    assert job["reason"].endswith("it begins: <html>not json</html>")


# -- timeouts and limits ---------------------------------------------------------------------


def test_total_deadline_stops_a_server_that_trickles(tmp_path, api):
    started = time.monotonic()
    r = run(tmp_path, f"""
        version: 1
        jobs:
          own_timeout:
            http: {{url: "{api.url}/trickle", timeout: 1s}}
          job_timeout:
            timeout: 1s
            http: {{url: "{api.url}/trickle"}}
    """)
    assert time.monotonic() - started < 5
    assert r.job("own_timeout")["reason"] == f"GET {api.url}/trickle: no complete response within 1s (timeout)"
    assert r.job("job_timeout")["reason"] == "timed out after 1s"
    assert any("→ no complete response within 1s" in line for line in r.logs("own_timeout"))
    assert any("→ stopped after" in line for line in r.logs("job_timeout"))


def test_read_timeout_of_a_slow_server(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          slow: {{http: {{url: "{api.url}/slow?delay=3", timeout: 500ms}}}}
    """)
    assert r.job("slow")["reason"] == f"GET {api.url}/slow?delay=3: no complete response within 0.5s (timeout)"


def test_bodies_over_max_bytes_are_refused_while_streaming(tmp_path, api):
    started = time.monotonic()
    r = run(tmp_path, f"""
        version: 1
        jobs:
          endless: {{http: {{url: "{api.url}/endless", max_bytes: 100000}}}}
          endless_default: {{http: {{url: "{api.url}/endless"}}}}
          declared: {{http: {{url: "{api.url}/big", max_bytes: 1000000}}}}
          fits: {{http: {{url: "{api.url}/json", max_bytes: 38}}}}
          one_over: {{http: {{url: "{api.url}/json", max_bytes: 37}}}}
    """)
    assert time.monotonic() - started < 10
    assert "the response is larger than max_bytes (97.7 KiB); refused after" in r.job("endless")["reason"]
    assert "the response is larger than max_bytes (10.0 MiB)" in r.job("endless_default")["reason"]
    assert r.job("declared")["reason"] == (
        f"GET {api.url}/big: the response is 50.0 MiB (Content-Length), more than max_bytes (976.6 KiB); not read"
    )
    assert r.job("fits")["result"] == "success"
    assert "more than max_bytes (37 bytes)" in r.job("one_over")["reason"]


# -- retries ---------------------------------------------------------------------------------


def test_5xx_is_retried_after_the_servers_retry_after(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          flaky:
            http: {{url: "{api.url}/flaky?key=a&fail=1&status=503&after=1"}}
            retry: {{attempts: 3}}
            outputs: {{hits: "${{{{ response.json.hits }}}}"}}
    """)
    job = r.job("flaky")
    assert job["result"] == "success" and job["attempts"] == 2 and job["outputs"] == {"hits": 2}
    first, second = api.state["a"]
    assert second - first >= 0.95  # Retry-After: 1, though the policy has no delay
    assert any("→ 503 Service Unavailable" in line and "Retry-After 1s" in line for line in r.logs("flaky"))


def test_429_is_retried_with_backoff_and_gives_up_after_the_attempts(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          limited:
            http: {{url: "{api.url}/flaky?key=b&fail=5&status=429"}}
            retry: {{attempts: 3, delay: 100ms, backoff_factor: 2}}
    """)
    job = r.job("limited")
    assert job["result"] == "failure" and job["attempts"] == 3
    assert job["reason"].endswith("returned 429 Too Many Requests (expected 2xx): busy, try again (attempt 3 of 3)")
    hits = api.state["b"]
    assert hits[1] - hits[0] >= 0.09 and hits[2] - hits[1] >= 0.19


def test_other_4xx_statuses_are_not_retried(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          missing:
            http: {{url: "{api.url}/flaky?key=c&fail=5&status=404"}}
            retry: 3
    """)
    assert r.job("missing")["attempts"] == 1
    assert len(api.state["c"]) == 1


def test_post_is_not_retried_unless_retry_on_methods_lists_it(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          once:
            http: {{method: POST, url: "{api.url}/flaky?key=post1&fail=1", json: {{a: 1}}}}
            retry: 3
          listed:
            http: {{method: POST, url: "{api.url}/flaky?key=post2&fail=1", json: {{a: 1}}}}
            retry: {{attempts: 3, on_methods: [POST]}}
          get_not_listed:
            http: {{url: "{api.url}/flaky?key=get3&fail=1"}}
            retry: {{attempts: 3, on_methods: [POST]}}
          put_by_default:
            http: {{method: PUT, url: "{api.url}/flaky?key=put4&fail=1"}}
            retry: 3
    """)
    once = r.job("once")
    assert once["result"] == "failure" and once["attempts"] == 1
    assert once["reason"].endswith(
        "(not retried: a POST may have taken effect; list it in retry.on_methods to retry it)"
    )
    assert r.job("listed")["result"] == "success" and r.job("listed")["attempts"] == 2
    assert r.job("get_not_listed")["attempts"] == 1
    assert r.job("put_by_default")["result"] == "success" and r.job("put_by_default")["attempts"] == 2


def test_post_that_could_not_connect_is_retried(tmp_path):
    port = free_port()
    r = run(tmp_path, f"""
        version: 1
        jobs:
          refused:
            http: {{method: POST, url: "http://127.0.0.1:{port}/x", json: {{}}}}
            retry: {{attempts: 2, delay: 10ms}}
    """)
    job = r.job("refused")
    assert job["result"] == "failure" and job["attempts"] == 2
    assert job["reason"].startswith(f"POST http://127.0.0.1:{port}/x: cannot connect: ")
    assert job["reason"].endswith("(attempt 2 of 2)")


def test_post_cut_off_by_the_jobs_timeout_is_not_retried(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          post:
            http: {{method: POST, url: "{api.url}/slow?delay=3"}}
            timeout: 300ms
            retry: 3
          get:
            http: {{url: "{api.url}/slow?delay=3"}}
            timeout: 300ms
            retry: 2
    """)
    assert r.job("post")["attempts"] == 1 and r.job("post")["reason"] == "timed out after 0.3s"
    assert r.job("get")["attempts"] == 2


def test_a_retry_after_longer_than_max_delay_is_not_waited_for(tmp_path, api):
    started = time.monotonic()
    r = run(tmp_path, f"""
        version: 1
        jobs:
          patient:
            http: {{url: "{api.url}/flaky?key=d&fail=1&status=503&after=60"}}
            retry: {{attempts: 3, max_delay: 1s}}
    """)
    assert time.monotonic() - started < 5
    job = r.job("patient")
    assert job["attempts"] == 1
    assert job["reason"].endswith("(not retried: the server asks to wait 1m, more than retry.max_delay 1s)")


# -- redirects -------------------------------------------------------------------------------


def test_redirects_are_not_followed_by_default(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          moved: {{http: {{url: "{api.url}/redirect?to=/json"}}}}
          followed:
            http: {{url: "{api.url}/redirect?to=/json", follow_redirects: true}}
            outputs: {{count: "${{{{ response.json['items'] | length }}}}", url: "${{{{ response.url }}}}"}}
    """)
    assert "returned 302 Found (expected 2xx)" in r.job("moved")["reason"]
    assert r.job("followed")["outputs"] == {"count": 3, "url": f"{api.url}/json"}
    assert r.logs("followed")[0] == f"GET {api.url}/redirect?to=/json → 302 Found → {api.url}/json"
    assert r.logs("followed")[1].startswith(f"GET {api.url}/json → 200 OK")


def test_redirects_are_bounded(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          loop: {{http: {{url: "{api.url}/loop", follow_redirects: true}}}}
    """)
    assert r.job("loop")["reason"] == f"GET {api.url}/loop: more than 10 redirects"
    assert len([q for q in api.requests if q["path"] == "/loop"]) == 11


def test_credentials_are_not_carried_to_another_origin(tmp_path, api, other, monkeypatch):
    headers = '{Authorization: "Bearer ${{ secrets.TOKEN }}", X-Api-Key: "${{ secrets.TOKEN }}", Cookie: "a=b", X-Plain: hello}'
    r = run(tmp_path, f"""
        version: 1
        secrets: [TOKEN]
        jobs:
          away:
            http: {{url: "{api.url}/redirect?to={other.url}/echo", headers: {headers}, follow_redirects: true}}
            outputs: {{headers: "${{{{ response.json.headers }}}}"}}
          same:
            http: {{url: "{api.url}/redirect?to=/echo&code=307", headers: {headers}, follow_redirects: true}}
            outputs: {{headers: "${{{{ response.json.headers }}}}"}}
    """, monkeypatch, secrets={"TOKEN": SECRET})
    assert r.outcome.status is Result.SUCCESS, r.summary
    away = other.requests[0]["headers"]
    lowered = {k.lower(): v for k, v in away.items()}
    assert "authorization" not in lowered and "x-api-key" not in lowered and "cookie" not in lowered
    assert lowered["x-plain"] == "hello"
    # The two jobs run at once: `away`'s first request may reach `api` after `same`'s last.
    echoed = [q for q in api.requests if q["path"] == "/echo"]
    assert len(echoed) == 1
    same = {k.lower(): v for k, v in echoed[0]["headers"].items()}
    assert same["authorization"] == f"Bearer {SECRET}" and same["x-api-key"] == SECRET


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture
def tls_api(tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    with serve(Api, tls=(cert, key)) as server:
        server.cert = cert
        yield server


def test_a_self_signed_certificate_is_an_error_unless_verify_is_false(tmp_path, tls_api):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes(tls_api.cert.read_bytes())
    r = run(tmp_path, f"""
        version: 1
        jobs:
          strict:
            http: {{url: "{tls_api.url}/json"}}
            retry: 3
          trusting:
            http: {{url: "{tls_api.url}/json", verify: false}}
            outputs: {{name: "${{{{ response.json.name }}}}"}}
          own_ca:
            http: {{url: "{tls_api.url}/json", verify: certs/ca.pem}}
            outputs: {{name: "${{{{ response.json.name }}}}"}}
    """)
    strict = r.job("strict")
    assert strict["result"] == "failure" and strict["attempts"] == 1  # retrying cannot help
    assert "the server's TLS certificate could not be verified (self-signed certificate)" in strict["reason"]
    assert "write `verify: false`" in strict["reason"]
    trusting = r.job("trusting")
    assert trusting["result"] == "success" and trusting["outputs"] == {"name": "runner"}
    assert trusting["reason"] == "TLS certificate not verified (verify: false)"
    assert "warning: TLS certificate not verified (verify: false)" in r.logs("trusting")
    assert r.job("own_ca")["result"] == "success" and r.job("own_ca")["reason"] == ""


def test_the_console_summary_says_when_verification_was_off(tmp_path, tls_api):
    path = write(tmp_path, f"""
        version: 1
        jobs:
          trusting: {{http: {{url: "{tls_api.url}/json", verify: false}}}}
    """)
    done = cli("run", path, "--state-dir", tmp_path / "state")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ trusting success in" in done.stdout and "TLS certificate not verified (verify: false)" in done.stdout
    table = done.stdout.split("\n\n")[-1]
    assert "TLS certificate not verified" in table


# -- the shared lifecycle --------------------------------------------------------------------


def test_concurrency_matrix_max_parallel_if_and_continue_on_error(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        concurrency: 8
        jobs:
          fan:
            matrix:
              n: [1, 2, 3, 4, 5, 6]
              max_parallel: 2
            http: {{url: "{api.url}/slow?delay=0.2&n=${{{{ matrix.n }}}}"}}
            outputs: {{n: "${{{{ matrix.n }}}}", slept: "${{{{ response.json.slept }}}}"}}
          broken:
            http: {{url: "{api.url}/status/500"}}
            continue_on_error: true
          after_broken:
            needs: broken
            http: {{url: "{api.url}/json"}}
          never:
            if: false
            http: {{url: "{api.url}/status/200?never=1"}}
        outputs:
          ns: ${{{{ jobs.fan.outputs | map(attribute='n') | list }}}}
    """)
    assert r.summary["status"] == "success"
    assert r.summary["outputs"] == {"ns": [1, 2, 3, 4, 5, 6]}
    assert api.state["most_in_flight"] == 2
    assert r.job("broken")["result"] == "failure" and r.job("broken")["continue_on_error"] is True
    assert r.job("after_broken")["result"] == "success"
    assert r.job("never")["result"] == "skipped"
    assert not [q for q in api.requests if "never" in q["query"]]


def test_the_runs_concurrency_bounds_requests_in_flight(tmp_path, api):
    jobs = "".join(f'  j{i}: {{http: {{url: "{api.url}/slow?delay=0.3"}}}}\n' for i in range(6))
    r = run(tmp_path, "version: 1\nconcurrency: 3\njobs:\n" + jobs)
    assert r.summary["status"] == "success"
    assert api.state["most_in_flight"] == 3


def test_connections_are_pooled_across_the_nodes_of_a_run(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          a: {{http: {{url: "{api.url}/json"}}}}
          b: {{needs: a, http: {{url: "{api.url}/json"}}}}
          c: {{needs: b, http: {{url: "{api.url}/echo"}}, outputs: {{h: "${{{{ response.json.headers }}}}"}}}}
    """)
    assert r.summary["status"] == "success"
    assert r.job("c")["outputs"]["h"]["connection"] == "keep-alive"
    # One connection served all three: the server saw one client port.
    assert len({q["client"] for q in api.requests}) == 1
    # The run's client was closed at its end, and its connection with it.
    deadline = time.monotonic() + 5
    while api.connections["closed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert api.connections == {"opened": 1, "closed": 1}


def test_cookies_are_not_shared_between_nodes(tmp_path, api):
    class Cookies(Handler):
        def route(self, method, path, query, body):
            if path == "/set":
                self.reply(200, "set", headers={"Set-Cookie": "session=abc; Path=/"})
            else:
                self.reply(200, {"cookie": self.headers.get("Cookie")})

    with serve(Cookies) as server:
        r = run(tmp_path, f"""
            version: 1
            jobs:
              login: {{http: {{url: "{server.url}/set"}}}}
              later:
                needs: login
                http: {{url: "{server.url}/get"}}
                outputs: {{cookie: "${{{{ response.json.cookie }}}}"}}
        """)
    assert r.job("later")["outputs"] == {"cookie": None}


def test_mistakes_in_a_computed_request_fail_the_job_where_the_field_is(tmp_path, api):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          bad_scheme: {{http: {{url: "${{{{ 'ftp://example.com/x' }}}}"}}}}
          bad_method: {{http: {{method: "${{{{ 'FETCH' }}}}", url: "{api.url}/json"}}}}
          bad_expect: {{http: {{expect: "${{{{ 'ok' }}}}", url: "{api.url}/json"}}}}
          zero_timeout: {{http: {{timeout: "${{{{ 0 }}}}", url: "{api.url}/json"}}}}
          no_limit: {{http: {{max_bytes: "${{{{ -1 }}}}", url: "{api.url}/json"}}}}
          undefined: {{http: {{headers: {{A: "${{{{ 1 // 0 }}}}"}}, url: "{api.url}/json"}}}}
          missing_ca: {{http: {{verify: nowhere.pem, url: "{api.url}/json"}}}}
    """)
    file = tmp_path / "workflow.yml"
    assert r.job("bad_scheme")["reason"] == (
        f"{file}:3:28: http.url: `ftp://example.com/x` must be absolute and start with http:// or https://"
    )
    assert r.job("bad_method")["reason"] == (
        f"{file}:4:31: http.method: `FETCH` is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    )
    assert r.job("bad_expect")["reason"].startswith(f"{file}:5:31: http.expect: expected a status code")
    assert r.job("zero_timeout")["reason"] == f"{file}:6:34: http.timeout: must be more than 0"
    assert r.job("no_limit")["reason"] == f"{file}:7:32: http.max_bytes: expected a whole number of at least 1, got '-1'"
    assert r.job("undefined")["reason"].startswith(f"{file}:8:31: http.headers: `1 // 0` cannot be evaluated: division by zero")
    assert r.job("missing_ca")["reason"] == f"{file}:9:31: http.verify: no CA bundle at {tmp_path / 'nowhere.pem'}"
    assert all(not r.job(j)["attempts"] or r.job(j)["attempts"] == 1 for j in r.summary["jobs"])


def test_literal_mistakes_in_a_request_fail_validation_where_they_are(tmp_path):
    path = write(tmp_path, """
        version: 1
        jobs:
          a: {http: {url: "ftp://example.test/x", timeout: 0s, max_bytes: 0}}
          b:
            http:
              url: "https://example.test/"
              method: FETCH
              verify: 3
    """)
    done = cli("validate", path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert any(line.startswith(f"{path}:3:19: url: `ftp://example.test/x` must be absolute and start") for line in lines), lines
    assert any(line.startswith(f"{path}:3:52: timeout: must be more than 0") for line in lines), lines
    assert any(line.startswith(f"{path}:3:67: `max_bytes` is a whole number of at least 1") for line in lines), lines
    assert any(line.startswith(f"{path}:7:15: `method` is GET, HEAD") for line in lines), lines
    assert any(line.startswith(f"{path}:8:15: `verify` is true, false") for line in lines), lines


def test_ctrl_c_cancels_a_request_in_flight_at_once(tmp_path, api):
    path = write(tmp_path, f"""
        version: 1
        jobs:
          slow: {{http: {{url: "{api.url}/slow?delay=30"}}}}
          cleanup:
            needs: slow
            if: always()
            http: {{url: "{api.url}/json?cleanup=1"}}
    """)
    out = tmp_path / "out.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(path), "--state-dir", str(tmp_path / "state"), "--output-json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert api.arrived.wait(20), "the request never arrived"
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert time.monotonic() - sent < 3
    assert process.returncode == 130, stdout + stderr
    summary = json.loads(out.read_text())
    assert summary["status"] == "cancelled"
    assert summary["jobs"]["slow"]["result"] == "cancelled"
    assert summary["jobs"]["cleanup"]["result"] == "success"  # if: always() still runs
    assert "[slow/request] GET" in stdout and "→ stopped after" in stdout
    assert "Traceback" not in stderr


def test_the_runs_timeout_stops_requests_and_fails_the_run(tmp_path, api):
    started = time.monotonic()
    r = run(tmp_path, f"""
        version: 1
        timeout: 1s
        jobs:
          slow: {{http: {{url: "{api.url}/slow?delay=30"}}}}
          cleanup:
            needs: slow
            if: always()
            http: {{url: "{api.url}/json"}}
    """)
    assert time.monotonic() - started < 5
    assert r.summary["status"] == "failure" and r.summary["reason"] == "the run timed out after 1s"
    assert r.job("slow")["result"] == "cancelled"
    assert r.job("cleanup")["result"] == "success"


def test_retry_after_may_be_seconds_or_a_date():
    import email.utils

    import httpx

    from runner.executors.session import Reply

    def after(value):
        headers = httpx.Headers({"Retry-After": value} if value is not None else {})
        return Reply("GET", "u", "u", 503, "Service Unavailable", headers, b"", None).retry_after

    assert after("3") == 3.0
    assert after(None) is None and after("soon") is None
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= after(in_a_minute) <= 61
    assert after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_the_schema_and_compiler_accept_on_methods(tmp_path):
    path = write(tmp_path, """
        version: 1
        defaults:
          retry: {attempts: 2, on_methods: [POST, GET]}
        jobs:
          a: {http: {url: "http://127.0.0.1:1/"}}
    """)
    workflow, _ = load_workflow(path)
    assert workflow.jobs["a"].retry.on_methods == ("POST", "GET")
    done = cli("validate", write(tmp_path, """
        version: 1
        jobs:
          a:
            http: {url: "http://127.0.0.1:1/"}
            retry: {attempts: 2, on_methods: [post]}
    """, name="bad.yml"))
    assert done.returncode == 2
    assert "on_methods" in done.stdout + done.stderr
