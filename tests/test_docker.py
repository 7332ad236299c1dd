"""Container jobs against the real Docker engine, as a user of `runner run` sees them.

Every test runs the CLI in a subprocess on a workflow written to tmp_path and
looks only at what a user can see: stdout, stderr, the exit status, the
--output-json and --events files, files in the workspace, and the step logs
under runs/<id>/logs/ in the state directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import IMAGE_MAP, LABEL, cli, state_of, write

# Workflows name the public images (quoted for YAML flow mappings); IMAGE_MAP
# points them at the local test images.
BUSYBOX_IMAGE = '"alpine:3.20"'
PYTHON_IMAGE = '"python:3.12-slim"'


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    summary: dict | None  # --output-json
    events: list[dict]  # --events
    events_text: str
    logs: dict[str, str]  # "<node>/<step>.log" -> text
    elapsed: float

    def job(self, job_id: str) -> dict:
        return self.summary["jobs"][job_id]

    def lines(self, node: str, step: str) -> list[str]:
        """What the console printed for one step, without the `[node/step] ` prefix."""
        prefix = f"[{node}/{step}] "
        return [line[len(prefix):] for line in self.stdout.splitlines() if line.startswith(prefix)]


def run(tmp_path: Path, text: str, *args: str, env: dict | None = None, timeout: float = 120) -> Run:
    workflow = write(tmp_path, text)
    out, events = tmp_path / "out.json", tmp_path / "events.jsonl"
    started = time.monotonic()
    done = cli(
        "run", workflow, *IMAGE_MAP, "--output-json", out, "--events", events, *args,
        cwd=tmp_path, env=env, timeout=timeout,
    )
    elapsed = time.monotonic() - started
    summary = json.loads(out.read_text()) if out.exists() else None
    events_text = events.read_text() if events.exists() else ""
    logs = {}
    if summary:
        log_dir = state_of(tmp_path) / "runs" / summary["run_id"] / "logs"
        logs = {p.relative_to(log_dir).as_posix(): p.read_text() for p in sorted(log_dir.rglob("*.log"))}
    return Run(
        done.returncode, done.stdout, done.stderr, summary,
        [json.loads(line) for line in events_text.splitlines() if line.strip()], events_text, logs, elapsed,
    )


def containers(docker, run_id: str) -> list:
    """The run's containers still present."""
    return docker.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"})


def assert_no_traceback(result: Run) -> None:
    assert "Traceback" not in result.stdout + result.stderr


# -- the happy path -----------------------------------------------------------


