"""Sub-workflow jobs: the workflow that `uses` names runs as one node of its parent.

The engine hands over how a child workflow runs (`run_child`): in a scheduler
of its own that shares the parent's concurrency limit, run directory and
reporter (its nodes reported as `parent/child`), and is cancelled when the
parent is.  This executor only settles the child's inputs and its outcome.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping

from runner.errors import WorkflowInvalid
from runner.model import fields
from runner.model.fields import FieldError
from runner.model.inputs import resolve
from runner.model.results import Result, RunOutcome
from runner.model.workflow import Workflow
from runner.executors import Executor, NodeRun, Outcome


RunChild = Callable[[Workflow, str, Mapping[str, Any]], Awaitable[RunOutcome]]  # (workflow, node id, inputs)


class SubWorkflows(Executor):
    def __init__(self, run_child: RunChild):
        self.run_child = run_child

    async def run(self, node: NodeRun) -> Outcome:
        """Run the child workflow to its end; cancelling this call cancels it at once."""
        child = node.job.workflow
        try:
            given = fields.render(node.job.given, node.scope, "with")
            inputs = resolve(child, given, source=f"{node.job.id}.with")
        except FieldError as e:
            return Outcome(Result.FAILURE, str(e))
        except WorkflowInvalid as e:
            return Outcome(Result.FAILURE, "; ".join(p.message for p in e.problems))
        outcome = await self.run_child(child, node.node_id, inputs)
        result = outcome.status if outcome.status is not Result.SKIPPED else Result.SUCCESS
        return Outcome(
            result, outcome.reason, outputs=outcome.outputs, children=outcome.summary()["jobs"], usage=outcome.usage
        )
