"""The scheduler, with a fake container backend and trio's mock clock.

The fake runs a tiny script language instead of containers (`sleep N`, `exit N`,
`out k=v`, `echo text`, `fail-until N`), so that ordering, limits, timeouts,
cancellation and retries are tested in milliseconds.  Container behaviour itself
is tested against the real engine in test_docker.py.
"""

from __future__ import annotations


import pytest
import trio
import trio.testing

from conftest import write
from runner.executors.container import ContainerExecutor
from runner.model.inputs import resolve
from runner.model.workflow import JobKind
from runner.model.results import Result
from runner.report import Masking, Reporter
from runner.masking import Masker
from runner.backends.fake import FakeBackend
from runner.engine.scheduler import Scheduler
from runner.model.results import NodeState
from runner.load.workflow import load_workflow


class Recorder(Reporter):
    def __init__(self):
        self.events: list[tuple] = []

    def node_started(self, node):
        self.events.append(("started", node.id))

    def node_finished(self, node):
        self.events.append(("finished", node.id, node.result, node.reason))

    def log(self, node_id, step, stream, line):
        self.events.append(("log", node_id, step, line))


def run(tmp_path, text, *, inputs=None, secrets=None, concurrency=None, reporter=None, clock=True):
    workflow, _ = load_workflow(write(tmp_path, text))
    backend = FakeBackend()
    recorder = reporter or Recorder()
    scheduler = Scheduler.for_run(
        workflow,
        run_id="test",
        inputs=resolve(workflow, inputs or {}),
        secrets=secrets or {},
        executors={JobKind.CONTAINER: ContainerExecutor(backend, "test")},
        reporter=recorder,
        run_dir=tmp_path / "run",
        concurrency=concurrency,
    )
    clock = trio.testing.MockClock(autojump_threshold=0) if clock else None
    outcome = trio.run(scheduler.run, clock=clock)
    return outcome, backend, recorder


def results(outcome):
    return {job_id: record.result for job_id, record in outcome.jobs.items()}


def test_independent_branches_go_on_and_dependents_are_skipped(tmp_path):
    outcome, backend, _ = run(tmp_path, """
        version: 1
        defaults: {image: x}
        jobs:
          a: {run: exit 1}
          b: {needs: a, run: echo b}
          c: {needs: b, run: echo c}
          other: {run: sleep 5}
    """)
    assert results(outcome) == {
        "a": Result.FAILURE, "b": Result.SKIPPED, "c": Result.SKIPPED, "other": Result.SUCCESS,
    }
    assert outcome.jobs["b"].reason == "needs a failed"
    assert outcome.jobs["c"].reason == "needs b was skipped"
    assert outcome.status is Result.FAILURE
    assert sorted(backend.removed) == sorted(backend.started)


def test_fail_fast_cancels_what_is_running(tmp_path):
    outcome, backend, _ = run(tmp_path, """
        version: 1
        fail_fast: true
        defaults: {image: x}
        jobs:
          slow: {run: sleep 100}
          broken: {run: "sleep 1\\nexit 2"}
          later: {needs: slow, run: echo never}
    """)
    assert results(outcome) == {"slow": Result.CANCELLED, "broken": Result.FAILURE, "later": Result.CANCELLED}
    assert "broken" in outcome.jobs["slow"].reason
    assert outcome.duration < 50
    assert sorted(backend.removed) == sorted(backend.started)


def test_concurrency_bounds_running_nodes(tmp_path):
    jobs = "".join(f"  j{i}: {{run: sleep 1}}\n" for i in range(6))
    outcome, backend, _ = run(tmp_path, "version: 1\ndefaults: {image: x}\njobs:\n" + jobs, concurrency=2)
    assert outcome.status is Result.SUCCESS
    assert backend.most_running == 2


def test_job_timeout_fails_the_job_and_removes_its_container(tmp_path):
    outcome, backend, _ = run(tmp_path, """
        version: 1
        defaults: {image: x}
        jobs:
          slow: {run: sleep 100, timeout: 5s}
    """)
    assert outcome.jobs["slow"].result is Result.FAILURE
    assert outcome.jobs["slow"].reason == "timed out after 5s"
    assert backend.removed == backend.started == ["c0"]


def test_run_timeout_cancels_and_cleanup_still_runs(tmp_path):
    outcome, _, recorder = run(tmp_path, """
        version: 1
        timeout: 10s
        defaults: {image: x}
        jobs:
          slow: {run: sleep 100}
          cleanup: {needs: slow, if: always(), run: echo cleaning}
          after: {needs: slow, run: echo never}
    """)
    assert results(outcome) == {"slow": Result.CANCELLED, "cleanup": Result.SUCCESS, "after": Result.CANCELLED}
    assert outcome.status is Result.FAILURE
    assert outcome.reason == "the run timed out after 10s"
    assert ("log", "cleanup", "1", "cleaning") in recorder.events