def test_steps_share_one_container_files_and_env(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          build:
            steps:
              - id: first
                run: |
                  echo made-in-step-1 > /tmp/shared.txt
                  echo "GREETING=hello from step 1" >> "$RUNNER_ENV"
                  echo "host=$(hostname)"
              - id: second
                run: |
                  echo "file=$(cat /tmp/shared.txt)"
                  echo "greeting=$GREETING"
                  echo "host=$(hostname)"
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = result.lines("build", "first"), result.lines("build", "second")
    assert "file=made-in-step-1" in second
    assert "greeting=hello from step 1" in second
    hosts = [line for line in first + second if line.startswith("host=")]
    assert len(hosts) == 2 and hosts[0] == hosts[1], hosts  # one container for both steps


def test_one_step_job_is_its_containers_command_and_longer_jobs_exec_each_step(docker, tmp_path):
    since = int(time.time()) - 1
    result = run(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          one:
            env: {{WHO: job}}
            working_dir: sub
            steps:
              - id: only
                run: |
                  echo "hello ${{{{ 'from' }}}} $WHO in $PWD"
                  echo "to stderr" >&2
                  echo "answer=42" >> "$RUNNER_OUTPUT"
            outputs:
              answer: ${{{{ steps.only.outputs.answer }}}}
          two:
            steps:
              - run: echo a
              - run: echo b
          none:
            steps:
              - {{if: "${{{{ inputs == 'never' }}}}", run: echo "must not run"}}
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    # stdout and stderr are two streams: their lines need not arrive in the order printed.
    assert sorted(result.lines("one", "only")) == ["hello from job in /workspace/sub", "to stderr"]
    assert result.job("one")["outputs"] == {"answer": "42"}
    events = docker.api.events(
        since=since, until=int(time.time()) + 1, decode=True,
        filters={"type": "container", "label": f"{LABEL}={result.summary['run_id']}"},
    )
    actions: dict[str, list[str]] = {}
    for event in events:
        attributes = event["Actor"]["Attributes"]
        action = event["Action"].split(":")[0]
        actions.setdefault(attributes["dev.runner.node"], []).append(
            f"die {attributes['exitCode']}" if action == "die" else action
        )
    # The step ends its container by itself: no exec, no kill.
    assert [a for a in actions["one"] if a.startswith("exec") or a == "kill"] == [], actions["one"]
    assert "die 0" in actions["one"], actions["one"]
    assert actions["two"].count("exec_create") == 2, actions["two"]
    assert result.job("none")["result"] == "success"
    assert "none" not in actions, "a job whose steps are all skipped needs no container"


def test_outputs_single_and_multiline_reach_dependent_job_and_run_outputs(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          produce:
            steps:
              - id: meta
                run: |
                  echo "version=1.2.3" >> "$RUNNER_OUTPUT"
                  {{
                    echo "notes<<EOF"
                    echo "line one"
                    echo "line two = still two"
                    echo "EOF"
                  }} >> "$RUNNER_OUTPUT"
            outputs:
              version: ${{{{ steps.meta.outputs.version }}}}
              notes: ${{{{ steps.meta.outputs.notes }}}}
          consume:
            needs: produce
            steps:
              - id: seen
                run: |
                  printf '%s\\n' "${{{{ jobs.produce.outputs.notes }}}}" > /tmp/notes
                  cat /tmp/notes
                  echo "lines=$(wc -l < /tmp/notes | tr -d ' ')" >> "$RUNNER_OUTPUT"
                  echo "version=${{{{ jobs.produce.outputs.version }}}}" >> "$RUNNER_OUTPUT"
            outputs:
              lines: ${{{{ steps.seen.outputs.lines | int }}}}
              version: ${{{{ steps.seen.outputs.version }}}}
        outputs:
          version: ${{{{ jobs.produce.outputs.version }}}}
          notes: ${{{{ jobs.produce.outputs.notes }}}}
          lines_seen: ${{{{ jobs.consume.outputs.lines }}}}
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    notes = "line one\nline two = still two"
    assert result.job("produce")["outputs"] == {"version": "1.2.3", "notes": notes}
    assert result.job("consume")["outputs"] == {"lines": 2, "version": "1.2.3"}
    assert result.lines("consume", "seen") == ["line one", "line two = still two"]
    assert result.summary["outputs"] == {"version": "1.2.3", "notes": notes, "lines_seen": 2}


@pytest.mark.parametrize("first", ["", "- run: 'true'"], ids=["one step", "second step"])
def test_step_working_dir_is_relative_to_the_jobs_and_must_exist(docker, tmp_path, first):
    (tmp_path / "app" / "src").mkdir(parents=True)
    result = run(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          there:
            working_dir: app
            steps:
              {first}
              - {{working_dir: src, run: pwd}}
          missing:
            steps:
              {first}
              - {{id: go, working_dir: nowhere, run: pwd}}
          outside:
            steps:
              - run: mkdir -p /tmp/made
              - {{working_dir: /tmp/made, run: echo "in $PWD"}}
    """)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.job("there")["result"] == "success"
    assert "/workspace/app/src" in result.stdout
    assert result.job("outside")["result"] == "success"
    assert "in /tmp/made" in result.stdout  # outside the workspace, only the container knows
    assert result.job("missing")["result"] == "failure"
    assert result.job("missing")["reason"] == "step `go`: working_dir /workspace/nowhere does not exist"
    assert not (tmp_path / "nowhere").exists()


def test_workflow_directory_is_mounted_at_workspace(docker, tmp_path):
    (tmp_path / "from-host.txt").write_text("written on the host\n")
    result = run(tmp_path, f"""
        version: 1
        jobs:
          files:
            image: {BUSYBOX_IMAGE}
            run: |
              cat /workspace/from-host.txt
              echo "made in the container" > /workspace/from-step.txt
              echo "pwd=$(pwd)"
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.lines("files", "1") == ["written on the host", "pwd=/workspace"]
    assert (tmp_path / "from-step.txt").read_text() == "made in the container\n"


def test_runner_variables_and_ci_are_set(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          vars:
            image: {BUSYBOX_IMAGE}
            run: |
              echo "workspace=$RUNNER_WORKSPACE"
              echo "run_id=$RUNNER_RUN_ID"
              echo "job=$RUNNER_JOB"
              echo "ci=$CI"
              test -n "$RUNNER_OUTPUT" && test -w "$RUNNER_OUTPUT" && echo "output file writable"
              test -n "$RUNNER_ENV" && test -w "$RUNNER_ENV" && echo "env file writable"
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.lines("vars", "1") == [
        "workspace=/workspace",
        f"run_id={result.summary['run_id']}",
        "job=vars",
        "ci=true",
        "output file writable",
        "env file writable",
    ]


def test_step_output_is_printed_live_with_job_and_step_prefix(docker, tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          live:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: talk
                run: |
                  echo first
                  sleep 2
                  echo second
    """)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(workflow), *IMAGE_MAP],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen = {}
    try:
        for line in proc.stdout:
            if line.rstrip("\n") in ("[live/talk] first", "[live/talk] second"):
                seen[line.split()[-1]] = time.monotonic()
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    assert set(seen) == {"first", "second"}
    # "first" reached the terminal while the step was still sleeping, not at its end.
    assert seen["second"] - seen["first"] > 1.0


def test_step_log_file_keeps_the_whole_output(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          big:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: count
                run: |
                  seq 1 5000
                  echo "to stderr" >&2
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    log = result.logs["big/count.log"].splitlines()
    assert [line for line in log if line != "to stderr"] == [str(i) for i in range(1, 5001)]
    assert "to stderr" in log
    # stdout and stderr are separate streams: where the stderr line falls among the others may vary.
    printed = result.lines("big", "count")
    assert [line for line in printed if line != "to stderr"] == [str(i) for i in range(1, 5001)]
    assert "to stderr" in printed


def test_each_line_of_one_step_jobs_started_together_arrives_once(docker, tmp_path):
    # A one-step job's first lines come while the engine may still be setting up the
    # attach: they must neither be lost nor come twice (once live, once from its log).
    jobs = "".join(f"  j{i}: {{image: {BUSYBOX_IMAGE}, run: echo line {i}}}\n" for i in range(16))
    result = run(tmp_path, "version: 1\nconcurrency: 16\njobs:\n" + jobs)
    assert result.returncode == 0, result.stdout + result.stderr
    for i in range(16):
        assert result.lines(f"j{i}", "1") == [f"line {i}"]
        assert result.logs[f"j{i}/1.log"] == f"line {i}\n"


# -- shells ----------------------------------------------------------------------


def test_sh_is_the_default_shell_and_stops_at_the_first_error(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          plain:
            image: {BUSYBOX_IMAGE}
            run: |
              echo "shell=$0"
              false
              echo "never printed"
    """)
    assert result.returncode == 1
    assert any(line.startswith("shell=") and line.endswith(".sh") for line in result.lines("plain", "1"))
    assert "never printed" not in result.stdout


def test_bash_shell(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          b:
            image: {PYTHON_IMAGE}
            shell: bash
            run: |
              arr=(one two three)
              echo "count=${{#arr[@]}}"
              [[ "$BASH_VERSION" == [0-9]* ]] && echo "is bash"
              false | true
              echo "never printed, pipefail is on"
    """)
    assert result.lines("b", "1") == ["count=3", "is bash"]
    assert result.returncode == 1  # -o pipefail: `false | true` fails the step


def test_python_shell(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          py:
            image: {PYTHON_IMAGE}
            steps:
              - id: calc
                shell: python
                run: |
                  import os, sys
                  print("sum", sum(range(10)))
                  print("major", sys.version_info.major)
                  with open(os.environ["RUNNER_OUTPUT"], "a") as f:
                      f.write("answer=42\\n")
            outputs:
              answer: ${{{{ steps.calc.outputs.answer | int }}}}
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.lines("py", "calc") == ["sum 45", "major 3"]
    assert result.job("py")["outputs"] == {"answer": 42}


# -- injection safety -------------------------------------------------------------

HOSTILE = {
    "semicolon": '"; touch /workspace/pwned; echo "',
    "command_substitution": "$(touch /workspace/pwned)",
    "backticks": "`touch /workspace/pwned`",
    "newline": "safe\ntouch /workspace/pwned",
    "leading_dash_n": "-n touch /workspace/pwned",
    "python_quote": "'); open('/workspace/pwned', 'w'); print('",
    "python_triple": '"""); open("/workspace/pwned", "w"); print("""',
}

# Each value is used unquoted, inside a string and in an assignment, in sh, bash and
# python. Python's "inside a string" is an f-string field: a `${{ }}` stands where a
# variable may stand, and in Python a plain "…" literal is not such a place.
INJECTION_WORKFLOW = f"""
    version: 1
    inputs:
      v: {{type: string, required: true}}
    jobs:
      sh:
        image: {BUSYBOX_IMAGE}
        steps:
          - id: unquoted
            run: echo x ${{{{ inputs.v }}}}
          - id: quoted
            run: printf '%s\\n' "${{{{ inputs.v }}}}"
          - id: assigned
            run: |
              X=${{{{ inputs.v }}}}
              printf '%s\\n' "$X"
      bash:
        image: {PYTHON_IMAGE}
        shell: bash
        steps:
          - id: unquoted
            run: echo x ${{{{ inputs.v }}}}
          - id: quoted
            run: printf '%s\\n' "${{{{ inputs.v }}}}"
          - id: assigned
            run: |
              X=${{{{ inputs.v }}}}
              printf '%s\\n' "$X"
      python:
        image: {PYTHON_IMAGE}
        shell: python
        steps:
          - id: unquoted
            run: print(${{{{ inputs.v }}}})
          - id: quoted
            run: print(f"{{${{{{ inputs.v }}}}}}")
          - id: assigned
            run: |
              X = ${{{{ inputs.v }}}}
              print(X)
"""


@pytest.mark.parametrize("payload", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_input_is_printed_literally_and_never_runs(docker, tmp_path, payload):
    result = run(tmp_path, INJECTION_WORKFLOW, "--input", f"v={payload}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "pwned").exists()
    literal = payload.splitlines()
    # Unquoted in a shell the value is split into words, but never run.
    words = ["x " + " ".join(payload.split())]
    for shell in ("sh", "bash"):
        assert result.lines(shell, "unquoted") == words, shell
        assert result.lines(shell, "quoted") == literal, shell
        assert result.lines(shell, "assigned") == literal, shell
    for step in ("unquoted", "quoted", "assigned"):
        assert result.lines("python", step) == literal, step


def test_raw_is_the_one_way_to_paste_a_value_into_a_script(docker, tmp_path):
    # The check above would see an injection: `| raw` makes one on purpose.
    result = run(tmp_path, f"""
        version: 1
        inputs:
          v: {{type: string, required: true}}
        jobs:
          pasted:
            image: {BUSYBOX_IMAGE}
            run: echo ${{{{ inputs.v | raw }}}}
    """, "--input", "v=$(touch /workspace/pwned)")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "pwned").exists()


def test_template_like_text_in_scripts_runs_unchanged(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          sh:
            image: {BUSYBOX_IMAGE}
            run: |
              echo '{{{{ x }}}}' '{{% if %}}' '{{# not a comment #}}'
              echo "braced=${{HOME}}" "plain=$HOME"
          bash:
            image: {PYTHON_IMAGE}
            shell: bash
            run: |
              arr=(a b c d)
              echo "n=${{#arr[@]}} {{{{ x }}}} {{% if %}}"
          python:
            image: {PYTHON_IMAGE}
            shell: python
            run: |
              d = {{"k": {{"x": 1}}}}
              print("{{{{ x }}}}", "{{% if %}}", "${{HOME}}", d)
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    text, home = result.lines("sh", "1")
    assert text == "{{ x }} {% if %} {# not a comment #}"
    braced, plain = home.split()
    assert braced.startswith("braced=/") and braced[len("braced="):] == plain[len("plain="):]  # the shell expanded it
    assert result.lines("bash", "1") == ["n=4 {{ x }} {% if %}"]
    assert result.lines("python", "1") == ["{{ x }} {% if %} ${HOME} {'k': {'x': 1}}"]


# -- failures ----------------------------------------------------------------------


def test_non_zero_exit_fails_the_job_naming_step_and_exit_code(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          check:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: ok
                run: echo fine
              - id: lint
                run: exit 3
              - id: after
                run: echo "must not run"
    """)
    assert result.returncode == 1
    reason = "step `lint` failed: exit code 3"
    assert result.job("check")["result"] == "failure"
    assert result.job("check")["reason"] == reason
    assert result.summary["status"] == "failure"
    assert reason in result.stdout
    assert "must not run" not in result.stdout
    assert_no_traceback(result)


def test_exit_127_says_command_not_found(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          typo:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: build
                run: no-such-command-here --flag
    """)
    assert result.returncode == 1
    reason = result.job("typo")["reason"]
    assert "step `build`" in reason and "exit code 127" in reason and "command not found" in reason
    assert "command not found" in result.stdout


@pytest.mark.parametrize("first", ["", "- run: 'true'"], ids=["one step", "second step"])
def test_out_of_memory_names_the_limit(docker, tmp_path, first):
    # A one-step job runs its step as the container's command, a longer one by exec:
    # the engine tells of an out-of-memory kill differently in each.
    result = run(tmp_path, f"""
        version: 1
        jobs:
          hog:
            image: {PYTHON_IMAGE}
            resources: {{memory: 64m}}
            steps:
              {first}
              - id: allocate
                shell: python
                run: |
                  data = b"x" * (500 * 1024 * 1024)
                  print("allocated", len(data))
    """)
    assert result.returncode == 1
    reason = result.job("hog")["reason"]
    assert "step `allocate`" in reason and "out of memory (limit 64 MiB)" in reason, reason
    assert "out of memory (limit 64 MiB)" in result.stdout
    assert "allocated" not in result.stdout


def test_independent_branch_goes_on_and_dependent_of_failure_is_skipped(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        concurrency: 2
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          broken:
            run: exit 1
          after_broken:
            needs: broken
            run: echo "must not run" > /workspace/after_broken
          other:
            steps:
              - run: sleep 1
              - run: echo "other done" > /workspace/other
          after_other:
            needs: other
            run: echo "after other ran"
    """)
    assert result.returncode == 1
    jobs = result.summary["jobs"]
    assert jobs["broken"]["result"] == "failure"
    assert jobs["after_broken"]["result"] == "skipped"
    assert jobs["after_broken"]["reason"] == "needs broken failed"
    assert jobs["other"]["result"] == "success"
    assert jobs["after_other"]["result"] == "success"
    assert (tmp_path / "other").read_text() == "other done\n"
    assert not (tmp_path / "after_broken").exists()
    assert result.summary["status"] == "failure"


def test_fail_fast_cancels_a_long_running_sibling_quickly(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        fail_fast: true
        concurrency: 2
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          slow:
            run: sleep 60
          broken:
            steps:
              - run: sleep 1
              - run: exit 1
    """)
    assert result.returncode == 1
    assert result.elapsed < 30, result.elapsed
    assert result.job("broken")["result"] == "failure"
    assert result.job("slow")["result"] == "cancelled"
    assert "broken" in result.job("slow")["reason"]
    assert containers(docker, result.summary["run_id"]) == []


# -- timeouts ------------------------------------------------------------------------


def test_job_timeout_fails_the_job_and_removes_its_container(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          sleepy:
            image: {BUSYBOX_IMAGE}
            timeout: 2s
            run: sleep 30
    """)
    assert result.returncode == 1
    assert result.elapsed < 20, result.elapsed
    assert result.job("sleepy")["result"] == "failure"
    assert "timed out after 2s" in result.job("sleepy")["reason"]
    assert "timed out after 2s" in result.stdout
    assert containers(docker, result.summary["run_id"]) == []


def test_run_timeout_stops_the_whole_run(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        timeout: 2s
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          sleepy:
            run: sleep 30
          later:
            needs: sleepy
            run: touch /workspace/later-ran
    """)
    assert result.returncode == 1
    assert result.elapsed < 20, result.elapsed
    assert result.summary["status"] == "failure"
    assert result.summary["reason"] == "the run timed out after 2s"
    for job in ("sleepy", "later"):
        assert result.job(job)["result"] == "cancelled", job
        assert result.job(job)["reason"] == "the run timed out after 2s", job
    assert not (tmp_path / "later-ran").exists()
    assert "the run timed out after 2s" in result.stdout
    assert containers(docker, result.summary["run_id"]) == []


# -- secrets ---------------------------------------------------------------------------

# Longer than 40 characters, so that a message that shortens a value cannot show it whole.
SECRET = "tok-9f8e7d6c5b4a3f2e-SECRET-0123456789abcdefghij"
SECRET_PART = SECRET[:16]  # enough of the secret to count as a leak
SECRET_WORKFLOW = f"""
    version: 1
    secrets: [API_TOKEN]
    defaults: {{image: {BUSYBOX_IMAGE}}}
    jobs:
      leak:
        env: {{TOKEN: "${{{{ secrets.API_TOKEN }}}}"}}
        steps:
          - id: echo
            run: |
              echo "token is ${{{{ secrets.API_TOKEN }}}}"
              echo "from env: $TOKEN"
              echo "on stderr: $TOKEN" >&2
          - id: out
            run: echo "token=$TOKEN" >> "$RUNNER_OUTPUT"
        outputs:
          token: ${{{{ steps.out.outputs.token }}}}
      fail_loudly:
        steps:
          - id: die
            env: {{COPY: "${{{{ secrets.API_TOKEN }}}}"}}
            run: |
              echo "error: rejected $COPY" >&2
              exit 4
    outputs:
      token: ${{{{ jobs.leak.outputs.token }}}}
"""


def everything_a_user_sees(result: Run, tmp_path: Path) -> dict[str, str]:
    return {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "--output-json": (tmp_path / "out.json").read_text(),
        "--events": result.events_text,
        **{f"log {name}": text for name, text in result.logs.items()},
    }


def test_secret_value_never_appears_in_any_output(docker, tmp_path):
    result = run(tmp_path, SECRET_WORKFLOW, env={"API_TOKEN": SECRET})
    assert result.returncode == 1
    assert result.summary is not None and result.logs
    for where, text in everything_a_user_sees(result, tmp_path).items():
        assert SECRET_PART not in text, f"the secret leaked into {where}"
    # The mask stands where the secret was.
    # (stdout and stderr are separate streams: their lines may interleave either way)
    assert sorted(result.lines("leak", "echo")) == ["from env: ***", "on stderr: ***", "token is ***"]
    assert result.job("leak")["outputs"] == {"token": "***"}
    assert result.summary["outputs"] == {"token": "***"}
    assert "token is ***" in result.logs["leak/echo.log"]
    assert "error: rejected ***" in result.logs["fail_loudly/die.log"]
    assert any(e["type"] == "log" and e["line"] == "token is ***" for e in result.events)
    assert result.job("fail_loudly")["reason"] == "step `die` failed: exit code 4"


def test_secret_in_a_failure_message_is_masked(docker, tmp_path):
    # A step writes the bare secret to $RUNNER_OUTPUT: the job fails with a message quoting the line.
    result = run(tmp_path, f"""
        version: 1
        secrets: [API_TOKEN]
        jobs:
          bad_output:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: write
                run: echo "${{{{ secrets.API_TOKEN }}}}" >> "$RUNNER_OUTPUT"
    """, env={"API_TOKEN": SECRET})
    assert result.returncode == 1
    assert result.job("bad_output")["result"] == "failure"
    assert "$RUNNER_OUTPUT" in result.job("bad_output")["reason"]
    for where, text in everything_a_user_sees(result, tmp_path).items():
        assert SECRET_PART not in text, f"the secret leaked into {where}"


def test_secret_value_is_not_left_in_the_state_directory(docker, tmp_path):
    result = run(tmp_path, SECRET_WORKFLOW, env={"API_TOKEN": SECRET})
    assert result.returncode == 1
    leaked = [
        str(path)
        for path in state_of(tmp_path).rglob("*")
        if path.is_file() and SECRET_PART in path.read_text(errors="replace")
    ]
    assert leaked == []


def test_a_process_writing_in_runner_until_its_container_goes_leaves_nothing_behind(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        secrets: [API_TOKEN]
        jobs:
          writer:
            image: {BUSYBOX_IMAGE}
            env: {{TOKEN: "${{{{ secrets.API_TOKEN }}}}"}}
            steps:
              - run: (i=0; while true; do i=$(( (i + 1) % 50 )); echo "$TOKEN" > /runner/left-$i; done) > /dev/null 2>&1 &
              - run: sleep 1
    """, env={"API_TOKEN": SECRET})
    assert result.returncode == 0, result.stderr
    left = [path for path in state_of(tmp_path).rglob("*") if path.is_file() and SECRET_PART in path.read_text(errors="replace")]
    assert left == []
    assert list((state_of(tmp_path) / "runs" / result.summary["run_id"] / "nodes").iterdir()) == []


# -- sandboxing ------------------------------------------------------------------------


def test_container_is_sandboxed(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          probe:
            image: {BUSYBOX_IMAGE}
            run: |
              grep -E '^(NoNewPrivs|CapEff):' /proc/self/status | tr -d ' \\t' | tr ':' '='
              echo "pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max)"
              if [ -e /var/run/docker.sock ] || [ -e /run/docker.sock ]; then echo socket=present; else echo socket=absent; fi
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    values = dict(line.split("=", 1) for line in result.lines("probe", "1"))
    assert values["NoNewPrivs"] == "1"
    cap_sys_admin = 1 << 21
    assert not int(values["CapEff"], 16) & cap_sys_admin, "the container is privileged"
    assert values["pids"] != "max" and int(values["pids"]) > 0
    assert values["socket"] == "absent"


def test_network_none_leaves_only_loopback(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          offline:
            network: none
            run: |
              tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '
          online:
            run: |
              tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.lines("offline", "1") == ["lo"]
    assert sorted(result.lines("online", "1")) == ["eth0", "lo"]


@pytest.mark.parametrize("limits", [
    "{cpus: 0.5, memory: 128m, pids: 64}",
    '{cpus: "${{ inputs.cpus }}", memory: "${{ inputs.memory }}", pids: "${{ inputs.pids }}"}',
])
def test_resource_limits_are_applied(docker, tmp_path, limits):
    result = run(tmp_path, f"""
        version: 1
        inputs:
          cpus: {{type: number, default: 0.5}}
          memory: {{type: string, default: 128m}}
          pids: {{type: integer, default: 64}}
        jobs:
          limited:
            image: {BUSYBOX_IMAGE}
            resources: {limits}
            run: |
              cg=/sys/fs/cgroup
              if [ -f $cg/memory.max ]; then
                echo "memory=$(cat $cg/memory.max)"
                echo "pids=$(cat $cg/pids.max)"
                echo "cpu=$(cat $cg/cpu.max | awk '{{ printf "%.2f", $1 / $2 }}')"
              else
                echo "memory=$(cat $cg/memory/memory.limit_in_bytes)"
                echo "pids=$(cat $cg/pids/pids.max)"
                echo "cpu=$(awk -v q=$(cat $cg/cpu/cpu.cfs_quota_us) -v p=$(cat $cg/cpu/cpu.cfs_period_us) 'BEGIN {{ printf "%.2f", q / p }}')"
              fi
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.lines("limited", "1") == [f"memory={128 * 1024 * 1024}", "pids=64", "cpu=0.50"]


def test_a_shell_missing_from_the_image_is_named_for_one_step_and_many_step_jobs(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          alone:
            shell: bash
            run: echo never
          second:
            steps:
              - run: echo first
              - run: print("never")
                shell: python
    """)
    assert result.returncode == 1
    jobs = result.summary["jobs"]
    assert jobs["alone"]["reason"] == (
        "step `1`: `bash` is not in image runner-test/busybox:latest; use `shell: sh` or an image that has it"
    )
    assert jobs["second"]["reason"] == (
        "step `2`: `python3` is not in image runner-test/busybox:latest; use `shell: sh` or an image that has it"
    )
    assert "tini" not in json.dumps(jobs) and "OCI" not in json.dumps(jobs)
