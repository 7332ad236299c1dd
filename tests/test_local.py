"""`--backend local`: container jobs as processes on this machine, for machines without Docker.

Every run here points DOCKER_HOST at a socket that does not exist: nothing of
it may need a Docker engine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import ROOT, cli, state_of, write

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent.sock"}
WARNING = "runner: warning: --backend local: container jobs run as processes on this machine"


def local(workflow: Path, *args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict | None]:
    """`runner run --backend local WORKFLOW`, and its --output-json summary (None if it wrote none)."""
    out = workflow.parent / "out.json"
    out.unlink(missing_ok=True)
    done = cli("run", "--backend", "local", workflow, "--output-json", out, *args,
               cwd=workflow.parent, env={**NO_DOCKER, **(env or {})})
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done, json.loads(out.read_text()) if out.exists() else None


def processes(marker: str) -> list[str]:
    """Live processes whose command line contains `marker`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def unique_sleep() -> str:
    """A `sleep` command no other process on the machine runs."""
    return f"sleep {1000 + secrets.randbelow(10**6)}"


def test_steps_run_in_the_workspace_with_outputs_env_files_and_shells(tmp_path):
    (tmp_path / "sub").mkdir()
    workflow = write(tmp_path, """
        version: 1
        secrets: [TOKEN]
        jobs:
          build:
            image: alpine:3.20
            env: {GREETING: hello}
            steps:
              - id: s
                run: |
                  echo "$GREETING from $RUNNER_WORKSPACE in $(pwd)"
                  echo "token is $TOKEN"
                  echo "made" > made.txt
                  echo "answer=42" >> "$RUNNER_OUTPUT"
                  echo "FROM_ENV_FILE=carried" >> "$RUNNER_ENV"
                env: {TOKEN: "${{ secrets.TOKEN }}"}
              - id: py
                shell: python
                run: |
                  import os
                  print("python sees", os.environ["FROM_ENV_FILE"], os.getcwd())
                  with open(os.environ["RUNNER_OUTPUT"], "a") as f:
                      f.write("cwd=" + os.getcwd() + "\\n")
                working_dir: sub
              - shell: bash
                run: set -o pipefail; echo "bash ${BASH_VERSINFO[0]}" | cat
            outputs:
              answer: ${{ steps.s.outputs.answer }}
              cwd: ${{ steps.py.outputs.cwd }}
          after:
            needs: build
            image: alpine:3.20
            run: echo "got ${{ jobs.build.outputs.answer }}"
    """)
    done, summary = local(workflow, env={"TOKEN": "s3cr3t-value"})
    assert done.returncode == 0, done.stdout + done.stderr
    workspace = str(tmp_path)
    assert f"[build/s] hello from {workspace} in {workspace}" in done.stdout
    assert "[build/s] token is ***" in done.stdout and "s3cr3t-value" not in done.stdout + done.stderr
    assert f"[build/py] python sees carried {workspace}/sub" in done.stdout
    assert re.search(r"^\[build/3\] bash \d+$", done.stdout, re.M)
    assert "[after/1] got 42" in done.stdout
    assert (tmp_path / "made.txt").read_text() == "made\n"  # the workspace itself, not a copy
    assert summary["jobs"]["build"]["outputs"] == {"answer": "42", "cwd": f"{workspace}/sub"}
    # Said once, before anything runs.
    assert done.stderr.count(WARNING) == 1
    assert "runner: note: --backend local ignores `image` (alpine:3.20)" in done.stderr


def test_a_failing_step_fails_its_job_with_its_exit_code(tmp_path):
    workflow = write(tmp_path, """
        version: 1
        jobs:
          broken:
            image: alpine:3.20
            steps:
              - run: echo before; exit 5
              - run: echo never
          missing:
            image: alpine:3.20
            shell: no-such-shell-here {0}
            run: echo never
    """)
    done, summary = local(workflow)
    assert done.returncode == 1
    assert "step `1` failed: exit code 5" in done.stdout
    assert "never" not in done.stdout
    assert summary["jobs"]["broken"]["reason"] == "step `1` failed: exit code 5"
    assert "exit code 127 (command not found)" in summary["jobs"]["missing"]["reason"]
    assert "no-such-shell-here" in summary["jobs"]["missing"]["reason"]
    assert re.search(r"^runner: to run again what did not succeed: runner resume \S+ --backend local$", done.stderr, re.M)


def test_a_timeout_kills_the_step_and_everything_it_started(tmp_path):
    background, foreground = unique_sleep(), unique_sleep()
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          slow:
            image: alpine:3.20
            steps:
              - run: |
                  {background} &
                  echo started
                  {foreground}
                timeout: 1s
    """)
    began = time.monotonic()
    done, summary = local(workflow)
    assert done.returncode == 1
    assert time.monotonic() - began < 20
    assert "[slow/1] started" in done.stdout
    assert "timed out after 1s" in summary["jobs"]["slow"]["reason"]
    assert processes(background) == [] and processes(foreground) == []


def test_what_a_step_leaves_in_the_background_ends_with_its_job(tmp_path):
    left = unique_sleep()
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          server:
            image: alpine:3.20
            steps:
              - id: s
                run: |
                  {left} > /dev/null 2>&1 &
                  echo "pid=$!" >> "$RUNNER_OUTPUT"
              - run: kill -0 ${{{{ steps.s.outputs.pid }}}} && echo still there
    """)
    done, _ = local(workflow)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[server/2] still there" in done.stdout  # as in a container, it outlives its step ...
    assert processes(left) == []  # ... but not its job


