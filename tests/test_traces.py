"""OpenTelemetry traces of runs, sent to a collector started by the test (tests/collector.py):
an in-process OTLP/HTTP receiver on 127.0.0.1 that decodes the protobuf runner sends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from collector import collector
from conftest import BUSYBOX, IMAGE_MAP, cli, write
from test_resume import run_id_of

SECRET = "hunter2-s3cr3t-value"

TRACED = """
    version: 1
    name: traced
    secrets: [TOKEN]
    defaults: {image: "alpine:3.20"}
    jobs:
      prepare:
        outputs: {greeting: hello}
      build:
        needs: prepare
        matrix: {shard: [1, 2]}
        env: {TOKEN: "${{ secrets.TOKEN }}"}
        steps:
          - id: show
            run: |
              echo "tp=$TRACEPARENT" >> "$RUNNER_OUTPUT"
              echo "job tp=$TRACEPARENT token=$TOKEN"
          - run: "true"
        outputs: {tp: "${{ steps.show.outputs.tp }}"}
      flaky:
        retry: {attempts: 2, delay: 0s}
        steps:
          - run: |
              [ -f /workspace/flag-$RUNNER_RUN_ID ] && exit 0
              touch /workspace/flag-$RUNNER_RUN_ID
              echo "failing with $TOKEN" >&2
              exit 7
        env: {TOKEN: "${{ secrets.TOKEN }}"}
      secretive:
        matrix: {token: ["${{ secrets.TOKEN }}"]}
        outputs: {seen: "${{ matrix.token }}"}
      sub:
        uses: lib/child.yml
        with: {who: "${{ jobs.prepare.outputs.greeting }}"}
        needs: prepare
      never:
        if: false
        outputs: {x: "1"}
    outputs:
      leaked: "${{ secrets.TOKEN }}"
"""

CHILD = """
    version: 1
    inputs:
      who: {type: string}
    jobs:
      inner:
        outputs: {line: "${{ inputs.who }} from the child"}
      render:
        image: "alpine:3.20"
        run: echo "rendering under $TRACEPARENT"
    outputs:
      line: "${{ jobs.inner.outputs.line }}"
