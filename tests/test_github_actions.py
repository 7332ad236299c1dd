"""GitHub Actions habits: the env files, the workspace as the repository, job ids with `-`,
`shell: python3`, and a hint naming runner's way for every GitHub Actions key it spells differently.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import IMAGE_MAP, cli, state_of, write
from runner.errors import WorkflowInvalid
from runner.load.workflow import load_workflow

# -- the env files -----------------------------------------------------------------------

ENV_FILES = """
version: 1
jobs:
  build:
    image: alpine:3.20
    steps:
      - id: first
        run: |
          echo "x=1" >> "$GITHUB_OUTPUT"
          echo "GREETING=hi" >> "$GITHUB_ENV"
          mkdir -p /tmp/tools
          printf '#!/bin/sh\\necho from-the-added-path\\n' > /tmp/tools/mytool
          chmod +x /tmp/tools/mytool
          echo /tmp/tools >> "$GITHUB_PATH"
          echo /tmp/more >> "$RUNNER_PATH"
          echo "### Built the thing" >> "$GITHUB_STEP_SUMMARY"
          test "$GITHUB_WORKSPACE" = "$RUNNER_WORKSPACE" && test "$(pwd)" = "$GITHUB_WORKSPACE"
          test "$GITHUB_OUTPUT" = "$RUNNER_OUTPUT"
      - run: |
          echo "greeting=$GREETING"
          mytool
          test "$PATH" = /tmp/more:/tmp/tools:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
          echo "y=2" >> "$RUNNER_OUTPUT"
          echo "- second line of the summary" >> "$RUNNER_STEP_SUMMARY"
    outputs: {x: "${{ steps.first.outputs.x }}"}
outputs:
  x: ${{ jobs.build.outputs.x }}
