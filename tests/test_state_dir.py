"""Runner's own state (database, run directories, logs, cache archives) is out of every job's reach,
wherever it lies; cache archives are checked before they are restored; and the state of a project
is found from its directory.  Against the real engine."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import sqlite3
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import IMAGE_MAP, cli, state_of, write

BUSYBOX_IMAGE = '"alpine:3.20"'

# Everything a job could do to the state directory if it could reach it through /workspace.
VANDAL = f"""
    version: 1
    jobs:
      vandal:
        image: {BUSYBOX_IMAGE}
        steps:
          - run: |
              rm -rf /workspace/.runner/state.db* /workspace/.runner/runs /workspace/.runner/cache || true
              rm -rf /workspace/state/* /workspace/inside/* || true
              mv /workspace/inside /workspace/moved || true
              mkdir -p /workspace/inside/deeper && touch /workspace/inside/deeper/state.db || true
              cd /workspace && find . -name 'state.db*' -exec rm -f {{}} + || true
              ls -laR /workspace
"""


def run_count(state: Path) -> int:
    return sqlite3.connect(state / "state.db").execute("SELECT count(*) FROM runs").fetchone()[0]


def vandalise(tmp_path: Path, *state_args: str) -> None:
    path = write(tmp_path, VANDAL)
    first = cli("run", path, *IMAGE_MAP, *state_args, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    second = cli("run", path, *IMAGE_MAP, *state_args, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    listed = cli("runs", "list", *state_args, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(" success ") == 2, listed.stdout


def test_the_default_state_directory_is_outside_the_workspace(docker, tmp_path, state_home):
    vandalise(tmp_path)
    real = os.path.realpath(tmp_path)
    expected = state_home / "runner" / f"{Path(real).name}-{hashlib.sha256(real.encode()).hexdigest()[:12]}"
    assert run_count(expected) == 2
    assert not (tmp_path / ".runner").exists()
    logs = list((expected / "runs").glob("*/logs/vandal/*.log"))
    assert len(logs) == 2


@pytest.mark.parametrize("state", ["state", "inside/deeper"])
def test_a_state_directory_inside_the_workspace_is_hidden_from_jobs(docker, tmp_path, state):
    vandalise(tmp_path, "--state-dir", state)
    assert run_count(tmp_path / state) == 2


def test_the_workspace_itself_cannot_be_the_state_directory(docker, tmp_path):
    path = write(tmp_path, f"version: 1\njobs:\n  a: {{image: {BUSYBOX_IMAGE}, run: 'true'}}\n")
    done = cli("run", path, *IMAGE_MAP, "--state-dir", ".", cwd=tmp_path)
    assert done.returncode == 3 and "is the workspace" in done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_state_directory_reached_through_a_symlink_into_the_workspace_is_hidden(docker, tmp_path, tmp_path_factory):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "inside").mkdir()
    link = tmp_path_factory.mktemp("links") / "state"
    link.symlink_to(workspace / "inside")
    vandalise(workspace, "--state-dir", str(link))
    assert run_count(workspace / "inside") == 2


def test_the_default_state_directory_of_a_workspace_reached_through_a_symlink_is_its_own(docker, tmp_path):
    workspace = tmp_path / "real"
    workspace.mkdir()
    (tmp_path / "link").symlink_to(workspace)
    vandalise(tmp_path / "link")
    assert run_count(state_of(workspace)) == 2
    assert cli("runs", "list", cwd=workspace).stdout.count(" success ") == 2


def test_a_job_cannot_replace_its_scratch_files_by_links_into_the_state(docker, tmp_path):
    """/runner is the node's own scratch directory, which lies in the state directory: runner
    never follows a link a job leaves there."""
    path = write(tmp_path, f"""
        version: 1
        jobs:
          sly:
            image: {BUSYBOX_IMAGE}
            steps:
              - run: |
                  for name in 2.out 2.env step-2.sh 3.out; do
                    ln -s ../../../../state.db /runner/$name
                  done
              - run: echo second
              - run: echo third
    """)
    done = cli("run", path, *IMAGE_MAP, cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert "[sly/2] second" in done.stdout and "[sly/3] third" in done.stdout
    state = state_of(tmp_path)
    connection = sqlite3.connect(state / "state.db")
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert cli("runs", "list", cwd=tmp_path).stdout.count(f"{path.name}") == 1


# -- cache archives ------------------------------------------------------------------------

CACHED = f"""
    version: 1
    jobs:
      build:
        image: {BUSYBOX_IMAGE}
        cache: true
        cache_outputs: [dist]
        run: |
          mkdir -p /workspace/dist && echo built > /workspace/dist/out.txt
          for archive in /workspace/.runner/cache/*.tar.gz /workspace/state/cache/*.tar.gz; do
            [ -f "$archive" ] || continue
            mkdir -p /tmp/evil/dist && echo evil > /tmp/evil/dist/out.txt
            tar -czf "$archive" -C /tmp/evil dist
          done
"""


def evil_archive() -> bytes:
    data = b"evil\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("dist/out.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("state_args", [(), ("--state-dir", "state")], ids=["default", "inside"])
def test_a_job_cannot_rewrite_a_cache_archive(docker, tmp_path, state_args):
    path = write(tmp_path, CACHED)
    for _ in range(2):  # the second run would find the archive of the first, if it could see it
        done = cli("run", path, *IMAGE_MAP, *state_args, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    (tmp_path / "dist" / "out.txt").write_text("stale\n")
    hit = cli("run", path, *IMAGE_MAP, *state_args, cwd=tmp_path)
    assert "cached" in hit.stdout, hit.stdout
    assert (tmp_path / "dist" / "out.txt").read_text() == "built\n"


def test_a_tampered_cache_archive_is_a_miss_with_a_warning(docker, tmp_path):
    path = write(tmp_path, CACHED)
    first = cli("run", path, *IMAGE_MAP, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    (archive,) = (state_of(tmp_path) / "cache").glob("*.tar.gz")
    archive.write_bytes(evil_archive())
    (tmp_path / "dist" / "out.txt").unlink()
    second = cli("run", path, *IMAGE_MAP, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "cached" not in second.stdout  # the job ran again
    assert "warning" in second.stderr and "does not match" in second.stderr and archive.name in second.stderr
    assert (tmp_path / "dist" / "out.txt").read_text() == "built\n"
    # The job's run wrote a fresh entry, which a third run uses.
    third = cli("run", path, *IMAGE_MAP, cwd=tmp_path)
    assert "cached" in third.stdout and "warning" not in third.stderr


def test_a_store_of_the_previous_schema_is_upgraded_and_its_archives_are_not_trusted(tmp_path):
    from runner.history.store import Store

    store = Store(tmp_path)
    store.db.execute("ALTER TABLE cache DROP COLUMN digest")
    store.db.execute("INSERT INTO cache (key, run_id, node, outputs, archive, created) VALUES ('k', 'r', 'n', '{}', 'cache/k.tar.gz', 0)")
    store.db.execute("PRAGMA user_version = 1")
    store.close()
    upgraded = Store(tmp_path)
    assert upgraded.cache_get("k", 1)["digest"] is None
    upgraded.cache_put("k2", "r", "n", {}, "cache/k2.tar.gz", "ab" * 32, None)
    assert upgraded.cache_get("k2", 1)["digest"] == "ab" * 32
    upgraded.close()


# -- finding the state ---------------------------------------------------------------------


def test_runs_are_found_from_the_workspace_and_below_and_the_state_directory_is_printed(tmp_path, tmp_path_factory):
    path = write(tmp_path, "version: 1\njobs:\n  a: {outputs: {x: 1}}\n")
    assert cli("run", path, cwd=tmp_path).returncode == 0
    below = tmp_path / "sub" / "dir"
    below.mkdir(parents=True)
    for where in (tmp_path, below):
        assert cli("runs", "list", cwd=where).stdout.count(" success ") == 1
        shown = cli("state-dir", cwd=where)
        assert shown.returncode == 0 and shown.stdout == f"{state_of(tmp_path)}\n"
    # Named by its workflow, from anywhere: where its runs go, whether or not any are recorded yet.
    other = tmp_path_factory.mktemp("other")
    write(other, "version: 1\njobs:\n  a: {outputs: {x: 1}}\n")
    assert cli("state-dir", other / "workflow.yml", cwd="/").stdout == f"{state_of(other)}\n"
    assert cli("state-dir", other / "workflow.yml", "--state-dir", "s", cwd=tmp_path).stdout == f"{tmp_path / 's'}\n"
    nowhere = cli("state-dir", cwd=other)
    assert nowhere.returncode == 2 and "no runs are recorded" in nowhere.stderr and str(state_of(other)) in nowhere.stderr


def test_an_old_runner_directory_beside_the_workflow_is_still_found(tmp_path):
    path = write(tmp_path, "version: 1\njobs:\n  a: {outputs: {x: 1}}\n")
    assert cli("run", path, "--state-dir", ".runner", cwd=tmp_path).returncode == 0
    listed = cli("runs", "list", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.count(" success ") == 1
    assert "note:" in listed.stderr and f"--state-dir {tmp_path / '.runner'}" in listed.stderr
    # Once runs are recorded in the new place, they are the ones listed; the note still points at the old.
    assert cli("run", path, cwd=tmp_path).returncode == 0
    listed = cli("runs", "list", "--format", "json", cwd=tmp_path)
    assert len(json.loads(listed.stdout)) == 1 and f"--state-dir {tmp_path / '.runner'}" in listed.stderr
    assert (state_of(tmp_path) / "state.db").is_file()


# -- hints ---------------------------------------------------------------------------------


def hint(stderr: str, command: str) -> list[str]:
    """The command runner printed after `…: `, split as a shell would."""
    (line,) = [line for line in stderr.splitlines() if f"runner {command} " in line]
    return shlex.split(line[line.index(f"runner {command} "):])


def paste(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    assert argv[0] == "runner"
    return cli(*argv[1:], cwd=cwd)


@pytest.mark.parametrize("where", ["elsewhere", "above"])
def test_the_resume_hint_works_as_printed(tmp_path, tmp_path_factory, where):
    project = tmp_path / "project dir"
    project.mkdir()
    path = write(project, """
        version: 1
        inputs: {fix: {type: boolean, default: false}}
        jobs:
          a: {outputs: {x: 1}}
          b: {needs: a, outputs: {y: '${{ jobs.a.outputs.x // (1 if inputs.fix else 0) }}'}}
    """)
    if where == "elsewhere":
        args = ["--state-dir", str(tmp_path_factory.mktemp("somewhere") / "my state")]
        cwd = project
    else:  # the default state of a workflow run from a directory above it
        args, cwd = [], tmp_path
    failed = cli("run", path, *args, cwd=cwd)
    assert failed.returncode == 1, failed.stderr
    command = hint(failed.stderr, "resume")
    resumed = paste(command, cwd)
    assert resumed.returncode == 1 and "resuming run" in resumed.stdout, resumed.stdout + resumed.stderr
    assert "no runs are recorded" not in resumed.stderr
    # The hint printed by the resume works too.
    assert paste(hint(resumed.stderr, "resume"), cwd).returncode == 1


def test_the_clean_hint_works_as_printed(docker, tmp_path, tmp_path_factory):
    path = write(tmp_path, f"version: 1\njobs:\n  broken: {{image: {BUSYBOX_IMAGE}, run: exit 3}}\n")
    state = tmp_path_factory.mktemp("elsewhere") / "state"
    failed = cli("run", path, *IMAGE_MAP, "--keep-on-failure", "--state-dir", state, cwd=tmp_path)
    assert failed.returncode == 1
    cleaned = paste(hint(failed.stderr, "runs clean"), tmp_path)
    assert cleaned.returncode == 0 and "removed runner-kept-" in cleaned.stdout, cleaned.stdout + cleaned.stderr
