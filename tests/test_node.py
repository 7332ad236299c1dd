"""One node's lifecycle, the same for every kind of job: here with an executor of the test's own."""

from __future__ import annotations

import trio
import trio.testing

from conftest import write
from runner.engine.scheduler import Scheduler
from runner.executors import NodeFailed, Outcome
from runner.executors.commandfiles import CommandFileError
from runner.executors.http import RequestFailed, SpecError
from runner.executors.scripts import ScriptError
from runner.load.workflow import load_workflow
from runner.model.inputs import resolve
from runner.model.results import Result
from runner.model.workflow import JobKind
from runner.report import Reporter


class FailsThenSucceeds:
    """An http executor whose first attempts raise NodeFailed."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0

    async def run(self, node):
        self.calls += 1
        await trio.sleep(1)
        if self.calls <= self.failures:
            raise SpecError(f"attempt {self.calls} went wrong")
        return Outcome(Result.SUCCESS, outputs={"calls": self.calls})


def run(tmp_path, text, executor):
    workflow, _ = load_workflow(write(tmp_path, text))
    scheduler = Scheduler.for_run(
        workflow, run_id="test", inputs=resolve(workflow, {}), secrets={},
        executors={JobKind.HTTP: executor}, reporter=Reporter(), run_dir=tmp_path / "run",
    )
    return trio.run(scheduler.run, clock=trio.testing.MockClock(autojump_threshold=0))


CALL = """
    version: 1
    jobs:
      call:
        http: {url: "http://127.0.0.1:9/"}
        retry: {attempts: 3, delay: 1s}
        continue_on_error: ${{ true }}
      after: {needs: call, outputs: {x: 1}}
"""


def test_a_node_failure_raised_by_an_executor_fails_the_attempt_and_is_retried(tmp_path):
    executor = FailsThenSucceeds(failures=2)
    outcome = run(tmp_path, CALL, executor)
    assert outcome.jobs["call"].result is Result.SUCCESS
    assert outcome.jobs["call"].attempts == 3
    assert outcome.jobs["call"].outputs == {"calls": 3}


def test_the_last_failure_is_the_reason_and_continue_on_error_lets_dependents_run(tmp_path):
    outcome = run(tmp_path, CALL, FailsThenSucceeds(failures=5))
    assert outcome.jobs["call"].result is Result.FAILURE
    assert outcome.jobs["call"].reason == "attempt 3 went wrong (attempt 3 of 3)"
    assert outcome.jobs["after"].result is Result.SUCCESS
    assert outcome.status is Result.SUCCESS


def test_every_failure_of_an_executor_is_a_node_failure():
    for error in (SpecError, RequestFailed, ScriptError, CommandFileError):
        assert issubclass(error, NodeFailed), error