def test_continue_on_error_records_failure_but_dependents_run(tmp_path):
    outcome, _, _ = run(tmp_path, """
        version: 1
        defaults: {image: x}
        jobs:
          flaky: {run: exit 3, continue_on_error: true}
          next: {needs: flaky, run: echo ok}
    """)
    assert results(outcome) == {"flaky": Result.FAILURE, "next": Result.SUCCESS}
    assert outcome.status is Result.SUCCESS
    assert outcome.summary()["jobs"]["flaky"]["continue_on_error"] is True


def test_conditions_and_their_reasons(tmp_path):
    outcome, _, _ = run(tmp_path, """
        version: 1
        inputs: {flag: {type: boolean, default: false}}
        defaults: {image: x}
        jobs:
          a: {run: exit 1}
          on_failure: {needs: a, if: failure(), run: echo f}
          always: {needs: a, if: "${{ always() }}", run: echo a}
          on_success: {needs: a, if: success(), run: echo s}
          flagged: {if: inputs.flag, run: echo x}
    """)
    assert results(outcome) == {
        "a": Result.FAILURE, "on_failure": Result.SUCCESS, "always": Result.SUCCESS,
        "on_success": Result.SKIPPED, "flagged": Result.SKIPPED,
    }
    assert outcome.jobs["on_success"].reason == "if was false"
    assert outcome.jobs["flagged"].reason == "if was false"


def test_retry_runs_again_until_it_succeeds(tmp_path):
    outcome, backend, _ = run(tmp_path, """
        version: 1
        defaults: {image: x}
        jobs:
          flaky: {run: fail-until 3, retry: {attempts: 3, delay: 1s}}
    """)
    assert outcome.jobs["flaky"].result is Result.SUCCESS
    assert outcome.jobs["flaky"].attempts == 3
    assert len(backend.started) == 3 == len(backend.removed)


def test_matrix_fans_out_and_in_in_matrix_order(tmp_path):
    outcome, _, _ = run(tmp_path, """
        version: 1
        inputs: {shards: {type: integer, default: 3}}
        defaults: {image: x}
        jobs:
          build:
            matrix: {shard: "${{ range(inputs.shards) | list }}"}
            steps:
              - id: s
                run: "sleep ${{ 3 - matrix.shard }}\\nout n=${{ matrix.shard * 10 }}"
            outputs: {n: "${{ steps.s.outputs.n | int }}"}
          total:
            needs: build
            outputs: {sum: "${{ jobs.build.outputs | map(attribute='n') | sum }}"}
    """)
    assert outcome.jobs["build"].outputs == [{"n": 0}, {"n": 10}, {"n": 20}]
    assert outcome.jobs["total"].outputs == {"sum": 30}
    assert outcome.instances["build"] == ["build (shard=0)", "build (shard=1)", "build (shard=2)"]


def test_matrix_fail_fast_cancels_siblings_and_fan_in_has_nulls(tmp_path):
    outcome, _, _ = run(tmp_path, """
        version: 1
        defaults: {image: x}
        jobs:
          build:
            matrix: {n: [1, 2]}
            run: "sleep ${{ matrix.n * 10 }}\\nexit ${{ 1 if matrix.n == 1 else 0 }}"
    """)
    assert outcome.jobs["build"].result is Result.FAILURE
    assert outcome.nodes["build (n=2)"].result is Result.CANCELLED
    assert outcome.jobs["build"].outputs == [None, None]


def test_empty_matrix_skips_the_job(tmp_path):
    outcome, _, _ = run(tmp_path, """
        version: 1
        defaults: {image: x}
        jobs:
          build: {matrix: {n: "${{ [] }}"}, run: echo}
    """)
    assert outcome.jobs["build"].result is Result.SKIPPED
    assert outcome.jobs["build"].reason == "matrix is empty"


def test_repeat_until_and_its_limit(tmp_path):
    outcome, _, _ = run(tmp_path, """
        version: 1
        jobs:
          count:
            repeat: {until: "${{ repeat.index >= 2 }}", max: 5}
            outputs: {pass: "${{ run.attempt }}"}
          never:
            repeat: {until: "${{ false }}", max: 3}
            outputs: {x: 1}
    """)
    assert outcome.jobs["count"].result is Result.SUCCESS
    assert outcome.jobs["never"].result is Result.FAILURE
    assert outcome.jobs["never"].reason == "repeat limit (3) reached without until becoming true"