"""


def test_github_env_files_work_in_container_jobs(docker, tmp_path):
    workflow = write(tmp_path, ENV_FILES)
    done = cli("run", workflow, *IMAGE_MAP, "--output-json", tmp_path / "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "out.json").read_text())["outputs"] == {"x": "1"}
    assert "greeting=hi" in done.stdout
    assert "from-the-added-path" in done.stdout
    # The job's step summary is shown at the end of the run, after the table.
    tail = done.stdout[done.stdout.index("\njob "):]
    assert "### Built the thing" in tail and "- second line of the summary" in tail
    run_id = json.loads((tmp_path / "out.json").read_text())["run_id"]
    shown = cli("runs", "show", run_id, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "### Built the thing\n- second line of the summary" in shown.stdout
    as_json = json.loads(cli("runs", "show", run_id, "--format", "json", cwd=tmp_path).stdout)
    assert "### Built the thing" in as_json["jobs"]["build"]["summary"]


def test_under_github_actions_jobs_get_runners_files_not_the_hosts(docker, tmp_path):
    host_output, host_summary, host_env, host_path = (tmp_path / n for n in ("output", "summary", "env", "path"))
    for f in (host_output, host_summary, host_env, host_path):
        f.touch()
    workflow = write(tmp_path, ENV_FILES)
    done = cli("run", workflow, *IMAGE_MAP, cwd=tmp_path, env={
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_OUTPUT": str(host_output),
        "GITHUB_STEP_SUMMARY": str(host_summary),
        "GITHUB_ENV": str(host_env),
        "GITHUB_PATH": str(host_path),
    })
    assert done.returncode == 0, done.stdout + done.stderr
    output = host_output.read_text()
    assert "x=1\n" not in output and re.search(r"^x<<", output, re.M)  # only runner's own outputs
    assert host_env.read_text() == "" and host_path.read_text() == ""
    summary = host_summary.read_text()
    assert "### Built the thing\n- second line of the summary" in summary
    assert summary.index("| job |") < summary.index("### Built the thing")


def test_a_secret_in_a_step_summary_is_masked(docker, tmp_path):
    workflow = write(tmp_path, """
        version: 1
        secrets: [TOKEN]
        jobs:
          leak:
            image: alpine:3.20
            env: {TOKEN: "${{ secrets.TOKEN }}"}
            run: echo "token is $TOKEN" >> "$GITHUB_STEP_SUMMARY"
    """)
    secret = "tok-0123456789-secret"
    events = tmp_path / "events.jsonl"
    done = cli("run", workflow, *IMAGE_MAP, "--events", events, cwd=tmp_path, env={"TOKEN": secret})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "token is ***" in done.stdout and secret not in done.stdout
    assert '"type": "summary"' in events.read_text() and secret not in events.read_text()
    run_id = re.search(r"^run (\S+):", done.stdout, re.M).group(1)
    shown = cli("runs", "show", run_id, cwd=tmp_path).stdout
    assert "token is ***" in shown and secret not in shown


# -- the workspace -----------------------------------------------------------------------


def _repo(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "file").write_text("hello from src\n")
    (root / "workflows").mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return write(root / "workflows", """
        version: 1
        jobs:
          check:
            image: alpine:3.20
            steps:
              - run: cat src/file && test "$GITHUB_WORKSPACE" = /workspace
              - working_dir: workflows
                run: test -f ci.yml
        outputs:
          branch: ${{ git.branch }}
          sha: ${{ git.sha }}
    """, name="ci.yml")


def test_the_workspace_is_the_top_of_the_git_work_tree(docker, tmp_path):
    workflow = _repo(tmp_path / "repo")
    done = cli("run", workflow, *IMAGE_MAP, "--output-json", tmp_path / "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hello from src" in done.stdout
    assert json.loads((tmp_path / "out.json").read_text())["outputs"] == {"branch": None, "sha": None}


def test_the_workspace_is_found_without_git_by_its_git_directory(docker, tmp_path):
    workflow = _repo(tmp_path / "repo")
    path = ":".join(p for p in os.environ["PATH"].split(":") if not (Path(p) / "git").exists())
    done = cli("run", workflow, *IMAGE_MAP, cwd=tmp_path, env={"PATH": path})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hello from src" in done.stdout


def test_git_facts_are_an_expression_context(docker, tmp_path):
    workflow = _repo(tmp_path / "repo")
    git = ["git", "-C", str(tmp_path / "repo"), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "checkout", "-q", "-b", "feature"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "start"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    done = cli("run", workflow, *IMAGE_MAP, "--output-json", tmp_path / "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "out.json").read_text())["outputs"] == {"branch": "feature", "sha": sha}


def test_workspace_option_chooses_the_workspace(docker, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "data.txt").write_text("chosen\n")
    (tmp_path / "flows").mkdir()
    workflow = write(tmp_path / "flows", """
        version: 1
        jobs:
          read:
            image: alpine:3.20
            run: cat data.txt && echo "ws=$RUNNER_WORKSPACE"
    """)
    done = cli("run", workflow, *IMAGE_MAP, cwd=tmp_path)
    assert done.returncode == 1  # the workflow's own directory has no data.txt
    done = cli("run", workflow, *IMAGE_MAP, "--workspace", tmp_path / "elsewhere", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "chosen" in done.stdout
    done = cli("run", workflow, *IMAGE_MAP, "--workspace", tmp_path / "missing", cwd=tmp_path)
    assert done.returncode == 2 and "missing" in done.stderr and "Traceback" not in done.stderr


def test_resume_works_in_the_runs_workspace(docker, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "flows").mkdir()
    workflow = write(tmp_path / "flows", """
        version: 1
        jobs:
          read:
            image: alpine:3.20
            run: cat data.txt
    """)
    done = cli("run", workflow, *IMAGE_MAP, "--workspace", tmp_path / "elsewhere", cwd=tmp_path / "flows")
    assert done.returncode == 1
    (tmp_path / "elsewhere" / "data.txt").write_text("now there\n")
    # The hint names the state directory: the run's state is its workspace's, not the workflow's.
    hint = shlex.split(re.search(r"runner resume (.+)", done.stderr).group(1))
    assert "--state-dir" in hint, done.stderr
    done = cli("resume", *hint, *IMAGE_MAP, cwd=tmp_path / "flows")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "now there" in done.stdout


# -- job ids with `-` --------------------------------------------------------------------


def test_job_ids_may_contain_dashes(docker, tmp_path):
    workflow = write(tmp_path, """
        version: 1
        jobs:
          build-image:
            image: alpine:3.20
            steps:
              - id: tag
                run: echo building && echo "tag=v1-2" >> "$GITHUB_OUTPUT"
            outputs: {tag: "${{ steps.tag.outputs.tag }}"}
          deploy-it:
            needs: build-image
            matrix: {to: [a-b, c]}
            image: alpine:3.20
            run: echo "deploying ${{ jobs.build-image.outputs.tag }} to ${{ matrix.to }}"
            outputs: {line: "${{ jobs['build-image'].outputs.tag }}-${{ matrix.to }}"}
        outputs:
          tag: ${{ jobs.build-image.outputs.tag }}
          lines: ${{ jobs.deploy-it.outputs | map(attribute='line') | list }}
          negative: ${{ 3-1 }}
    """)
    done = cli("run", workflow, *IMAGE_MAP, "--output-json", tmp_path / "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "out.json").read_text())
    assert summary["outputs"] == {"tag": "v1-2", "lines": ["v1-2-a-b", "v1-2-c"], "negative": 2}
    assert "deploying v1-2 to a-b" in done.stdout
    logs = sorted(p.name for p in (state_of(tmp_path) / "runs" / summary["run_id"] / "logs").rglob("*") if p.is_file())
    assert logs and all(re.fullmatch(r"[A-Za-z0-9_.-]+", name) for name in logs), logs
    shown = cli("logs", summary["run_id"], "build-image", cwd=tmp_path)
    assert shown.returncode == 0 and "building" in shown.stdout, shown.stdout + shown.stderr


def test_the_graph_of_dashed_job_ids(tmp_path):
    path = write(tmp_path, """
        version: 1
        jobs:
          build-image: {outputs: {tag: v1}}
          deploy-it: {needs: build-image, outputs: {tag: "${{ jobs.build-image.outputs.tag }}"}}
    """)
    assert "  build-image --> deploy-it\n" in cli("graph", path).stdout
    assert '  "build-image" -> "deploy-it";\n' in cli("graph", "--format", "dot", path).stdout


def test_an_unknown_dashed_job_is_named_in_the_error(tmp_path):
    path = write(tmp_path, """
        version: 1
        jobs:
          build-image: {outputs: {tag: v1}}
          deploy:
            needs: build-image
            outputs: {tag: "${{ jobs.build-imag.outputs.tag }}"}
    """)
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(path)
    message = str(info.value.problems[0])
    assert ":6:" in message and "no job `build-imag`; did you mean `build-image`?" in message


# -- shell: python3 ----------------------------------------------------------------------


def test_shell_python3_works_like_python(docker, tmp_path):
    workflow = write(tmp_path, """
        version: 1
        jobs:
          py:
            image: python:3.12-slim
            shell: python3
            steps:
              - id: s
                run: |
                  import os
                  n = ${{ 6 * 7 }}
                  with open(os.environ["GITHUB_OUTPUT"], "a") as f:
                      print(f"n={n}", file=f)
            outputs: {n: "${{ steps.s.outputs.n | int }}"}
        outputs: {n: "${{ jobs.py.outputs.n }}"}
    """)
    done = cli("run", workflow, *IMAGE_MAP, "--output-json", tmp_path / "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "out.json").read_text())["outputs"] == {"n": 42}


# -- hints for GitHub Actions keys -------------------------------------------------------

HINTS = [
    ("runs-on", "    runs-on: ubuntu-latest\n", 5, ["runner picks no machine", "`image:`"]),
    ("strategy", "    strategy:\n      matrix: {os: [a, b]}\n", 5, ["`matrix:`"]),
    ("fail-fast", "    strategy:\n      fail-fast: false\n", 5, ["`fail_fast:`", "`matrix:`"]),
    ("timeout-minutes", "    timeout-minutes: 5\n", 5, ["`timeout: 5m`"]),
    ("continue-on-error", "    continue-on-error: true\n", 5, ["`continue_on_error:`"]),
    ("container", "    container: node:20\n", 5, ["`image:`"]),
    ("step uses", "    steps:\n      - uses: actions/checkout@v4\n", 6, ["runs no actions", "`run:`"]),
    ("working-directory", "    steps:\n      - run: ls\n        working-directory: src\n", 7, ["`working_dir:`"]),
    ("step timeout-minutes", "    steps:\n      - run: ls\n        timeout-minutes: 2\n", 7, ["`timeout: 2m`"]),
]


@pytest.mark.parametrize("name,text,line,words", HINTS, ids=[h[0] for h in HINTS])
def test_github_job_keys_get_a_hint_naming_runners_way(tmp_path, name, text, line, words):
    path = write(tmp_path, "version: 1\njobs:\n  build:\n    image: alpine:3.20\n" + text)
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(path)
    messages = [str(p) for p in info.value.problems]
    hinted = [m for m in messages if all(w in m for w in words)]
    assert hinted, messages
    assert hinted[0].startswith(f"{path}:{line}:"), hinted


def test_top_level_github_keys_get_hints(tmp_path):
    path = write(tmp_path, """
        version: 1
        on: [push]
        defaults:
          run: {shell: bash, working-directory: src}
        jobs:
          build: {image: 'alpine:3.20', run: ls}
    """)
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(path)
    messages = {p.location.line: str(p) for p in info.value.problems}
    assert "runner has no triggers" in messages[2] and "runner run" in messages[2]
    assert "`defaults: {shell: …, working_dir: …}`" in messages[4]


@pytest.mark.parametrize("expression,words", [
    ("needs.build.result", ["`jobs.build.result`"]),
    ("needs.build.outputs.x", ["`jobs.build.outputs.x`"]),
    ("github.sha", ["`git.sha`"]),
    ("github.ref", ["`git.ref`"]),
    ("github.run_id", ["`run.id`"]),
    ("github.workspace", ["`/workspace`"]),
    ("github.event_name", ["`run.id`", "`git.sha`", "`inputs`"]),
])
def test_github_contexts_in_expressions_get_hints(tmp_path, expression, words):
    path = write(tmp_path, f"""
        version: 1
        jobs:
          build: {{outputs: {{x: 1}}}}
          use:
            needs: build
            outputs:
              y: ${{{{ {expression} }}}}
    """)
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(path)
    message = str(info.value.problems[0])
    assert message.startswith(f"{path}:7:"), message
    assert all(w in message for w in words), message


def test_git_context_is_known_to_the_checker(tmp_path):
    path = write(tmp_path, """
        version: 1
        env: {SHA: "${{ git.sha }}"}
        jobs:
          build: {outputs: {ref: "${{ git.ref }}", branch: "${{ git.branch }}"}}
    """)
    load_workflow(path)
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(write(tmp_path, "version: 1\njobs:\n  b: {outputs: {x: '${{ git.commit }}'}}\n"))
    assert "no `commit` in `git`" in str(info.value.problems[0])