"""


def traced_env(endpoint: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "TOKEN": SECRET, "OTEL_BSP_SCHEDULE_DELAY": "50"}


def by_name(spans: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for span in spans:
        found.setdefault(span["name"], []).append(span)
    return found


def trace_id_of(run_id: str) -> str:
    from runner.report.traceids import trace_id

    return f"{trace_id(run_id):032x}"


def test_a_run_is_a_trace_of_its_nodes_attempts_and_steps(docker, tmp_path):
    (tmp_path / "lib").mkdir()
    write(tmp_path / "lib", CHILD, name="child.yml")
    path = write(tmp_path, TRACED)
    with collector() as server:
        result = cli("run", path, *IMAGE_MAP, "--output-json", tmp_path / "out.json", cwd=tmp_path,
                     env=traced_env(server.endpoint))
        assert result.returncode == 0, result.stdout + result.stderr
        run_id = run_id_of(result.stdout)
        spans = server.wait(17)
    named = by_name(spans)
    trace = trace_id_of(run_id)
    assert {s["trace_id"] for s in spans} == {trace}

    [run] = named["traced"]
    assert run["parent"] is None
    assert run["attributes"]["cicd.pipeline.name"] == "traced"
    assert run["attributes"]["cicd.pipeline.run.id"] == run_id
    assert run["attributes"]["cicd.pipeline.result"] == "success"
    assert run["attributes"]["runner.run.attempt"] == 1
    assert run["resource"]["service.name"] == "runner"

    [prepare] = named["prepare"]
    assert prepare["parent"] == run["span_id"]
    assert prepare["attributes"]["cicd.pipeline.task.name"] == "prepare"
    assert prepare["attributes"]["cicd.pipeline.task.run.result"] == "success"
    assert prepare["attributes"]["runner.job.kind"] == "value"
    assert prepare["attributes"]["cicd.pipeline.run.id"] == run_id

    # A matrix instance under its job, its steps under it; a job's TRACEPARENT names its step's span.
    [build] = named["build"]
    assert build["parent"] == run["span_id"]
    outputs = json.loads((tmp_path / "out.json").read_text())
    for shard in (1, 2):
        [instance] = named[f"build (shard={shard})"]
        assert instance["parent"] == build["span_id"]
        assert instance["attributes"]["runner.image"] == BUSYBOX
        assert instance["attributes"]["runner.attempt"] == 1
        assert instance["attributes"]["runner.exit_code"] == 0
        [show] = named[f"build (shard={shard}): show"]
        [second] = named[f"build (shard={shard}): 2"]
        assert show["parent"] == second["parent"] == instance["span_id"]
        assert show["attributes"]["runner.exit_code"] == 0 and show["attributes"]["runner.step"] == "show"
        assert instance["start"] <= show["start"] <= show["end"] <= second["start"] <= second["end"] <= instance["end"]
        seen = outputs["jobs"]["build"]["instances"][f"build (shard={shard})"]["outputs"]["tp"]
        assert seen == f"00-{trace}-{show['span_id']}-01"

    # A retried node: one span per attempt, the first failed with its exit code.
    first, second = sorted(named["flaky"], key=lambda s: s["attributes"]["runner.attempt"])
    assert first["attributes"]["runner.attempt"] == 1 and second["attributes"]["runner.attempt"] == 2
    assert first["attributes"]["cicd.pipeline.task.run.result"] == "failure"
    assert first["attributes"]["runner.retried"] is True and first["attributes"]["runner.exit_code"] == 7
    assert second["attributes"]["cicd.pipeline.task.run.result"] == "success"
    assert first["span_id"] != second["span_id"] and first["end"] <= second["start"]
    assert len(named["flaky: 1"]) == 2

    # A sub-workflow's nodes under the node that runs it.
    [sub] = named["sub"]
    [inner] = named["sub/inner"]
    assert inner["parent"] == sub["span_id"] and sub["parent"] == run["span_id"]
    assert inner["attributes"]["runner.job.kind"] == "value"
    [render] = named["sub/render"]
    [step] = named["sub/render: 1"]
    assert render["parent"] == sub["span_id"] and step["parent"] == render["span_id"]
    assert render["attributes"]["runner.image"] == BUSYBOX
    assert f"[sub/render/1] rendering under 00-{trace}-{step['span_id']}-01" in result.stdout

    [never] = named["never"]
    assert never["attributes"]["cicd.pipeline.task.run.result"] == "skip"
    assert never["attributes"]["runner.reason"] == "if was false"

    # The secret is in the environment, the logs, a matrix value and an output: in no span.
    assert "secretive (token=***)" in named
    assert SECRET not in json.dumps(spans)
    assert SECRET not in result.stdout + result.stderr


RESUMED = """
    version: 1
    name: resumable
    defaults: {image: "alpine:3.20"}
    jobs:
      first:
        outputs: {x: "1"}
      flaky:
        needs: first
        run: test -f /workspace/fixed
"""


def test_a_resumed_run_continues_its_trace(docker, tmp_path):
    path = write(tmp_path, RESUMED)
    with collector() as server:
        env = traced_env(server.endpoint)
        first = cli("run", path, *IMAGE_MAP, cwd=tmp_path, env=env)
        assert first.returncode == 1, first.stdout + first.stderr
        run_id = run_id_of(first.stdout)
        server.wait(4)
        (tmp_path / "fixed").write_text("")
        second = cli("resume", run_id, *IMAGE_MAP, cwd=tmp_path, env=env)
        assert second.returncode == 0, second.stdout + second.stderr
        spans = server.wait(9)
    named = by_name(spans)
    assert {s["trace_id"] for s in spans} == {trace_id_of(run_id)}
    one, two = sorted(named["resumable"], key=lambda s: s["attributes"]["runner.run.attempt"])
    assert one["attributes"]["cicd.pipeline.result"] == "failure" and one["status"] == 2
    assert two["attributes"]["cicd.pipeline.result"] == "success" and two["attributes"]["runner.run.attempt"] == 2
    assert two["links"] == [{"trace_id": one["trace_id"], "span_id": one["span_id"]}]
    kept = [s for s in named["first"] if s["parent"] == two["span_id"]]
    assert [s["attributes"].get("runner.kept_from") for s in kept] == [1]
    failed, fixed = sorted(named["flaky"], key=lambda s: s["attributes"]["runner.run.attempt"])
    assert failed["parent"] == one["span_id"] and fixed["parent"] == two["span_id"]
    assert failed["attributes"]["cicd.pipeline.task.run.result"] == "failure" and failed["status"] == 2
    assert failed["attributes"]["runner.exit_code"] == 1
    assert fixed["attributes"]["cicd.pipeline.task.run.result"] == "success"


VALUES = """
    version: 1
    jobs:
      a:
        outputs: {x: "1"}
      b:
        needs: a
        outputs: {y: "${{ jobs.a.outputs.x }}2"}