def test_ctrl_c_stops_the_run_and_leaves_no_process(tmp_path):
    sleeps = [unique_sleep() for _ in range(3)]
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          a:
            image: alpine:3.20
            run: echo started; {sleeps[0]} & {sleeps[1]}
          b:
            image: alpine:3.20
            shell: python
            run: |
              import subprocess
              print("started", flush=True)
              subprocess.run("{sleeps[2]}", shell=True)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "--backend", "local", str(workflow)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **NO_DOCKER},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not ("[a/1] started" in lines and "[b/1] started" in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "\n".join(lines)
            time.sleep(0.05)
        assert all(processes(s) for s in sleeps)
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    assert returncode == 130, "\n".join(lines) + proc.stderr.read()
    assert [p for s in sleeps for p in processes(s)] == []
    assert " cancelled " in lines[-1]


def test_matrix_retries_and_cache_work_as_with_docker(tmp_path):
    workflow = write(tmp_path, """
        version: 1
        jobs:
          flaky:
            image: alpine:3.20
            matrix: {n: [1, 2]}
            retry: {attempts: 3}
            cache: true
            steps:
              - id: s
                run: |
                  echo x >> "tries-${{ matrix.n }}"
                  test "$(wc -l < "tries-${{ matrix.n }}")" -ge 2
                  echo "n=${{ matrix.n }}" >> "$RUNNER_OUTPUT"
    """)
    done, first = local(workflow)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {i["result"] for i in first["jobs"]["flaky"]["instances"].values()} == {"success"}
    for n in (1, 2):  # each instance failed once, and succeeded when tried again
        assert (tmp_path / f"tries-{n}").read_text() == "x\nx\n"
    done, second = local(workflow)
    assert done.returncode == 0
    reasons = {i["reason"] for i in second["jobs"]["flaky"]["instances"].values()}
    assert reasons == {f"cached (from run {first['run_id']})"}
    for n in (1, 2):  # nothing ran again
        assert (tmp_path / f"tries-{n}").read_text() == "x\nx\n"


def test_settings_that_cannot_be_honoured_are_refused_before_anything_runs(tmp_path):
    workflow = write(tmp_path, """
        version: 1
        defaults:
          network: none
        jobs:
          limited:
            image: alpine:3.20
            resources: {memory: 64m}
            run: touch ran
          other:
            image: alpine:3.20
            user: "1000"
            run: touch ran
    """)
    done, summary = local(workflow)
    assert done.returncode == 2
    assert summary is None and not (tmp_path / "ran").exists() and not (state_of(tmp_path) / "runs").exists()
    lines = done.stderr.splitlines()
    assert any(line.startswith(f"{workflow}:3:3: --backend local cannot honour `network: none`") for line in lines), lines
    assert any(line.startswith(f"{workflow}:7:5: --backend local cannot enforce `resources`") for line in lines), lines
    assert any(line.startswith(f"{workflow}:11:5: --backend local cannot honour `user`") for line in lines), lines
    assert "--backend docker" in done.stderr


def test_runner_backend_variable_chooses_and_is_checked(tmp_path):
    workflow = write(tmp_path, """
        version: 1
        jobs:
          hello:
            image: alpine:3.20
            run: echo hello
    """)
    done = cli("run", workflow, cwd=tmp_path, env={**NO_DOCKER, "RUNNER_BACKEND": "local"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[hello/1] hello" in done.stdout and WARNING in done.stderr
    done = cli("run", workflow, cwd=tmp_path, env={**NO_DOCKER, "RUNNER_BACKEND": "podman"})
    assert done.returncode == 2
    assert "RUNNER_BACKEND='podman' names no backend; it is one of docker, local, swarm" in done.stderr
    # Without a choice it is Docker, never a silent fallback to processes.
    done = cli("run", workflow, cwd=tmp_path, env=NO_DOCKER)
    assert done.returncode == 3
    assert "cannot reach the Docker engine at unix:///nonexistent.sock" in done.stderr
    assert "--backend {docker,local,swarm}" in cli("run", "--help").stdout


def test_a_local_run_does_not_import_the_docker_sdk(tmp_path):
    workflow = write(tmp_path, """
        version: 1
        jobs:
          hello:
            image: alpine:3.20
            run: echo hello
    """)
    probe = (
        "import sys\n"
        "from runner.cli import main\n"
        f"status = main(['run', '--backend', 'local', {str(workflow)!r}])\n"
        "print('imported:', sorted(m for m in ('docker', 'requests', 'urllib3') if m in sys.modules))\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, **NO_DOCKER, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "imported: []" in done.stdout
