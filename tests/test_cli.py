"""The command line apart from `run`: validate's formats, graph, schema, usage errors."""

from __future__ import annotations

import json
from importlib import metadata

import runner
from conftest import ROOT, cli, write

BROKEN = """
version: 1
jobs:
  a:
    need: b
    outputs: {x: 1}
  b: {outputs: {x: 1}}
"""


def test_validate_text_names_file_line_and_key(tmp_path):
    path = write(tmp_path, BROKEN)
    result = cli("validate", path)
    assert result.returncode == 2
    assert f"{path}:4:5: unknown key `need`; did you mean `needs`? (jobs.a.need)" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_json_lists_every_problem(tmp_path):
    path = write(tmp_path, BROKEN)
    result = cli("validate", "--format", "json", path)
    assert result.returncode == 2
    problems = json.loads(result.stdout)
    assert problems == [{
        "file": str(path), "line": 4, "col": 5, "severity": "error", "path": "jobs.a.need",
        "message": "unknown key `need`; did you mean `needs`?",
    }]


def test_validate_github_prints_annotations(tmp_path):
    path = write(tmp_path, BROKEN)
    result = cli("validate", "--format", "github", path)
    assert result.returncode == 2
    assert result.stdout.strip() == f"::error file={path},line=4,col=5::unknown key `need`; did you mean `needs`? (jobs.a.need)"


def test_validate_reports_every_file(tmp_path):
    good = write(tmp_path, "version: 1\njobs:\n  a: {outputs: {x: 1}}\n", "good.yml")
    bad = write(tmp_path, BROKEN, "bad.yml")
    missing = tmp_path / "missing.yml"
    result = cli("validate", good, bad, missing)
    assert result.returncode == 2
    assert f"{bad}:4:5:" in result.stderr
    assert f"{missing}:1:1: cannot read the file" in result.stderr
    assert str(good) not in result.stderr


def test_graph_as_mermaid_and_dot():
    path = ROOT / "workflows" / "build-and-report.yml"
    mermaid = cli("graph", path)
    assert mermaid.returncode == 0
    assert mermaid.stdout.startswith("flowchart LR\n")
    assert "  prepare --> build\n" in mermaid.stdout
    dot = cli("graph", "--format", "dot", path)
    assert "  build -> total;\n" in dot.stdout


def test_schema_prints_the_published_schema():
    result = cli("schema")
    assert json.loads(result.stdout) == json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())


def test_usage_errors_exit_2_without_traceback(tmp_path):
    for args in (["frobnicate"], ["run"], ["run", "x.yml", "--concurrency", "many"]):
        result = cli(*args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr


def test_help_and_a_mistyped_command_name_every_command():
    commands = ("validate", "run", "resume", "runs", "logs", "trace", "state-dir", "graph", "serve", "schema", "action")
    for args in (["--help"], ["-h", "run"]):
        listed = cli(*args).stdout
        assert [c for c in commands if f"\n    {c}" not in listed] == [], args
    wrong = cli("rnu", "x.yml")
    assert wrong.returncode == 2
    assert "invalid choice: 'rnu' (choose from " + ", ".join(f"'{c}'" for c in commands) + ")" in wrong.stderr
    assert "usage: runner run [-h]" in cli("run", "--help").stdout


def test_bad_input_value_exits_2_naming_the_declaration(tmp_path):
    path = write(tmp_path, "version: 1\ninputs:\n  n: {type: integer}\njobs:\n  a: {outputs: {x: '${{ inputs.n }}'}}\n")
    result = cli("run", path, "--input", "n=three")
    assert result.returncode == 2
    assert f"{path}:3:3: input `n`: expected an integer, got 'three' (inputs.n)" in result.stderr


def test_value_only_workflow_runs_without_docker(tmp_path):
    path = write(tmp_path, "version: 1\njobs:\n  a: {outputs: {x: '${{ 6 * 7 }}'}}\noutputs: {x: '${{ jobs.a.outputs.x }}'}\n")
    result = cli("run", path, "--output-json", tmp_path / "out.json", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out.json").read_text())["outputs"] == {"x": 42}


def test_version_is_the_installed_distributions_and_exits_0():
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    # One version: runner.__version__, which the package metadata takes at build time.
    assert result.stdout == f"runner {runner.__version__}\n" == f"runner {metadata.version('runner-workflows')}\n"
