"""GitHub Actions mode (GITHUB_ACTIONS=true): masks, groups, annotations, outputs, summary."""

from __future__ import annotations

import re

from conftest import IMAGE_MAP, cli, write

WORKFLOW = """
version: 1
secrets: [TOKEN]
defaults: {image: 'alpine:3.20'}
jobs:
  build:
    steps:
      - id: s
        run: |
          echo "building with ${{ secrets.TOKEN }}"
          echo "::add-mask::not-a-secret"
          echo "::set-output name=hijack::yes"
          echo "answer=42" >> "$RUNNER_OUTPUT"
    outputs: {answer: "${{ steps.s.outputs.answer | int }}"}
  broken:
    run: exit 3
    continue_on_error: true
outputs:
  answer: ${{ jobs.build.outputs.answer }}
  text: "multi\\nline"
"""


def github_env(tmp_path):
    (tmp_path / "output").touch()
    (tmp_path / "summary").touch()
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        "TOKEN": "tok-0123456789-secret",
    }


def test_secrets_are_registered_before_anything_runs(docker, tmp_path):
    result = cli("run", write(tmp_path, WORKFLOW), *IMAGE_MAP, cwd=tmp_path, env=github_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "::add-mask::tok-0123456789-secret"
    assert result.stdout.count("tok-0123456789-secret") == 1
    assert "building with ***" in result.stdout


def test_step_output_cannot_issue_workflow_commands(docker, tmp_path):
    result = cli("run", write(tmp_path, WORKFLOW), *IMAGE_MAP, cwd=tmp_path, env=github_env(tmp_path))
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("::group::") and "build" in line)
    token = re.fullmatch(r"::stop-commands::(\w+)", lines[start + 1]).group(1)
    end = lines.index(f"::{token}::", start)
    relayed = lines[start + 2 : end]
    assert "[s] ::add-mask::not-a-secret" in relayed
    assert "[s] ::set-output name=hijack::yes" in relayed
    assert lines[end + 1] == "::endgroup::"


def test_outputs_and_summary_files(docker, tmp_path):
    env = github_env(tmp_path)
    result = cli("run", write(tmp_path, WORKFLOW), *IMAGE_MAP, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    output = (tmp_path / "output").read_text()
    values = dict(re.findall(r"^(\w+)<<(\w+)\n(.*?)\n\2$", output, re.M | re.S) and
                  [(m[0], m[2]) for m in re.findall(r"^(\w+)<<(\w+)\n(.*?)\n\2$", output, re.M | re.S)])
    assert values["status"] == "success"
    assert values["answer"] == "42"
    assert values["text"] == "multi\nline"
    assert values["outputs"] == '{"answer": 42, "text": "multi\\nline"}'
    summary = (tmp_path / "summary").read_text()
    assert "| `build` | ✅ success |" in summary
    assert "| `broken` | ❌ failure |" in summary and "(continue_on_error)" in summary
    assert "```mermaid\nflowchart LR\n" in summary
    assert 'broken["broken"]:::failure' in summary
    assert "tok-0123456789-secret" not in output + summary


def test_workflow_problems_are_annotations_on_their_lines(tmp_path):
    path = write(tmp_path, "version: 1\njobs:\n  a:\n    need: b\n    outputs: {x: 1}\n", "bad.yml")
    result = cli("run", path, cwd=tmp_path, env=github_env(tmp_path))
    assert result.returncode == 2
    assert result.stdout.strip() == "::error file=bad.yml,line=4,col=5::unknown key `need`; did you mean `needs`? (jobs.a.need)"


def test_a_failed_job_is_an_error_annotation(docker, tmp_path):
    path = write(tmp_path, "version: 1\njobs:\n  lint: {image: 'alpine:3.20', run: exit 4}\n")
    result = cli("run", path, *IMAGE_MAP, cwd=tmp_path, env=github_env(tmp_path))
    assert result.returncode == 1
    assert "::error title=lint failed::step `1` failed: exit code 4" in result.stdout.splitlines()
