"""`runner run FILE --target JOB`: JOB and what it needs run; every other job is skipped, saying why.

Value jobs need no engine; one test runs container jobs (with the cache) against it.
"""

from __future__ import annotations

import json

from conftest import IMAGE_MAP, cli, write

SKIPPED = {"result": "skipped", "reason": "not needed for --target"}

GRAPH = """
    version: 1
    jobs:
      a: {outputs: {x: 1}}
      shards:
        needs: a
        matrix: {n: [1, 2, 3]}
        outputs: {x: "${{ matrix.n * jobs.a.outputs.x }}"}
      total:
        needs: shards
        outputs: {sum: "${{ jobs.shards.outputs | map(attribute='x') | sum }}"}
      child:
        needs: a
        uses: lib/child.yml
        with: {name: "n${{ jobs.a.outputs.x }}"}
      report:
        needs: [total, child]
        outputs: {line: "${{ jobs.total.outputs.sum }} ${{ jobs.child.outputs.greeting }}"}
      other: {outputs: {x: 2}}
      after_other: {needs: other, if: always(), outputs: {x: 3}}
    outputs:
      line: ${{ jobs.report.outputs.line }}
"""

CHILD = """
    version: 1
    inputs: {name: {type: string}}
    jobs:
      greet: {outputs: {text: "hello ${{ inputs.name }}"}}
      unused_by_parent: {outputs: {x: 1}}
    outputs:
      greeting: ${{ jobs.greet.outputs.text }}
"""


def run(tmp_path, *args):
    out = tmp_path / "out.json"
    out.unlink(missing_ok=True)
    done = cli("run", tmp_path / "workflow.yml", "--output-json", out, *args, cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    return done, json.loads(out.read_text()) if out.exists() else None


def picked(job: dict) -> dict:
    return {k: job[k] for k in ("result", "reason")}


def setup(tmp_path):
    (tmp_path / "lib").mkdir()
    write(tmp_path / "lib", CHILD, name="child.yml")
    write(tmp_path, GRAPH)


def test_a_target_runs_with_what_it_needs_and_everything_else_is_skipped(tmp_path):
    setup(tmp_path)
    done, summary = run(tmp_path, "--target", "total")
    assert done.returncode == 0, done.stderr
    jobs = summary["jobs"]
    assert jobs["total"]["outputs"] == {"sum": 6}  # the matrix job ran every instance
    assert sorted(jobs["shards"]["instances"]) == ["shards (n=1)", "shards (n=2)", "shards (n=3)"]
    for job_id in ("child", "report", "other", "after_other"):  # `if: always()` is not needed either
        assert picked(jobs[job_id]) == SKIPPED, job_id
    assert summary["status"] == "success"
    assert summary["outputs"] == {"line": None}  # from a job that did not run
    assert "- other skipped: not needed for --target" in done.stdout


def test_targets_are_repeatable_and_a_sub_workflow_runs_whole(tmp_path):
    setup(tmp_path)
    done, summary = run(tmp_path, "--target", "report", "--target", "other")
    assert done.returncode == 0, done.stderr
    jobs = summary["jobs"]
    assert summary["outputs"] == {"line": "6 hello n1"}
    assert {k: v["result"] for k, v in jobs["child"]["jobs"].items()} == {"greet": "success", "unused_by_parent": "success"}
    assert jobs["other"]["result"] == "success"
    assert picked(jobs["after_other"]) == SKIPPED


def test_an_unknown_target_is_a_usage_error_naming_the_jobs(tmp_path):
    setup(tmp_path)
    done, summary = run(tmp_path, "--target", "totl")
    assert done.returncode == 2
    assert summary is None
    assert "--target totl: no such job" in done.stderr
    assert "a, shards, total, child, report, other, after_other" in done.stderr
    assert not (tmp_path / ".runner" / "runs").exists() or not any((tmp_path / ".runner" / "runs").iterdir())
    done = cli("run", tmp_path / "workflow.yml", "--target", "a", "--only", "a", cwd=tmp_path)
    assert done.returncode == 2 and "--target" in done.stderr


def test_resume_with_a_target_keeps_what_succeeded_and_runs_only_what_the_target_needs(tmp_path):
    broken = """
        version: 1
        inputs: {o: {type: object, default: {}}}
        jobs:
          a: {outputs: {x: 1}}
          b: {needs: a, outputs: {x: "${{ inputs.o.missing.deeper }}"}}
          c: {needs: b, outputs: {x: 3}}
          d: {needs: a, outputs: {x: "${{ inputs.o.missing.deeper }}"}}
    """
    write(tmp_path, broken)
    done, first = run(tmp_path)
    assert done.returncode == 1
    write(tmp_path, broken.replace('{x: "${{ inputs.o.missing.deeper }}"}}\n          c', '{x: 2}}\n          c'))
    done, second = run(tmp_path, "--resume", first["run_id"], "--force", "--target", "c")
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = second["jobs"]
    assert jobs["a"]["kept_from"] == 1
    assert jobs["b"]["result"] == jobs["c"]["result"] == "success"
    assert picked(jobs["d"]) == SKIPPED


def test_a_container_target_with_the_cache(docker, tmp_path):
    write(tmp_path, """
        version: 1
        defaults: {image: "alpine:3.20"}
        jobs:
          build:
            cache: true
            steps:
              - id: s
                run: echo "v=built" >> "$RUNNER_OUTPUT"
            outputs: {v: "${{ steps.s.outputs.v }}"}
          test:
            needs: build
            run: echo "testing ${{ jobs.build.outputs.v }}"
          deploy: {needs: test, run: exit 1}
    """)
    done, first = run(tmp_path, *IMAGE_MAP, "--target", "test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[test/1] testing built" in done.stdout
    assert picked(first["jobs"]["deploy"]) == SKIPPED
    done, second = run(tmp_path, *IMAGE_MAP, "--target", "build")
    assert done.returncode == 0, done.stdout + done.stderr
    assert second["jobs"]["build"]["cached_from"] == first["run_id"]
    assert second["jobs"]["build"]["outputs"] == {"v": "built"}
    assert picked(second["jobs"]["test"]) == SKIPPED
