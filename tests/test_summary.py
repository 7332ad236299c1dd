"""One document describes a run: `--output-json` and `runner runs show --format json` agree on every job."""

from __future__ import annotations

import json

from conftest import cli, write


def without_durations(value):
    if isinstance(value, dict):
        return {k: without_durations(v) for k, v in value.items() if k != "duration_s"}
    return value


def test_output_json_and_runs_show_describe_jobs_alike(tmp_path):
    write(tmp_path, """
        version: 1
        inputs: {o: {type: object, default: {}}}
        jobs:
          a: {outputs: {x: 1}}
          m: {needs: a, matrix: {n: [1, 2]}, outputs: {sq: "${{ matrix.n * matrix.n }}"}}
          broken: {outputs: {x: "${{ inputs.o.missing.deeper }}"}, continue_on_error: true}
          skipped: {needs: a, if: "${{ false }}", outputs: {x: 2}}
        outputs:
          squares: ${{ jobs.m.outputs | map(attribute='sq') | list }}
    """)
    out = tmp_path / "out.json"
    done = cli("run", tmp_path / "workflow.yml", "--output-json", out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    show = cli("runs", "show", summary["run_id"], "--format", "json", cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    document = json.loads(show.stdout)
    assert without_durations(document["jobs"]) == without_durations(summary["jobs"])
    assert document["jobs"]["broken"]["continue_on_error"] is True
    assert document["jobs"]["m"]["instances"]["m (n=2)"] == {
        "matrix": {"n": 2}, "result": "success", "outputs": {"sq": 4}, "reason": "", "attempts": 1,
        "duration_s": document["jobs"]["m"]["instances"]["m (n=2)"]["duration_s"],
    }
    for key in ("run_id", "status", "outputs"):
        assert document[key] == summary[key]
    assert document["outputs"] == {"squares": [1, 4]}
