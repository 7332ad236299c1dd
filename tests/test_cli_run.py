"""`runner run` at the command line: exit statuses, what is printed, and interruption.

Runs the CLI in a subprocess against the real Docker engine, as a user does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import IMAGE_MAP, LABEL, cli, state_of, write

BUSYBOX_IMAGE = '"alpine:3.20"'  # mapped to the local busybox image by IMAGE_MAP


def run_ids(tmp_path: Path) -> list[str]:
    runs = state_of(tmp_path) / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.exists() else []


def containers(docker, run_id: str) -> list:
    return docker.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"})


# -- exit statuses and messages ----------------------------------------------------------


def test_successful_run_exits_0_and_failed_run_exits_1(docker, tmp_path):
    good = write(tmp_path, f"""
        version: 1
        jobs:
          ok:
            image: {BUSYBOX_IMAGE}
            run: echo fine
    """, name="good.yml")
    bad = write(tmp_path, f"""
        version: 1
        jobs:
          broken:
            image: {BUSYBOX_IMAGE}
            run: exit 5
    """, name="bad.yml")
    done = cli("run", good, *IMAGE_MAP, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].split()[2] == "success"
    done = cli("run", bad, *IMAGE_MAP, cwd=tmp_path)
    assert done.returncode == 1
    last = done.stdout.splitlines()[-1]
    assert " failure " in last and "broken" in last
    assert "step `1` failed: exit code 5" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_missing_image_exits_3_naming_it_and_nothing_runs(docker, tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          fine:
            image: {BUSYBOX_IMAGE}
            run: touch /workspace/fine-ran
          missing:
            image: nosuch/not-an-image:1.0
            run: touch /workspace/missing-ran
    """)
    done = cli("run", workflow, *IMAGE_MAP, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "nosuch/not-an-image:1.0" in done.stderr
    assert "--image-map nosuch/not-an-image:1.0=" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "fine-ran").exists()
    assert not (tmp_path / "missing-ran").exists()
    assert "▶" not in done.stdout  # no job started
    assert run_ids(tmp_path) == []


