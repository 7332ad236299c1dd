"""Running one job (`--only`) and looking into a failed one (`--keep-on-failure`, `runner runs clean`)."""

from __future__ import annotations

import json
import subprocess

from conftest import IMAGE_MAP, LABEL, cli, state_of, write

BUSYBOX_IMAGE = '"alpine:3.20"'

PIPELINE = f"""
    version: 1
    defaults: {{image: {BUSYBOX_IMAGE}}}
    jobs:
      prep:
        steps:
          - id: s
            run: |
              echo "version=1.2.3" >> "$RUNNER_OUTPUT"
              echo "sha=abc123" >> "$RUNNER_OUTPUT"
        outputs:
          version: '${{{{ steps.s.outputs.version }}}}'
          sha: '${{{{ steps.s.outputs.sha }}}}'
          unused: never asked for
      build:
        needs: prep
        steps:
          - id: s
            run: |
              echo "building ${{{{ jobs.prep.outputs.version }}}} at ${{{{ jobs.prep.outputs.sha }}}} after ${{{{ jobs.prep.result }}}}"
              echo "artifact=app-${{{{ jobs.prep.outputs.version }}}}" >> "$RUNNER_OUTPUT"
        outputs: {{artifact: '${{{{ steps.s.outputs.artifact }}}}'}}
      deploy:
        needs: build
        run: echo "deploying ${{{{ jobs.build.outputs.artifact }}}}"
"""


