"""`runner trace ID`: a recorded run's timeline as Chrome trace events, from the store alone."""

from __future__ import annotations

import json
import sqlite3

from conftest import IMAGE_MAP, cli, state_of, write
from test_resume import run_id_of

WORKFLOW = """
    version: 1
    name: timeline
    defaults: {image: "alpine:3.20"}
    jobs:
      prepare:
        outputs: {x: "1"}
      build:
        needs: prepare
        retry: {attempts: 2, delay: 0s}
        steps:
          - id: compile
            run: echo compiling
          - id: check
            run: |
              [ -f /workspace/flag ] && exit 0
              touch /workspace/flag
              exit 4
      never:
        if: false
        outputs: {x: "1"}
      last:
        needs: build
        run: test -f /workspace/fixed
"""


def events_of(document: dict, phase: str = "X") -> list[dict]:
    return [e for e in document["traceEvents"] if e["ph"] == phase]


def tracks(document: dict) -> dict[int, str]:
    return {e["tid"]: e["args"]["name"] for e in events_of(document, "M") if e["name"] == "thread_name"}


def test_trace_writes_runs_attempts_and_steps_as_chrome_trace_events(docker, tmp_path):
    path = write(tmp_path, WORKFLOW)
    first = cli("run", path, *IMAGE_MAP, cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    run_id = run_id_of(first.stdout)
    (tmp_path / "fixed").write_text("")
    assert cli("resume", run_id, *IMAGE_MAP, cwd=tmp_path).returncode == 0

    result = cli("trace", run_id, "-o", tmp_path / "trace.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "trace.json").read_text())
    assert json.loads(cli("trace", run_id, "--format", "chrome", cwd=tmp_path).stdout) == document
    assert document["otherData"]["run_id"] == run_id and document["displayTimeUnit"] == "ms"
    spans = events_of(document)
    for span in spans:
        assert {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"} <= span.keys()
        assert span["ts"] >= 0 and span["dur"] >= 0
    names = tracks(document)
    assert names[0] == "run" and {"prepare", "build", "never", "last"} <= set(names.values())

    runs = [(s["name"], s["args"]["status"]) for s in spans if s["cat"] == "run"]
    assert runs == [("run (attempt 1)", "failure"), ("resume (attempt 2)", "success")]

    def on(node: str, category: str) -> list[dict]:
        return sorted((s for s in spans if names[s["tid"]] == node and s["cat"] == category), key=lambda s: s["ts"])

    # build: retried once in the first attempt, kept in the second; each attempt with its two steps inside it.
    attempts = on("build", "node")
    assert [(a["name"], a["args"]["state"], a["args"]["run_attempt"]) for a in attempts] == [
        ("build", "retried", 1), ("build (attempt 2)", "succeeded", 1), ("build", "succeeded", 2)]
    assert attempts[2]["dur"] == 0 and attempts[2]["args"]["reason"] == "kept from attempt 1"
    steps = on("build", "step")
    assert [(s["name"], s["args"]["result"], s["args"]["exit_code"], s["args"]["attempt"]) for s in steps] == [
        ("compile", "success", 0, 1), ("check", "failure", 4, 1), ("compile", "success", 0, 2), ("check", "success", 0, 2)]
    for step in steps:
        attempt = attempts[step["args"]["attempt"] - 1]
        assert attempt["ts"] <= step["ts"] and step["ts"] + step["dur"] <= attempt["ts"] + attempt["dur"]

    [skipped] = [s for s in on("never", "node") if s["args"]["run_attempt"] == 1]
    assert skipped["args"]["state"] == "skipped" and skipped["dur"] == 0
    assert [(s["args"]["state"], s["args"]["run_attempt"]) for s in on("last", "node")] == [
        ("failed", 1), ("succeeded", 2)]


def test_trace_reads_runs_recorded_before_steps_were(tmp_path):
    path = write(tmp_path, """
        version: 1
        jobs:
          a:
            outputs: {x: "1"}
    """)
    run = cli("run", path, cwd=tmp_path)
    run_id = run_id_of(run.stdout)
    db = sqlite3.connect(state_of(tmp_path) / "state.db")
    db.execute("DROP TABLE steps")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    result = cli("trace", run_id, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [s["name"] for s in events_of(json.loads(result.stdout))] == ["run (attempt 1)", "a"]


def test_trace_of_an_unknown_run_says_so(tmp_path):
    write(tmp_path, "version: 1\njobs:\n  a:\n    outputs: {x: '1'}\n")
    assert cli("run", "workflow.yml", cwd=tmp_path).returncode == 0
    result = cli("trace", "nope", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no run `nope` is recorded" in result.stderr and "Traceback" not in result.stderr