"""

IMPORTED = (
    "import sys; from runner.cli import main; status = main(['run', sys.argv[1]]); "
    "print(sorted({m.split('.')[0] + '.' + m.split('.')[1] for m in sys.modules if m.startswith('opentelemetry.')}));"
    "sys.exit(status)"
)


def test_opentelemetry_is_not_even_imported_unless_an_endpoint_is_set(tmp_path, monkeypatch):
    path = write(tmp_path, VALUES)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    plain = subprocess.run([sys.executable, "-c", IMPORTED, path], capture_output=True, text=True, cwd=tmp_path)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert plain.stdout.splitlines()[-1] == "[]"

    with collector() as server:
        traced = subprocess.run([sys.executable, "-c", IMPORTED, path], capture_output=True, text=True, cwd=tmp_path,
                                env={**os.environ, **traced_env(server.endpoint)})
        assert traced.returncode == 0, traced.stdout + traced.stderr
        assert "opentelemetry.sdk" in traced.stdout.splitlines()[-1]
        assert sorted(s["name"] for s in server.wait(3)) == ["a", "b", "workflow"]


def test_an_unreachable_collector_costs_a_warning_not_the_run(tmp_path):
    path = write(tmp_path, VALUES)
    with collector() as server:
        endpoint = server.endpoint  # a port that nothing listens on once the collector is gone
    result = cli("run", path, cwd=tmp_path, env={**traced_env(endpoint), "OTEL_EXPORTER_OTLP_TIMEOUT": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "spans of the run's trace could not be sent to" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value, expected", [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_which_settings_turn_tracing_on(value, expected):
    from runner.report.traceids import enabled

    assert enabled(value) is expected


def test_a_cached_job_says_so_in_its_span(docker, tmp_path):
    path = write(tmp_path, """
        version: 1
        jobs:
          build:
            image: "alpine:3.20"
            cache: true
            run: echo built
    """)
    with collector() as server:
        env = traced_env(server.endpoint)
        first = cli("run", path, *IMAGE_MAP, cwd=tmp_path, env=env)
        second = cli("run", path, *IMAGE_MAP, cwd=tmp_path, env=env)
        assert first.returncode == second.returncode == 0, first.stderr + second.stderr
        spans = server.wait(5)
    built, reused = sorted(by_name(spans)["build"], key=lambda s: s["start"])
    assert built["attributes"]["runner.cache.hit"] is False and "runner.cache.source_run" not in built["attributes"]
    assert reused["attributes"]["runner.cache.hit"] is True
    assert reused["attributes"]["runner.cache.source_run"] == run_id_of(first.stdout)
    assert len(by_name(spans)["build: 1"]) == 1  # the cached run started no step


def test_the_exporter_masks_every_name_and_attribute_itself(tmp_path, monkeypatch):
    """Whatever reaches it: a reason, a node's name, a matrix value or the run's reason holding the secret."""
    from runner.load.workflow import load_workflow
    from runner.masking import Masker
    from runner.model.results import NodeRecord, NodeState
    from runner.report.otel import Tracing

    workflow, _ = load_workflow(write(tmp_path, VALUES))
    with collector() as server:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        tracing = Tracing(workflow, "r1", 1, Masker([SECRET]))
        tracing.run_started("r1", str(tmp_path / "workflow.yml"), f"deploy {SECRET}")
        node = NodeRecord(f"a ({SECRET})", "a", matrix={"token": SECRET}, state=NodeState.RUNNING)
        tracing.node_started(node)
        tracing.step_started(node.id, SECRET)
        node.state, node.reason = NodeState.FAILED, f"could not log in with {SECRET}"
        tracing.node_finished(node)
        tracing.run_finished({"status": "failure", "reason": f"a failed: {SECRET}"})
        tracing.close()
        spans = server.wait(3)
    assert len(spans) == 3
    assert SECRET not in json.dumps(spans)
    assert "could not log in with ***" in json.dumps(spans)


def test_runs_of_the_server_are_traced_as_the_clis_are(tmp_path):
    from serving import Served

    (tmp_path / "workflows").mkdir()
    write(tmp_path / "workflows", """
        version: 1
        name: served
        jobs:
          first: {outputs: {x: 1}}
          second: {needs: first, outputs: {y: "${{ jobs.first.outputs.x + 1 }}"}}
    """, name="served.yml")
    with collector() as server:
        served = Served("--workflows", tmp_path / "workflows", "--state-dir", tmp_path / "state", cwd=tmp_path,
                        env=traced_env(server.endpoint))
        try:
            runs = [served.start("served.yml", wait=30) for _ in range(2)]
            spans = server.wait(6)
        finally:
            served.stop()
    named = by_name(spans)
    assert len(named["served"]) == 2 and len(named["first"]) == 2 and len(named["second"]) == 2
    for run_id in runs:
        [run] = [s for s in named["served"] if s["attributes"]["cicd.pipeline.run.id"] == run_id]
        assert run["trace_id"] == trace_id_of(run_id) and run["parent"] is None
        [second] = [s for s in named["second"] if s["trace_id"] == run["trace_id"]]
        assert second["parent"] == run["span_id"]
        assert second["attributes"]["cicd.pipeline.task.run.result"] == "success"


def test_http_and_llm_requests_carry_the_traceparent_of_their_attempt(tmp_path):
    from servers import serve
    from test_llm import KEY, OpenAI

    with serve(OpenAI) as api, collector() as server:
        path = write(tmp_path, f"""
            version: 1
            secrets: [OPENAI_API_KEY]
            jobs:
              fetch: {{http: {{url: "{api.url}/issues"}}}}
              ask: {{llm: {{model: echo, prompt: hi, base_url: "{api.url}/v1"}}}}
              own: {{http: {{url: "{api.url}/issues", headers: {{TraceParent: "00-{'1' * 32}-{'2' * 16}-00"}}}}}}
        """)
        result = cli("run", path, cwd=tmp_path, env={**traced_env(server.endpoint), "OPENAI_API_KEY": KEY})
        assert result.returncode == 0, result.stdout + result.stderr
        spans = by_name(server.wait(4))
        sent = [r["headers"] for r in api.requests]
    trace = trace_id_of(run_id_of(result.stdout))
    for job, path in (("fetch", "/issues"), ("ask", "/v1/chat/completions")):
        [span] = spans[job]
        [headers] = [r["headers"] for r in api.requests if r["path"] == path and "TraceParent" not in r["headers"]]
        assert headers["traceparent"] == f"00-{trace}-{span['span_id']}-01"
    # A job that sets its own header keeps it.
    [own] = [h for h in sent if "TraceParent" in h]
    assert own["TraceParent"] == f"00-{'1' * 32}-{'2' * 16}-00" and "traceparent" not in own


def test_runs_traced_at_once_keep_the_sdks_complaints_apart(monkeypatch, capsys):
    """In a server several runs are traced at once: one ending must not let the SDK's own log
    lines reach the console while another still exports, and each warns of its own lost spans."""
    import logging

    from opentelemetry.sdk.trace import TracerProvider

    from runner.report.otel import _Sender

    with collector() as server:
        endpoint = server.endpoint  # nothing listens here once the collector is gone
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    logger = logging.getLogger("opentelemetry")
    first, second = _Sender(), _Sender()
    first.shutdown()
    assert logger.propagate is False
    span = TracerProvider().get_tracer("test").start_span("lost")
    span.end()
    second.export([span])
    assert capsys.readouterr().err == ""
    second.shutdown()
    assert logger.propagate is True
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"runner: warning: 1 spans of the run's trace could not be sent to {endpoint}")
    assert first.why == "" and second.why
