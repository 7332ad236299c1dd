"""`runner resume ID` (and `runner run FILE --resume ID`): only what did not succeed runs again.

Against the real engine: which containers a resume creates is read from the
engine's own events, by the run's label, so "not started again" means exactly that.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import IMAGE_MAP, LABEL, cli, state_of, write
from test_store import consistent
from watch import created  # noqa: F401  (a fixture)

BUSYBOX_IMAGE = '"alpine:3.20"'


def run_id_of(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("run ") and line.split()[1].endswith(":"):
            return line.split()[1].rstrip(":")
    raise AssertionError(f"no run id in:\n{output}")


def containers(docker, run_id: str) -> list:
    return docker.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"})


FLAKY = f"""
    version: 1
    defaults: {{image: {BUSYBOX_IMAGE}}}
    jobs:
      first:
        steps:
          - id: s
            run: echo "token=$RANDOM-$RANDOM" >> "$RUNNER_OUTPUT"
        outputs: {{token: '${{{{ steps.s.outputs.token }}}}'}}
      side:
        run: echo independent
      flaky:
        needs: first
        run: test -f /workspace/fixed && echo "fixed, got ${{{{ jobs.first.outputs.token }}}}"
      last:
        needs: flaky
        steps:
          - id: s
            run: echo "seen=${{{{ jobs.first.outputs.token }}}}" >> "$RUNNER_OUTPUT"
        outputs: {{seen: '${{{{ steps.s.outputs.seen }}}}'}}
    outputs:
      seen: '${{{{ jobs.last.outputs.seen }}}}'
