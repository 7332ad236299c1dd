"""The plan: which jobs are ready, which end without running and why, what a finished job releases.

Nothing runs here: no trio, no Docker.  The tests play the scheduler's part,
finishing jobs by hand.
"""

from __future__ import annotations

import pytest

from conftest import write
from runner.engine.plan import NOT_TARGETED, Plan, needed
from runner.errors import UsageError
from runner.load.workflow import load_workflow
from runner.model.results import NodeRecord, NodeState

GRAPH = """
    version: 1
    jobs:
      a: {outputs: {x: 1}}
      b: {needs: a, outputs: {x: 2}}
      c: {needs: a, outputs: {x: 3}}
      d: {needs: [b, c], outputs: {x: 4}}
      cleanup: {needs: d, if: always(), outputs: {x: 5}}
      alone: {outputs: {x: 6}}
"""


def plan_of(tmp_path, text=GRAPH, **kwargs) -> Plan:
    workflow, _ = load_workflow(write(tmp_path, text))
    return Plan(workflow, **kwargs)


def finish(plan: Plan, job_id: str, state: NodeState, **fields) -> list[str]:
    return plan.finish(NodeRecord(job_id, job_id, state=state, **fields))


def test_ready_jobs_and_what_a_finished_job_releases(tmp_path):
    plan = plan_of(tmp_path)
    assert plan.ready() == ["a", "alone"]
    assert finish(plan, "a", NodeState.SUCCEEDED, outputs={"x": 1}) == ["b", "c"]
    assert finish(plan, "b", NodeState.SUCCEEDED) == []  # d still needs c
    assert finish(plan, "c", NodeState.SUCCEEDED) == ["d"]
    assert plan.jobs["a"] == {"outputs": {"x": 1}, "result": "success"}


def test_a_failed_need_skips_its_dependents_but_not_a_cleanup_job(tmp_path):
    plan = plan_of(tmp_path)
    finish(plan, "a", NodeState.SUCCEEDED)
    finish(plan, "b", NodeState.FAILED)
    finish(plan, "c", NodeState.SUCCEEDED)
    assert plan.decide("d", {}) == (NodeState.SKIPPED, "needs b failed")
    finish(plan, "d", NodeState.SKIPPED)
    assert plan.decide("cleanup", {}) == (None, "")


def test_a_tolerated_failure_counts_as_success(tmp_path):
    plan = plan_of(tmp_path)
    finish(plan, "a", NodeState.FAILED, continue_on_error=True)
    assert plan.fails_fast(plan.finished["a"]) == ""
    assert plan.decide("b", {}) == (None, "")


def test_if_false_and_if_that_cannot_be_evaluated(tmp_path):
    plan = plan_of(tmp_path, """
        version: 1
        inputs: {flag: {type: boolean, default: false}, o: {type: object, default: {}}}
        jobs:
          flagged: {if: inputs.flag, outputs: {x: 1}}
          broken: {if: inputs.o.missing.deeper, outputs: {x: 1}}
    """)
    assert plan.decide("flagged", {"inputs": {"flag": False}}) == (NodeState.SKIPPED, "if was false")
    assert plan.decide("flagged", {"inputs": {"flag": True}}) == (None, "")
    state, reason = plan.decide("broken", {"inputs": {"o": {}}})
    assert state is NodeState.FAILED and reason.startswith("if: ")


def test_after_cancellation_only_jobs_that_ask_for_it_run(tmp_path):
    plan = plan_of(tmp_path)
    plan.cancellation.cancel("interrupted by SIGINT")
    plan.cancellation.cancel("a later reason")  # the first reason stays
    assert plan.decide("a", {}) == (NodeState.CANCELLED, "interrupted by SIGINT")
    finish(plan, "a", NodeState.CANCELLED)
    for job_id in ("b", "c"):
        finish(plan, job_id, NodeState.CANCELLED)
    finish(plan, "d", NodeState.CANCELLED)
    assert plan.decide("cleanup", {}) == (None, "")


def test_cancelling_stops_what_runs_and_the_runs_of_sub_workflows(tmp_path):
    class Scope:
        cancelled = False

        def cancel(self):
            self.cancelled = True

    plan = plan_of(tmp_path)
    running, reasons = Scope(), []
    plan.cancellation.running.add(running)
    plan.cancellation.children.append(reasons.append)
    plan.cancellation.cancel("stop")
    assert running.cancelled and reasons == ["stop"]


def test_fail_fast_names_the_failed_job(tmp_path):
    plan = plan_of(tmp_path, "version: 1\nfail_fast: true\njobs:\n  a: {outputs: {x: 1}}\n")
    finish(plan, "a", NodeState.FAILED)
    assert plan.fails_fast(plan.finished["a"]) == "cancelled because `a` failed and fail_fast is on"
    plan = plan_of(tmp_path, "version: 1\njobs:\n  a: {outputs: {x: 1}}\n")
    finish(plan, "a", NodeState.FAILED)
    assert plan.fails_fast(plan.finished["a"]) == ""


def test_targets_need_their_needs_transitively_and_skip_the_rest(tmp_path):
    plan = plan_of(tmp_path, targets=["b"])
    assert plan.wanted == {"a", "b"}
    assert plan.decide("a", {}) == (None, "")
    assert plan.decide("alone", {}) == (NodeState.SKIPPED, NOT_TARGETED)
    finish(plan, "a", NodeState.SUCCEEDED)
    assert plan.decide("c", {}) == (NodeState.SKIPPED, NOT_TARGETED)
    finish(plan, "b", NodeState.SUCCEEDED)
    finish(plan, "c", NodeState.SKIPPED, reason=NOT_TARGETED)
    # A job with `if: always()` is still not needed.
    finish(plan, "d", NodeState.SKIPPED, reason=NOT_TARGETED)
    assert plan.decide("cleanup", {}) == (NodeState.SKIPPED, NOT_TARGETED)


def test_an_unknown_target_names_the_known_jobs(tmp_path):
    workflow, _ = load_workflow(write(tmp_path, GRAPH))
    with pytest.raises(UsageError) as e:
        needed(workflow, ["d", "nope"])
    assert "--target nope" in str(e.value)
    assert "a, b, c, d, cleanup, alone" in str(e.value)


def test_a_paused_plan_holds_the_jobs_that_become_ready_until_unpaused(tmp_path):
    plan = plan_of(tmp_path)
    plan.pause()
    assert plan.ready() == []
    assert plan.unpause() == ["a", "alone"]
    plan.pause()
    assert finish(plan, "a", NodeState.SUCCEEDED) == []  # b and c wait
    assert finish(plan, "alone", NodeState.SUCCEEDED) == []
    assert plan.unpause() == ["b", "c"]
    assert finish(plan, "b", NodeState.SUCCEEDED) == []
    assert finish(plan, "c", NodeState.SUCCEEDED) == ["d"]
