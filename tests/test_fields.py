"""Fields that hold a template are rendered and checked where they are used.

A value that renders to something the field does not take fails the node (or
the run) with a reason naming the file, line and column of the field; never a
traceback.  Value jobs need no engine; steps run on the fake backend.
"""

from __future__ import annotations

import json

import pytest

from conftest import cli, write
from test_scheduler import run


def run_cli(tmp_path, *args):
    out = tmp_path / "out.json"
    done = cli("run", tmp_path / "workflow.yml", "--output-json", out, *args, cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    return done, json.loads(out.read_text()) if out.exists() else None


WORKFLOW_TIMEOUT = """
    version: 1
    inputs: {t: {type: string, default: 1m}}
    timeout: ${{ inputs.t }}
    jobs:
      a: {outputs: {x: 1}}
"""


def test_a_workflow_timeout_from_an_input_is_used(tmp_path):
    write(tmp_path, WORKFLOW_TIMEOUT)
    assert cli("validate", tmp_path / "workflow.yml").returncode == 0
    done, summary = run_cli(tmp_path, "--input", "t=5s")
    assert done.returncode == 0, done.stderr
    assert summary["jobs"]["a"]["outputs"] == {"x": 1}


def test_a_workflow_timeout_that_is_not_a_duration_fails_the_run_naming_the_field(tmp_path):
    write(tmp_path, WORKFLOW_TIMEOUT)
    done, summary = run_cli(tmp_path, "--input", "t=soon")
    assert done.returncode == 1, done.stderr
    where = f"{tmp_path / 'workflow.yml'}:3:10"
    assert summary["reason"] == f'{where}: timeout: "soon" is not a duration'
    assert summary["status"] == "failure"
    assert summary["jobs"]["a"]["result"] == "cancelled"
    assert f'{where}: timeout: "soon" is not a duration' in done.stdout + done.stderr


def test_a_job_timeout_that_is_not_a_duration_fails_the_job_naming_the_field(tmp_path):
    write(tmp_path, """
        version: 1
        inputs: {t: {type: string, default: 1m}}
        jobs:
          a:
            timeout: ${{ inputs.t }}
            outputs: {x: 1}
            repeat: {until: "${{ true }}"}
          b: {needs: a, outputs: {x: 2}}
    """)
    done, summary = run_cli(tmp_path, "--input", "t=-3")
    assert done.returncode == 1
    assert summary["jobs"]["a"]["reason"] == f"{tmp_path / 'workflow.yml'}:5:14: timeout: \"-3\" is not a duration"
    assert summary["jobs"]["b"]["reason"] == "needs a failed"


@pytest.mark.parametrize("value, reason", [
    ("2s", "step `1` timed out after 2s"),
    ("soon", 'workflow.yml:6:39: timeout: "soon" is not a duration'),
])
def test_a_step_timeout_from_an_input(tmp_path, value, reason):
    outcome, backend, _ = run(tmp_path, """
        version: 1
        inputs: {t: {type: string}}
        defaults: {image: x}
        jobs:
          slow:
            steps: [{run: sleep 100, timeout: "${{ inputs.t }}"}]
    """, inputs={"t": value})
    record = outcome.jobs["slow"]
    assert record.state.value == "failed"
    assert record.reason.endswith(reason), record.reason
    assert backend.removed == backend.started


def test_a_timeout_that_renders_to_zero_is_refused_naming_the_field(tmp_path):
    write(tmp_path, """
        version: 1
        inputs: {t: {type: string, default: 1m}}
        jobs:
          a:
            timeout: ${{ inputs.t }}
            outputs: {x: 1}
            repeat: {until: "${{ true }}", delay: "${{ 0 }}"}
    """)
    assert run_cli(tmp_path)[0].returncode == 0  # a zero delay is a delay
    done, summary = run_cli(tmp_path, "--input", "t=0s")
    assert done.returncode == 1
    assert summary["jobs"]["a"]["reason"] == f"{tmp_path / 'workflow.yml'}:5:14: timeout: must be more than 0"


RETRY = """
    version: 1
    inputs:
      n: {type: string, default: "3"}
      d: {type: string, default: 10s}
      f: {type: string, default: "1"}
    defaults: {image: x}
    jobs:
      flaky:
        retry: {attempts: "${{ inputs.n }}", delay: "${{ inputs.d }}", backoff_factor: "${{ inputs.f }}", max_delay: "${{ inputs.d }}"}
        run: exit 1
"""


def test_a_retry_policy_from_inputs_is_used(tmp_path):
    outcome, backend, _ = run(tmp_path, RETRY, inputs={"n": "3", "d": "10s", "f": "1"})
    record = outcome.jobs["flaky"]
    assert record.attempts == 3
    assert record.reason.endswith("(attempt 3 of 3)"), record.reason
    assert backend.removed == backend.started


@pytest.mark.parametrize("inputs, reason", [
    ({"n": "many"}, '9:23: retry.attempts: "many" is not a whole number above 0'),
    ({"d": "soon"}, '9:49: retry.delay: "soon" is not a duration'),
    ({"f": "0.5"}, '9:84: retry.backoff_factor: "0.5" is not a number of at least 1'),
])
def test_a_retry_field_that_renders_to_a_bad_value_fails_the_job_naming_the_field(tmp_path, inputs, reason):
    outcome, backend, _ = run(tmp_path, RETRY, inputs=inputs)
    record = outcome.jobs["flaky"]
    assert record.state.value == "failed"
    assert record.reason == f"{tmp_path / 'workflow.yml'}:{reason}"
    assert backend.started == []  # the policy is read before the first attempt


def test_a_retry_field_naming_an_undeclared_input_fails_validation(tmp_path):
    write(tmp_path, """
        version: 1
        jobs:
          a:
            retry: {attempts: 2, delay: "${{ inputs.nope }}"}
            outputs: {x: 1}
    """)
    done = cli("validate", tmp_path / "workflow.yml")
    assert done.returncode == 2
    assert "workflow.yml:4:33: in `inputs.nope`: no input named `nope` is declared (jobs.a.retry.delay)" in done.stderr


@pytest.mark.parametrize("limit, value, reason", [
    ("cpus", "many", "resources.cpus: `many` is not a number of CPUs above 0, e.g. 0.5 or 2"),
    ("memory", "lots", "resources.memory: `lots` is not an amount of memory; write 512m or 2g"),
    ("pids", "0", "resources.pids: `0` is not a whole number of at least 1"),
])
def test_a_resource_limit_that_renders_to_a_bad_value_fails_the_job_naming_the_field(tmp_path, limit, value, reason):
    outcome, backend, _ = run(tmp_path, f"""
        version: 1
        inputs: {{v: {{type: string}}}}
        defaults: {{image: x}}
        jobs:
          a:
            resources: {{{limit}: "${{{{ inputs.v }}}}"}}
            run: echo never
    """, inputs={"v": value})
    record = outcome.jobs["a"]
    assert record.state.value == "failed"
    assert record.reason == f"{tmp_path / 'workflow.yml'}:6:{19 + len(limit)}: {reason}"
    assert backend.started == []


def test_an_image_or_working_dir_that_cannot_be_rendered_fails_the_job_naming_the_field(tmp_path):
    outcome, backend, _ = run(tmp_path, """
        version: 1
        jobs:
          a: {image: "${{ 1 // 0 }}", run: echo never}
          b: {image: x, working_dir: "${{ [] + 1 }}", run: echo never}
    """)
    workflow = tmp_path / "workflow.yml"
    assert outcome.jobs["a"].reason == f"{workflow}:3:14: image: `1 // 0` cannot be evaluated: division by zero"
    assert outcome.jobs["b"].reason == (
        f"{workflow}:4:30: working_dir: `[] + 1` cannot be evaluated: `+` does not apply to a list and a number"
    )
    assert backend.started == []


def test_a_workflow_timeout_naming_an_undeclared_input_fails_validation(tmp_path):
    write(tmp_path, """
        version: 1
        timeout: ${{ inputs.nope }}
        jobs:
          a: {outputs: {x: 1}}
    """)
    done = cli("validate", tmp_path / "workflow.yml")
    assert done.returncode == 2
    assert "workflow.yml:2:10: in `inputs.nope`: no input named `nope` is declared (timeout)" in done.stderr


def test_a_sub_workflow_input_that_cannot_be_rendered_names_where_it_is_written(tmp_path):
    (tmp_path / "child.yml").write_text(
        "version: 1\ninputs: {a: {type: integer}, b: {type: integer, default: 0}}\njobs:\n  x: {outputs: {y: 1}}\n"
    )
    write(tmp_path, """
        version: 1
        jobs:
          c:
            uses: child.yml
            with: {a: 1, b: "${{ 1 // 0 }}"}
    """)
    done, summary = run_cli(tmp_path)
    assert done.returncode == 1
    reason = summary["jobs"]["c"]["reason"]
    assert reason == f"{tmp_path / 'workflow.yml'}:5:21: with.b: `1 // 0` cannot be evaluated: division by zero"


def test_a_step_field_that_cannot_be_rendered_names_the_step_and_where_the_field_is_written(tmp_path):
    outcome, backend, _ = run(tmp_path, """
        version: 1
        defaults: {image: x}
        jobs:
          a:
            steps: [{run: "echo ${{ 1 // 0 }}"}]
          b:
            steps: [{run: echo hi, env: {X: "${{ 1 // 0 }}"}}]
          c:
            steps: [{run: echo hi, working_dir: "${{ 1 // 0 }}"}]
          d:
            steps: [{run: echo hi, if: "${{ 1 // 0 }}"}]
    """)
    workflow, error = tmp_path / "workflow.yml", "`1 // 0` cannot be evaluated: division by zero"
    assert outcome.jobs["a"].reason == f"step `1`: {workflow}:5:19: run: {error}"
    assert outcome.jobs["b"].reason == f"step `1`: {workflow}:7:37: env.X: {error}"
    assert outcome.jobs["c"].reason == f"step `1`: {workflow}:9:41: working_dir: {error}"
    assert outcome.jobs["d"].reason == f"step `1`: {workflow}:11:32: if: {error}"
    assert backend.removed == backend.started


def test_a_matrix_that_renders_to_something_it_cannot_expand_names_where_it_is_written(tmp_path):
    outcome, _, _ = run(tmp_path, """
        version: 1
        inputs: {v: {type: string, default: soon}}
        jobs:
          a: {matrix: {x: [1], include: "${{ inputs.v }}"}, outputs: {x: 1}}
          b: {matrix: {x: "${{ inputs.v }}"}, outputs: {x: 1}}
          c: {matrix: {x: "${{ 1 // 0 }}"}, outputs: {x: 1}}
    """)
    workflow = tmp_path / "workflow.yml"
    assert outcome.jobs["a"].reason == f"{workflow}:4:33: matrix: `include` must be a list of mappings"
    assert outcome.jobs["b"].reason == f"{workflow}:5:19: matrix: axis `x` must be a list, got str"
    assert outcome.jobs["c"].reason == f"{workflow}:6:19: matrix.x: `1 // 0` cannot be evaluated: division by zero"
