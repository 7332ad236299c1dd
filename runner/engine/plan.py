"""What may run next in one workflow's run: a synchronous state machine over the compiled graph.

The plan knows which jobs are ready (every need finished), which of them end
without running and why (a need failed, `if` is false, the run is cancelled,
`--target` does not need them), and what a finished job releases; while the
run is paused, it holds the jobs that become ready until it is unpaused.  It starts
nothing and awaits nothing: the scheduler asks it and starts nodes, and tests
drive it with nothing running.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from runner.errors import UsageError
from runner.expr.templates import CONDITION_FUNCTIONS, Template, TemplateError
from runner.model.results import NodeRecord, NodeState
from runner.model.workflow import Workflow

NOT_TARGETED = "not needed for --target"
# `jobs.<id>.result` by a finished state's value: read for every node, where Enum's `value`
# property and a member's hash (both Python calls) cost more than the rest of `finish`.
_RESULTS = {state._value_: state.result.value for state in NodeState if state.finished}


def needed(workflow: Workflow, targets: Iterable[str]) -> set[str]:
    """The target jobs and every job they need, transitively; UsageError naming the known jobs."""
    targets = list(targets)
    unknown = [t for t in targets if t not in workflow.jobs]
    if unknown:
        raise UsageError(
            f"--target {unknown[0]}: no such job in {workflow.path}; its jobs: {', '.join(workflow.jobs)}"
        )
    wanted: set[str] = set()
    stack = targets
    while stack:
        job_id = stack.pop()
        if job_id not in wanted:
            wanted.add(job_id)
            stack.extend(workflow.jobs[job_id].needs)
    return wanted


class Cancellation:
    """Whether a run is cancelled and why (the first reason stays); what runs is stopped at once."""

    def __init__(self) -> None:
        self.reason = ""
        self.running: set = set()  # the cancel scopes of running nodes
        self.children: list[Callable[[str], None]] = []  # how sub-workflows' runs are cancelled

    @property
    def cancelled(self) -> bool:
        return bool(self.reason)

    def cancel(self, reason: str) -> None:
        self.reason = self.reason or reason
        for scope in list(self.running):
            scope.cancel()
        for child in self.children:
            child(reason)


class Plan:
    def __init__(
        self,
        workflow: Workflow,
        targets: Iterable[str] | None = None,
        preset: Mapping[str, dict] | None = None,
        cancellation: Cancellation | None = None,
    ):
        self.workflow = workflow
        self.wanted = needed(workflow, targets) if targets else None  # None: every job
        self.remaining = {job_id: len(job.needs) for job_id, job in workflow.jobs.items()}
        self.finished: dict[str, NodeRecord] = {}
        # What expressions see as `jobs`: finished jobs' results and outputs, and
        # with `--only` the given values of the jobs it uses.
        self.jobs: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (preset or {}).items()}
        # Once cancelled, jobs start only if their `if` asks for it.
        self.cancellation = cancellation or Cancellation()
        self.paused = False
        self.held: list[str] = []  # jobs that became ready while the run was paused

    def pause(self) -> None:
        self.paused = True

    def unpause(self) -> list[str]:
        """The jobs held while the run was paused: they may start now."""
        self.paused = False
        held, self.held = self.held, []
        return held

    def _release(self, ready: list[str]) -> list[str]:
        if self.paused:
            self.held.extend(ready)
            return []
        return ready

    def ready(self) -> list[str]:
        """The jobs that need nothing, in the workflow's order."""
        return self._release([job_id for job_id in self.workflow.order if self.remaining[job_id] == 0])

    def finish(self, record: NodeRecord) -> list[str]:
        """A job's result is final: publish it to expressions; the dependents it makes ready."""
        self.finished[record.id] = record
        self.jobs[record.id] = {"outputs": record.outputs, "result": _RESULTS[record.state._value_]}
        ready = []
        for dependent in self.workflow.dependents[record.id]:
            self.remaining[dependent] -= 1
            if self.remaining[dependent] == 0:
                ready.append(dependent)
        return self._release(ready)

    def fails_fast(self, record: NodeRecord) -> str:
        """Why the run is cancelled now that `record` finished, or nothing."""
        if record.state is NodeState.FAILED and not record.continue_on_error:
            if self.workflow.fail_fast and not self.cancellation.cancelled:
                return f"cancelled because `{record.id}` failed and fail_fast is on"
        return ""

    def decide(self, job_id: str, scope: Mapping[str, Any]) -> tuple[NodeState | None, str]:
        """None if the ready job runs, else the state it ends in instead, and why.

        `scope` is what its `if` may refer to; the status functions are added here.
        """
        if self.wanted is not None and job_id not in self.wanted:
            return NodeState.SKIPPED, NOT_TARGETED
        job = self.workflow.jobs[job_id]
        needs = [self.finished[n] for n in job.needs]
        if job.condition is None or not mentions(job.condition, CONDITION_FUNCTIONS):
            # Without a status function, `if` holds only after every need succeeded.
            if self.cancellation.cancelled:
                return NodeState.CANCELLED, self.cancellation.reason
            for need in needs:
                if need.state is not NodeState.SUCCEEDED and not need.tolerated:
                    verb = {NodeState.FAILED: "failed", NodeState.SKIPPED: "was skipped"}.get(need.state, "was cancelled")
                    return NodeState.SKIPPED, f"needs {need.id} {verb}"
            if job.condition is None:
                return None, ""
        try:
            holds = job.condition.render({**scope, **self._status_functions(needs)})
        except TemplateError as e:
            return NodeState.FAILED, f"if: {e}"
        if holds:
            return None, ""
        if self.cancellation.cancelled and not mentions(job.condition, ("always", "cancelled")):
            return NodeState.CANCELLED, self.cancellation.reason
        return NodeState.SKIPPED, "if was false"

    def _status_functions(self, needs: list[NodeRecord]) -> dict[str, Any]:
        failed = any(n.state is NodeState.FAILED and not n.tolerated for n in needs)
        succeeded = all(n.state is NodeState.SUCCEEDED or n.tolerated for n in needs)
        cancelled = self.cancellation.cancelled
        return {
            "success": lambda: succeeded and not cancelled,
            "failure": lambda: failed,
            "always": lambda: True,
            "cancelled": lambda: cancelled,
        }


def mentions(condition: Template | None, functions: tuple[str, ...]) -> bool:
    if condition is None:
        return False
    return any((name, None) in expr.refs for expr in condition.expressions for name in functions)