def test_unreachable_engine_exits_3_saying_how_to_start_docker(docker, tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          ok:
            image: {BUSYBOX_IMAGE}
            run: touch /workspace/ran
    """)
    done = cli("run", workflow, *IMAGE_MAP, cwd=tmp_path, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "cannot reach the Docker engine" in done.stderr
    assert "dockerd" in done.stderr or "systemctl start docker" in done.stderr
    assert "DOCKER_HOST" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("bad", ["alpine", "=runner-test/busybox:latest"])
def test_image_map_of_the_wrong_form_exits_2(docker, tmp_path, bad):
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          ok:
            image: {BUSYBOX_IMAGE}
            run: touch /workspace/ran
    """)
    done = cli("run", workflow, "--image-map", bad, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--image-map" in done.stderr and bad in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "ran").exists()


def test_quiet_prints_little_but_the_final_status(docker, tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          one:
            run: echo chatter from one
          two:
            needs: one
            run: echo chatter from two
    """)
    loud = cli("run", workflow, *IMAGE_MAP, cwd=tmp_path)
    quiet = cli("run", workflow, *IMAGE_MAP, "--quiet", cwd=tmp_path)
    assert loud.returncode == quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "chatter from one" in loud.stdout
    assert "chatter" not in quiet.stdout
    lines = quiet.stdout.splitlines()
    assert len(lines) < len(loud.stdout.splitlines())
    assert len(lines) == 1 and lines[0].startswith("run ") and " success in " in lines[0]


def test_quiet_still_prints_failures(docker, tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          fine:
            run: echo chatter
          broken:
            run: exit 2
    """)
    done = cli("run", workflow, *IMAGE_MAP, "-q", cwd=tmp_path)
    assert done.returncode == 1
    assert "chatter" not in done.stdout
    assert "broken" in done.stdout and "exit code 2" in done.stdout
    assert " failure " in done.stdout.splitlines()[-1]


def test_quiet_shows_the_last_lines_of_a_failed_step(docker, tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          fine:
            run: echo chatter
          broken:
            run: |
              for i in $(seq 1 30); do echo "line $i"; done
              echo "the reason it broke"
              exit 2
    """)
    done = cli("run", workflow, *IMAGE_MAP, "--quiet", cwd=tmp_path)
    assert done.returncode == 1
    assert "chatter" not in done.stdout
    assert "[broken/1] the reason it broke" in done.stdout
    assert "[broken/1] line 30" in done.stdout and "[broken/1] line 25" in done.stdout
    assert "line 5\n" not in done.stdout  # only the last lines
    lines = done.stdout.splitlines()
    assert lines.index("[broken/1] the reason it broke") < next(i for i, l in enumerate(lines) if l.startswith("✗ broken"))


def test_outputs_print_as_json(tmp_path):
    workflow = write(tmp_path, """
        version: 1
        jobs:
          facts:
            outputs: {nothing: null, yes: true, count: 3, names: [a, b], text: plain words}
        outputs:
          nothing: ${{ jobs.facts.outputs.nothing }}
          yes: ${{ jobs.facts.outputs.yes }}
          names: ${{ jobs.facts.outputs.names }}
          text: ${{ jobs.facts.outputs.text }}
    """)
    done = cli("run", workflow, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  nothing: null" in done.stdout
    assert "  yes: true" in done.stdout
    assert '  names: ["a", "b"]' in done.stdout
    assert "  text: plain words" in done.stdout
    assert "None" not in done.stdout and "True" not in done.stdout


@pytest.mark.parametrize("option", ["--output-json", "--events"])
def test_an_output_file_that_cannot_be_written_is_refused_before_anything_runs(tmp_path, option):
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          touch:
            image: {BUSYBOX_IMAGE}
            run: touch /workspace/ran
    """)
    missing = tmp_path / "no" / "such" / "out.json"
    done = cli("run", workflow, *IMAGE_MAP, option, missing, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{option} {missing}: the directory {missing.parent} does not exist" in done.stderr
    assert not (tmp_path / "ran").exists() and run_ids(tmp_path) == []
    directory = cli("run", workflow, *IMAGE_MAP, option, tmp_path, cwd=tmp_path)
    assert directory.returncode == 2 and "is a directory" in directory.stderr
    assert "Traceback" not in done.stderr + directory.stderr


def test_an_inputs_file_must_hold_a_mapping(tmp_path):
    workflow = write(tmp_path, """
        version: 1
        inputs: {who: {type: string}}
        jobs:
          hello: {outputs: {who: "${{ inputs.who }}"}}
    """)
    (tmp_path / "inputs.yml").write_text("- who\n- you\n")
    done = cli("run", workflow, "--inputs-file", tmp_path / "inputs.yml", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "inputs file must be a mapping of input names to values" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_image_map_entry_maps_every_tag_of_its_image_and_an_exact_one_wins(docker, tmp_path):
    workflow = write(tmp_path, """
        version: 1
        jobs:
          any-tag:
            image: alpine:3.99-no-such-tag
            run: cat /etc/os-release 2>/dev/null || echo busybox here
          exact:
            image: alpine:3.20
            run: python3 -c "print('python here')"
    """.replace("any-tag", "anytag"))
    done = cli("run", workflow, "--image-map", "alpine=runner-test/busybox:latest",
               "--image-map", "alpine:3.20=runner-test/python:latest", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[anytag/1] busybox here" in done.stdout
    assert "[exact/1] python here" in done.stdout


def test_a_long_matrix_shows_its_progress_as_it_goes(tmp_path):
    workflow = write(tmp_path, """
        version: 1
        jobs:
          build:
            matrix: {n: "${{ range(1, 21) | list }}", fail_fast: false}
            outputs: {x: "${{ 10 // (matrix.n - 7) }}"}
    """)
    done = cli("run", workflow, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    progress = [line for line in done.stdout.splitlines() if line.startswith("build: ")]
    assert progress[0] == "build: 2 of 20 done, 0 failed, 0 running", progress
    assert progress[-1] == "build: 20 of 20 done, 1 failed, 0 running", progress
    assert len(progress) == 10
    assert "1 of 20 instances failed: build (n=7)" in done.stdout
    quiet = cli("run", workflow, "--quiet", cwd=tmp_path)
    assert not [line for line in quiet.stdout.splitlines() if line.startswith("build: ")]


# -- interruption -----------------------------------------------------------------------


class Background:
    """`runner run` in the background, its output collected as it comes."""

    def __init__(self, workflow: Path, *args: str, cwd: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "run", str(workflow), *IMAGE_MAP, *args],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for(self, condition, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, f"runner ended early:\n{self.output}"
            assert time.monotonic() < deadline, f"timed out waiting; output so far:\n{self.output}"
            time.sleep(0.1)

    def wait_for_lines(self, *wanted: str, timeout: float = 60) -> None:
        self.wait_for(lambda: all(line in self.stdout for line in wanted), timeout)

    @property
    def run_id(self) -> str:
        self.wait_for(lambda: bool(self.stdout))
        return self.stdout[0].split()[1].rstrip(":")

    def finish(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for reader in self.readers:
                reader.join(timeout=5)

    @property
    def output(self) -> str:
        return "\n".join(self.stdout + self.stderr)


THREE_SLEEPERS = f"""
    version: 1
    concurrency: 3
    defaults: {{image: {BUSYBOX_IMAGE}}}
    jobs:
      a:
        run: echo started; sleep 60
      b:
        run: echo started; sleep 60
      c:
        run: echo started; sleep 60
"""


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_the_run_and_removes_every_container(docker, tmp_path, signum, status):
    workflow = write(tmp_path, THREE_SLEEPERS)
    out = tmp_path / "out.json"
    run = Background(workflow, "--output-json", str(out), cwd=tmp_path)
    run_id = run.run_id
    run.wait_for_lines("[a/1] started", "[b/1] started", "[c/1] started")
    assert len(containers(docker, run_id)) == 3
    sent = time.monotonic()
    run.proc.send_signal(signum)
    returncode = run.finish(timeout=30)
    assert returncode == status, run.output
    assert time.monotonic() - sent < 15
    assert containers(docker, run_id) == []
    assert "Traceback" not in run.output
    summary = json.loads(out.read_text())
    assert summary["status"] == "cancelled"
    assert {job["result"] for job in summary["jobs"].values()} == {"cancelled"}


def test_job_with_if_always_still_runs_after_ctrl_c(docker, tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          sleeper:
            run: echo started; sleep 60
          cleanup:
            needs: sleeper
            if: always()
            run: echo "cleanup ran after ${{{{ jobs.sleeper.result }}}}"
          skipped:
            needs: sleeper
            run: echo "must not run"
    """)
    run = Background(workflow, cwd=tmp_path)
    run_id = run.run_id
    run.wait_for_lines("[sleeper/1] started")
    run.proc.send_signal(signal.SIGINT)
    returncode = run.finish(timeout=30)
    assert returncode == 130, run.output
    assert "[cleanup/1] cleanup ran after cancelled" in run.stdout
    assert "must not run" not in run.output
    assert containers(docker, run_id) == []