def test_only_runs_one_job_with_the_values_it_uses_supplied(docker, tmp_path):
    path = write(tmp_path, PIPELINE)
    out = tmp_path / "out.json"
    done = cli("run", path, *IMAGE_MAP, "--only", "build", "--set", "jobs.prep.outputs.version=9.9",
               "--set", "jobs.prep.outputs.sha=fff", "--output-json", out, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[build/s] building 9.9 at fff after success" in done.stdout
    summary = json.loads(out.read_text())
    assert list(summary["jobs"]) == ["build"]  # nothing else ran
    assert summary["jobs"]["build"]["outputs"] == {"artifact": "app-9.9"}
    assert "▶ prep" not in done.stdout and "deploy" not in done.stdout
    listed = json.loads(cli("runs", "show", summary["run_id"], "--format", "json", cwd=tmp_path).stdout)
    assert listed["attempts"][0]["command"] == "only"


def test_only_with_missing_values_lists_what_must_be_supplied(tmp_path):
    path = write(tmp_path, PIPELINE)
    done = cli("run", path, "--only", "build", "--set", "jobs.prep.outputs.sha=fff", cwd=tmp_path)
    assert done.returncode == 2
    assert "--only build uses values of other jobs that were not given: jobs.prep.outputs.version;" in done.stderr
    assert "--set" in done.stderr and "--from-run ID" in done.stderr
    assert "unused" not in done.stderr and "Traceback" not in done.stderr
    nothing = cli("run", path, "--only", "build", cwd=tmp_path)
    assert "not given: jobs.prep.outputs.sha, jobs.prep.outputs.version;" in nothing.stderr
    typo = cli("run", path, "--only", "biuld", cwd=tmp_path)
    assert typo.returncode == 2 and "did you mean `build`?" in typo.stderr
    stray = cli("run", path, "--only", "build", "--set", "jobs.deploy.outputs.x=1", cwd=tmp_path)
    assert stray.returncode == 2 and "`build` does not use `jobs.deploy`" in stray.stderr
    alone = cli("run", path, "--set", "jobs.prep.outputs.sha=1", cwd=tmp_path)
    assert alone.returncode == 2 and "add --only JOB" in alone.stderr
    assert not (state_of(tmp_path) / "runs").exists() or not any((state_of(tmp_path) / "runs").iterdir())


def test_only_takes_values_from_a_recorded_run(docker, tmp_path):
    path = write(tmp_path, PIPELINE)
    full = cli("run", path, *IMAGE_MAP, "--output-json", tmp_path / "full.json", cwd=tmp_path)
    assert full.returncode == 0, full.stdout + full.stderr
    run_id = json.loads((tmp_path / "full.json").read_text())["run_id"]
    one = cli("run", path, *IMAGE_MAP, "--only", "deploy", "--from-run", run_id, cwd=tmp_path)
    assert one.returncode == 0, one.stdout + one.stderr
    assert "[deploy/1] deploying app-1.2.3" in one.stdout
    overridden = cli("run", path, *IMAGE_MAP, "--only", "build", "--from-run", run_id[-6:],
                     "--set", "jobs.prep.outputs.sha=override", cwd=tmp_path)
    assert "building 1.2.3 at override after success" in overridden.stdout


def kept_containers(docker, tmp_path) -> list[dict]:
    return [
        c for c in docker.api.containers(all=True, filters={"label": LABEL})
        if c["Labels"].get("dev.runner.workspace") == str(tmp_path)
    ]


def test_keep_on_failure_leaves_the_failed_container_and_runs_clean_removes_it(docker, tmp_path):
    path = write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          fine: {{run: echo fine}}
          broken:
            retry: 2
            steps:
              - run: echo "state for debugging" > /tmp/clue
              - run: exit 7
    """)
    done = cli("run", path, *IMAGE_MAP, "--keep-on-failure", cwd=tmp_path)
    assert done.returncode == 1
    run_id = done.stdout.split()[1].rstrip(":")
    name = f"runner-kept-{run_id}-broken"
    assert f"  container kept for debugging: docker exec -it {name} sh" in done.stdout
    assert f"runner runs clean {run_id}" in done.stderr
    left = kept_containers(docker, tmp_path)
    assert [c["Names"] for c in left] == [[f"/{name}"]]  # only the last attempt's, of the failed job
    assert left[0]["State"] == "running"
    # The exact line printed gets a shell where the job failed, its scripts at /runner.
    entered = subprocess.run(["docker", "exec", name, "sh", "-c", "cat /tmp/clue; ls /runner"],
                             capture_output=True, text=True, timeout=30)
    assert entered.stdout.startswith("state for debugging\n") and "step-2.sh" in entered.stdout
    # Another run on this machine does not reap it (its runner is gone, but it was kept on purpose).
    other = write(tmp_path, f"version: 1\njobs:\n  a: {{image: {BUSYBOX_IMAGE}, run: 'true'}}\n", name="other.yml")
    assert cli("run", other, *IMAGE_MAP, cwd=tmp_path).returncode == 0
    assert len(kept_containers(docker, tmp_path)) == 1
    show = cli("runs", "show", run_id, cwd=tmp_path)
    assert f"broken: docker exec -it {name} sh" in show.stdout
    gc = cli("runs", "gc", "--keep", "0", cwd=tmp_path)
    assert f"kept {run_id} (keeps a container" in gc.stdout

    cleaned = cli("runs", "clean", run_id, cwd=tmp_path)
    assert cleaned.returncode == 0 and f"removed {name}" in cleaned.stdout
    assert kept_containers(docker, tmp_path) == []
    assert "keeps no container" in cli("runs", "clean", run_id, cwd=tmp_path).stdout
    assert "docker exec" not in cli("runs", "show", run_id, cwd=tmp_path).stdout


def test_without_the_flag_nothing_is_left_behind(docker, tmp_path):
    path = write(tmp_path, f"""
        version: 1
        jobs:
          fine: {{image: {BUSYBOX_IMAGE}, run: echo fine}}
          broken: {{image: {BUSYBOX_IMAGE}, run: exit 3}}
    """)
    # A relative --state-dir works too: the run's directory is mounted by its absolute path.
    done = cli("run", path, *IMAGE_MAP, "--state-dir", "state", cwd=tmp_path)
    assert done.returncode == 1 and "docker exec" not in done.stdout
    assert "✓ fine success" in done.stdout
    assert f"runner resume {done.stdout.split()[1].rstrip(':')} --state-dir " in done.stderr
    assert kept_containers(docker, tmp_path) == []
