"""The public API: what `runner` exports, for programs and type checkers alike, and running a
workflow inside the caller's own trio loop."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import trio

import runner
from conftest import cli, write


def test_every_exported_name_resolves():
    for name in runner.__all__:
        assert getattr(runner, name) is not None, name


def test_type_checkers_see_exactly_the_exported_names():
    tree = ast.parse(open(runner.__file__).read())
    guarded = next(
        node for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    )
    seen = {alias.asname or alias.name for node in guarded.body for alias in node.names}
    assert seen == set(runner.__all__)


def test_importing_runner_imports_nothing_heavy():
    code = "import sys, runner; print(sorted(m for m in ('trio', 'jinja2', 'docker', 'httpx') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_many_workflows_run_in_one_trio_loop_and_one_is_cancelled_from_outside(tmp_path):
    write(tmp_path, """
        version: 1
        inputs: {n: {type: integer}}
        jobs:
          a: {outputs: {x: "${{ inputs.n }}"}}
          b: {needs: a, outputs: {y: "${{ jobs.a.outputs.x * 2 }}"}}
        outputs: {y: "${{ jobs.b.outputs.y }}"}
    """)
    workflow, _ = runner.load_workflow(tmp_path / "workflow.yml")
    outcomes = {}
    stopped = runner.RunControl()
    stopped.cancel("not wanted")

    async def one(n, control=None):
        options = runner.RunOptions(inputs={"n": n}, state_dir=str(tmp_path / "state"), control=control)
        outcomes[n] = await runner.run_workflow(workflow, options)

    async def main():
        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(one, n)
            nursery.start_soon(one, 99, stopped)

    trio.run(main)
    assert {n: o.outputs["y"] for n, o in outcomes.items() if n != 99} == {0: 0, 1: 2, 2: 4, 3: 6, 4: 8}
    assert all(o.status is runner.Result.SUCCESS for n, o in outcomes.items() if n != 99)
    assert outcomes[99].status is runner.Result.CANCELLED
    assert outcomes[99].jobs["a"].reason == "not wanted"


def test_cancelling_the_call_stops_the_run_at_once_and_records_it_as_cancelled(tmp_path):
    write(tmp_path, """
        version: 1
        jobs:
          poll: {repeat: {until: "${{ false }}", max: 100, delay: 10s}, outputs: {x: 1}}
    """)
    workflow, _ = runner.load_workflow(tmp_path / "workflow.yml")
    options = runner.RunOptions(state_dir=str(tmp_path / "state"))

    async def main():
        with trio.move_on_after(0.5) as scope:
            await runner.run_workflow(workflow, options)
        return scope.cancelled_caught

    assert trio.run(main)
    listed = cli("runs", "list", "--format", "json", "--state-dir", tmp_path / "state")
    assert [run["status"] for run in json.loads(listed.stdout)] == ["cancelled"]