"""


def test_resume_after_a_failing_node_runs_only_what_did_not_succeed(docker, created, tmp_path):
    path = write(tmp_path, FLAKY)
    started = time.time()
    first = cli("run", path, *IMAGE_MAP, "--output-json", tmp_path / "first.json", cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    run_id = run_id_of(first.stdout)
    assert f"runner resume {run_id}" in first.stderr  # the way on is printed
    before = json.loads((tmp_path / "first.json").read_text())
    assert before["jobs"]["flaky"]["result"] == "failure" and before["jobs"]["last"]["result"] == "skipped"
    assert created(run_id, started) == ["first", "flaky", "side"]

    (tmp_path / "fixed").write_text("")
    resumed_at = time.time()
    second = cli("resume", run_id, *IMAGE_MAP, "--output-json", tmp_path / "second.json", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"resuming run {run_id}: running flaky, last again; keeping first, side" in second.stdout
    # The succeeded nodes' containers were not started again.
    assert created(run_id, resumed_at) == ["flaky", "last"]
    after = json.loads((tmp_path / "second.json").read_text())
    assert after["run_id"] == run_id and after["status"] == "success"
    token = before["jobs"]["first"]["outputs"]["token"]
    assert after["jobs"]["first"]["outputs"]["token"] == token  # the recorded outputs, kept
    assert after["jobs"]["first"]["reason"] == "kept from attempt 1" and after["jobs"]["first"]["kept_from"] == 1
    assert after["outputs"] == {"seen": token}
    assert f"[flaky/1] fixed, got {token}" in second.stdout

    show = json.loads(cli("runs", "show", run_id, "--format", "json", cwd=tmp_path).stdout)
    assert [(a["attempt"], a["command"], a["status"]) for a in show["attempts"]] == [
        (1, "run", "failure"), (2, "resume", "success")]
    assert show["status"] == "success"
    # Both attempts' logs are kept.
    logs = cli("logs", run_id, "flaky", cwd=tmp_path).stdout
    assert "== flaky/1 (run attempt 2) ==" in logs and f"fixed, got {token}" in logs
    # A succeeded run has nothing left to resume.
    again = cli("resume", run_id, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to resume" in again.stdout


def test_resume_after_sigkill_reaps_the_leftover_container_first(docker, created, tmp_path):
    path = write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          quick:
            steps:
              - id: s
                run: echo "v=$RANDOM" >> "$RUNNER_OUTPUT"
            outputs: {{v: '${{{{ steps.s.outputs.v }}}}'}}
          slow:
            needs: quick
            run: |
              echo waiting
              while [ ! -f /workspace/go ]; do sleep 0.2; done
              echo "done with ${{{{ jobs.quick.outputs.v }}}}"
    """)
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(path), *IMAGE_MAP], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "[slow/1] waiting" in line:
            break
    run_id = run_id_of("".join(lines))
    # While the runner lives, nobody else may continue its run.
    locked = cli("resume", run_id, *IMAGE_MAP, cwd=tmp_path)
    assert locked.returncode == 3
    assert f"run {run_id} is in use by `runner run` (pid {proc.pid}" in locked.stderr
    proc.kill()
    proc.wait()
    proc.stdout.close()
    leftover = containers(docker, run_id)
    assert len(leftover) == 1  # the killed runner could not remove it
    consistent(sqlite3.connect(state_of(tmp_path) / "state.db"))
    listing = cli("runs", "list", cwd=tmp_path).stdout
    assert f"{run_id}  workflow.yml  killed" in listing

    (tmp_path / "go").write_text("")
    resumed_at = time.time()
    resumed = cli("resume", run_id, *IMAGE_MAP, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert created(run_id, resumed_at) == ["slow"]  # quick kept; slow run again
    assert created(run_id, started) == ["quick", "slow", "slow"]
    assert containers(docker, run_id) == []  # the leftover was reaped, the new one removed
    assert "cannot record" not in resumed.stderr
    consistent(sqlite3.connect(state_of(tmp_path) / "state.db"))  # both attempts' transitions, in order
    show = json.loads(cli("runs", "show", run_id, "--format", "json", cwd=tmp_path).stdout)
    assert [(a["status"], a["reason"]) for a in show["attempts"]] == [("killed", "the runner was killed"), ("success", "")]


def test_resume_after_ctrl_c(docker, created, tmp_path):
    path = write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          one: {{run: echo one}}
          two:
            needs: one
            run: |
              echo started
              [ -f /workspace/go ] || sleep 60
    """)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(path), *IMAGE_MAP], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "[two/1] started" in line:
            break
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    proc.stdout.close()
    run_id = run_id_of("".join(lines))
    (tmp_path / "go").write_text("")
    resumed_at = time.time()
    resumed = cli("run", path, "--resume", run_id, *IMAGE_MAP, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert created(run_id, resumed_at) == ["two"]


def test_resume_is_refused_after_an_edit_unless_forced(docker, tmp_path):
    path = write(tmp_path, FLAKY)
    first = cli("run", path, *IMAGE_MAP, cwd=tmp_path)
    run_id = run_id_of(first.stdout)
    path.write_text(path.read_text().replace("echo independent", "echo changed"))
    refused = cli("resume", run_id, *IMAGE_MAP, cwd=tmp_path)
    assert refused.returncode == 2
    assert f"{path} has changed since run {run_id} (content hash" in refused.stderr and "--force" in refused.stderr
    show = json.loads(cli("runs", "show", run_id, "--format", "json", cwd=tmp_path).stdout)
    assert len(show["attempts"]) == 1  # nothing ran
    (tmp_path / "fixed").write_text("")
    forced = cli("resume", run_id, "--force", *IMAGE_MAP, cwd=tmp_path)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    # `side` succeeded before; its recorded result is kept even though its script changed (--force).
    assert "changed" not in forced.stdout and "✓ side success in 0s: kept from attempt 1" in forced.stdout


def test_from_runs_a_node_and_everything_downstream_again(docker, created, tmp_path):
    path = write(tmp_path, FLAKY)
    (tmp_path / "fixed").write_text("")
    first = cli("run", path, *IMAGE_MAP, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    run_id = run_id_of(first.stdout)
    resumed_at = time.time()
    again = cli("run", path, "--resume", run_id, "--from", "flaky", *IMAGE_MAP, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert created(run_id, resumed_at) == ["flaky", "last"]
    resumed_at = time.time()
    again = cli("resume", run_id, "--from", "first", cwd=tmp_path)  # the run's own --image-map is reused
    assert again.returncode == 0, again.stdout + again.stderr
    assert created(run_id, resumed_at) == ["first", "flaky", "last"]
    wrong = cli("resume", run_id, "--from", "flakey", cwd=tmp_path)
    assert wrong.returncode == 2 and "did you mean `flaky`?" in wrong.stderr


# -- what a resume keeps, without containers ------------------------------------------


def test_a_matrix_keeps_its_succeeded_instances_and_dependents_of_a_rerun_run_again(tmp_path):
    path = write(tmp_path, """
        version: 1
        jobs:
          m:
            matrix: {n: [1, 2, 3]}
            outputs: {sq: '${{ matrix.n * matrix.n if matrix.n != 2 else {}["boom"] }}'}
          cleanup: {needs: m, if: always(), outputs: {saw: '${{ jobs.m.result }}'}}
          total: {needs: m, outputs: {sum: '${{ jobs.m.outputs | map(attribute="sq") | sum }}'}}
    """)
    first = cli("run", path, "--output-json", tmp_path / "a.json", cwd=tmp_path)
    assert first.returncode == 1
    run_id = json.loads((tmp_path / "a.json").read_text())["run_id"]
    path.write_text(path.read_text().replace("!= 2", "!= 99"))  # the fix
    resumed = cli("resume", run_id, "--force", "--output-json", tmp_path / "b.json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # `cleanup` succeeded after m failed; m runs again, so it does too.
    assert "running m, cleanup, total again" in resumed.stdout
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["jobs"]["cleanup"]["outputs"] == {"saw": "success"}
    assert summary["jobs"]["total"]["outputs"] == {"sum": 14}
    instances = summary["jobs"]["m"]["instances"]
    assert [i["result"] for i in instances.values()] == ["success"] * 3
    show = json.loads(cli("runs", "show", run_id, "--format", "json", cwd=tmp_path).stdout)
    kept = {node: i.get("kept_from") for node, i in show["jobs"]["m"]["instances"].items()}
    assert kept == {"m (n=1)": 1, "m (n=2)": None, "m (n=3)": 1}  # only the failed instance ran again


def test_resume_of_an_unknown_run_or_a_secret_input_exits_2(tmp_path):
    path = write(tmp_path, """
        version: 1
        secrets: [TOKEN]
        inputs:
          who: {type: string}
        jobs:
          a: {outputs: {x: '${{ {}["missing"] }}'}}
    """)
    done = cli("run", path, "--input", "who=the-secret-value", cwd=tmp_path, env={"TOKEN": "the-secret-value"})
    assert done.returncode == 1
    run_id = run_id_of(done.stdout)
    unknown = cli("resume", "20990101-000000-abcdef", cwd=tmp_path)
    assert unknown.returncode == 2 and "no run `20990101-000000-abcdef`" in unknown.stderr
    secret = cli("resume", run_id, cwd=tmp_path, env={"TOKEN": "the-secret-value"})
    assert secret.returncode == 2 and "input `who` held a secret" in secret.stderr
    assert "Traceback" not in unknown.stderr + secret.stderr