def test_every_node_starts_once_and_finishes_once(tmp_path):
    outcome, _, recorder = run(tmp_path, """
        version: 1
        defaults: {image: x}
        jobs:
          a: {run: echo a}
          b: {needs: a, outputs: {x: 1}}
          c: {needs: [a, b], run: exit 1}
          d: {needs: c, run: echo d}
    """)
    finished = [e[1] for e in recorder.events if e[0] == "finished"]
    started = [e[1] for e in recorder.events if e[0] == "started"]
    assert sorted(finished) == ["a", "b", "c", "d"]
    assert sorted(started) == ["a", "b", "c"]
    assert all(record.state.finished for record in outcome.nodes.values())


def test_undefined_value_at_run_time_names_job_and_field(tmp_path):
    outcome, _, _ = run(tmp_path, """
        version: 1
        jobs:
          a: {outputs: {x: "${{ inputs.missing_value.deeper }}"}}
        inputs: {missing_value: {type: object, default: {}}}
    """)
    assert outcome.jobs["a"].result is Result.FAILURE
    # Where the output is written, the field and the output, in the workflow's words.
    assert outcome.jobs["a"].reason == (
        f"{tmp_path / 'workflow.yml'}:3:20: outputs.x: `inputs.missing_value` has no `deeper` (it has none)"
    )


def test_secrets_are_masked_in_every_event(tmp_path):
    recorder = Recorder()
    outcome, _, _ = run(tmp_path, """
        version: 1
        secrets: [TOKEN]
        defaults: {image: x}
        jobs:
          leak:
            steps:
              - id: s
                run: "echo token is ${{ secrets.TOKEN | raw }}\\nout t=${{ secrets.TOKEN | raw }}"
            outputs: {t: "${{ steps.s.outputs.t }}"}
    """, secrets={"TOKEN": "hunter2-secret"}, reporter=Masking(recorder, Masker(["hunter2-secret"])))
    assert ("log", "leak", "s", "token is ***") in recorder.events
    assert "hunter2-secret" not in repr(recorder.events)
    assert outcome.jobs["leak"].outputs == {"t": "hunter2-secret"}  # inside the run, the value is real


def test_ten_thousand_value_jobs_in_a_chain(tmp_path):
    jobs = "  j0: {outputs: {n: 0}}\n" + "".join(
        f"  j{i}: {{needs: j{i-1}, outputs: {{n: '${{{{ jobs.j{i-1}.outputs.n + 1 }}}}'}}}}\n" for i in range(1, 10000)
    )
    outcome, _, _ = run(tmp_path, "version: 1\njobs:\n" + jobs + "outputs: {last: '${{ jobs.j9999.outputs.n }}'}\n",
                        reporter=Reporter())
    assert outcome.outputs == {"last": 9999}
    assert outcome.status is Result.SUCCESS


def test_a_paused_run_starts_no_node_and_lets_running_ones_finish(tmp_path):
    from runner.engine.control import RunControl

    workflow, _ = load_workflow(write(tmp_path, """
        version: 1
        defaults: {image: x}
        jobs:
          first: {run: sleep 2}
          shards:
            needs: first
            matrix: {n: [1, 2, 3], max_parallel: 1}
            run: sleep 2
          last: {needs: shards, run: echo last}
    """))
    control = RunControl()
    reporter = Recorder()
    reporter.run_paused = lambda: reporter.events.append(("paused", trio.current_time()))
    reporter.run_unpaused = lambda: reporter.events.append(("unpaused", trio.current_time()))
    reporter.node_started = lambda node: reporter.events.append(("started", node.id, trio.current_time()))
    scheduler = Scheduler.for_run(
        workflow, run_id="test", inputs={}, secrets={}, executors={JobKind.CONTAINER: ContainerExecutor(FakeBackend(), "test")},
        reporter=reporter, run_dir=tmp_path / "run", control=control,
    )

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(scheduler.run)
            await trio.sleep(1)
            control.pause()  # first goes on; shards must wait
            await trio.sleep(10)
            control.unpause()
            await trio.sleep(1)
            control.pause()  # the first instance runs on; the second waits
            await trio.sleep(10)
            control.unpause()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    started = {e[1]: e[2] for e in reporter.events if e[0] == "started"}
    assert [e[0] for e in reporter.events if e[0] in ("paused", "unpaused")] == ["paused", "unpaused"] * 2
    paused, unpaused, paused_again, unpaused_again = [e[1] for e in reporter.events if e[0] in ("paused", "unpaused")]
    assert started["first"] < paused
    instances = sorted(started[f"shards (n={n})"] for n in (1, 2, 3))  # trio picks which goes first
    assert started["shards"] >= unpaused and instances[0] >= unpaused  # held by the plan
    assert instances[0] < paused_again
    assert instances[1] >= unpaused_again  # held at the gate, though max_parallel let it start
    assert started["last"] > instances[2]
    assert scheduler.jobs["last"].state is NodeState.SUCCEEDED
