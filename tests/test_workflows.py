"""The example workflows shipped in workflows/ are valid, as `runner validate` sees them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import IMAGE_MAP, ROOT, cli

WORKFLOWS = sorted((ROOT / "workflows").glob("*.yml"))


def test_there_are_example_workflows():
    assert WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_example_workflow_validates(path: Path):
    result = cli("validate", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 file valid" in result.stdout
    assert "warning" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_all_example_workflows_validate_together():
    result = cli("validate", *WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(WORKFLOWS)} files valid" in result.stdout or len(WORKFLOWS) == 1


# What each example needs to run, and what it gives back.
RUNS = {
    "build-and-report.yml": (["--input", "greeting=hi"], {"API_TOKEN": "t0ken-value"}, {"total_bytes": 100}),
    "hello.yml": ([], {}, {"greeting": "Hello, world", "chars": 12}),
    "matrix-fan-in.yml": ([], {}, {
        "bytes": 3120,
        "builds": ["linux-debug", "linux-release", "windows-debug", "windows-release", "mac-release", "wasm-release"],
    }),
    "report-pipeline.yml": ([], {}, {"title": "Words", "total": 6}),
    "retry-and-repeat.yml": ([], {}, {"flaky": "success", "checks": 3}),
    "python-stats.yml": (["--input", "count=4"], {}, {"mean": 2.5, "max": 4}),
    "tolerate-failures.yml": ([], {}, {"passed": 42, "lint": "failure"}),
}


# Examples that need a server the test starts (its address known only then), run by their own tests.
RUN_ELSEWHERE = {
    "triage-issues.yml": "tests/test_llm.py::test_the_example_workflow_chains_http_llm_and_http",
}


def test_every_example_has_a_run():
    assert sorted([*RUNS, *RUN_ELSEWHERE]) == [p.name for p in WORKFLOWS]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_example_workflow_runs(docker, tmp_path, name):
    args, env, outputs = RUNS[name]
    out = tmp_path / "out.json"
    result = cli(
        "run", ROOT / "workflows" / name, *args, *IMAGE_MAP,
        "--state-dir", tmp_path / "state", "--output-json", out, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(out.read_text())["outputs"] == outputs
