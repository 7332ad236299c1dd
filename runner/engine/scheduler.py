"""Run one workflow with trio: ask its plan what is ready, start those nodes, repeat as they finish.

One task per running node; value jobs are evaluated inline and cost no task.
What may run is the plan's to say (`plan.py`), how a node runs is its
lifecycle's (`node.py`); this loop only connects them and owns the run's
deadline.  Cancelling the run (fail_fast, the run's timeout, the caller's
`RunControl.cancel`) stops what runs while jobs with `if: always()` still get
their turn; `RunControl.stop`, or cancelling the call, stops those too.
`RunControl.pause` holds the jobs that become ready (the plan keeps them)
until `unpause`; a cancelled run is no longer paused.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import trio

from runner.engine.control import RunControl
from runner.engine.node import Lifecycle
from runner.engine.plan import Plan
from runner.engine.state import RunState
from runner.executors import Executor
from runner.model.results import add_usage
from runner.executors.subworkflow import SubWorkflows
from runner.expr.templates import TemplateError, render_value
from runner.model import fields
from runner.model.fields import FieldError
from runner.masking import Masker
from runner.model.durations import format_duration
from runner.model.results import NodeRecord, NodeState, Result, RunOutcome
from runner.model.workflow import GIT_FACTS, Job, JobKind, Workflow
from runner.report import Prefixed, Reporter


class Scheduler:
    def __init__(self, workflow: Workflow, plan: Plan, nodes: Lifecycle, control: RunControl | None = None):
        self.workflow = workflow
        self.plan = plan
        self.nodes = nodes
        self.control = control  # the caller's: cancels or stops the run from outside
        self.jobs: dict[str, NodeRecord] = {}  # every job that started, in the order they did
        self.failure_reason = ""
        self._nursery: trio.Nursery | None = None
        self._unpaused = trio.Event()

    @classmethod
    def for_run(
        cls,
        workflow: Workflow,
        *,
        run_id: str,
        inputs: Mapping[str, Any],
        secrets: Mapping[str, str],
        executors: Mapping[JobKind, Executor],
        reporter: Reporter,
        run_dir: Path,
        concurrency: int | None = None,
        control: RunControl | None = None,
        restore: Mapping[str, dict] | None = None,
        preset: Mapping[str, dict] | None = None,
        targets: Iterable[str] | None = None,
        cache: Any = None,
        masker: Masker | None = None,
        workspace: Path | None = None,
        git: Mapping[str, str | None] | None = None,
        traceparent: Callable[[str, int, str | None], str] | None = None,
    ) -> "Scheduler":
        """The scheduler of a run's top workflow; sub-workflows get theirs from it."""
        plan = Plan(workflow, targets, preset)
        nodes = Lifecycle(
            run_id=run_id,
            inputs=dict(inputs),
            secrets=dict(secrets),
            jobs=plan.jobs,
            state=RunState(run_id, reporter),
            reporter=reporter,
            executors=executors,
            run_dir=run_dir,
            workspace=workspace or Path(workflow.directory),
            prefix="",
            limiter=trio.CapacityLimiter(concurrency or workflow.concurrency or os.cpu_count() or 1),
            cancellation=plan.cancellation,
            restore=dict(restore or {}),
            cache=cache,
            masker=masker,
            git=dict(git or dict.fromkeys(GIT_FACTS)),
            traceparent=traceparent,
        )
        return cls(workflow, plan, nodes, control)

    def _child(self, workflow: Workflow, node_id: str, inputs: Mapping[str, Any]) -> "Scheduler":
        """The scheduler of a sub-workflow run by the node `node_id`: it shares this run's limits and cancellation."""
        parent = self.nodes
        plan = Plan(workflow)
        parent.cancellation.children.append(plan.cancellation.cancel)
        if parent.cancellation.cancelled:
            plan.cancellation.cancel(parent.cancellation.reason)
        reporter = Prefixed(parent.reporter, f"{node_id[len(parent.prefix):]}/")
        nodes = Lifecycle(
            run_id=parent.run_id,
            inputs=inputs,
            secrets={name: parent.secrets[name] for name in workflow.secrets},
            jobs=plan.jobs,
            state=RunState(parent.run_id, reporter),
            reporter=reporter,
            executors=parent.executors,
            run_dir=parent.run_dir,
            workspace=parent.workspace,
            prefix=f"{node_id}/",
            limiter=parent.limiter,
            gate=parent.gate,
            cancellation=plan.cancellation,
            cache=parent.cache,
            masker=parent.masker,
            git=parent.git,
            traceparent=parent.traceparent,
        )
        return Scheduler(workflow, plan, nodes)

    async def _run_child(self, workflow: Workflow, node_id: str, inputs: Mapping[str, Any]) -> RunOutcome:
        return await self._child(workflow, node_id, inputs).run()

    # -- the run ---------------------------------------------------------

    async def run(self) -> RunOutcome:
        """Run every job and return the outcome.

        Cancellation from outside stops the run at once: running nodes are
        cancelled and their containers removed.
        """
        nodes = self.nodes
        nodes.executors = {**nodes.executors, JobKind.WORKFLOW: SubWorkflows(self._run_child)}
        nodes.reporter.run_started(nodes.run_id, self.workflow.path, self.workflow.name)
        timeout = None
        try:
            nodes.env = fields.text_mapping(self.workflow.env, nodes.scope(), "env")
            timeout = fields.duration(self.workflow.timeout, nodes.scope())
        except FieldError as e:
            self.failure_reason = str(e)
        async with trio.open_nursery() as outer:
            if timeout:
                outer.start_soon(self._run_deadline, timeout)
            with trio.CancelScope() as hard:
                if self.control is not None:
                    self.control.on_cancel(self.cancel_run)
                    self.control.stops(hard)
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if self.control is not None:
                        self.control.on_pause(self._pause)
                    if self.failure_reason:
                        self.cancel_run(self.failure_reason)
                    self._start(self.plan.ready())
                self._nursery = None
            outer.cancel_scope.cancel()
        return self._outcome()

    def cancel_run(self, reason: str) -> None:
        """Stop what runs; jobs not yet started run only if their `if` asks for it."""
        self.plan.cancellation.cancel(reason)
        if self.plan.paused:
            self._pause(False)

    def _pause(self, paused: bool) -> None:
        if self._nursery is None:  # the run is over
            return
        if paused:
            self.plan.pause()
            self.nodes.gate.close()
            self._unpaused = trio.Event()
            self._nursery.start_soon(self._unpaused.wait)  # a paused run lasts, even with nothing running
            self.nodes.reporter.run_paused()
        elif self.plan.paused:
            held = self.plan.unpause()
            self.nodes.gate.open()
            self._unpaused.set()
            self.nodes.reporter.run_unpaused()
            self._start(held)

    async def _run_deadline(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.failure_reason = f"the run timed out after {format_duration(seconds)}"
        self.cancel_run(self.failure_reason)

    def _start(self, ready: Iterable[str]) -> None:
        """Start ready jobs; those that end at once (skipped, kept, value) release their dependents."""
        nodes = self.nodes
        queue = deque(ready)
        while queue:
            job = self.workflow.jobs[queue.popleft()]
            record = self.jobs[job.id] = nodes.state.add(NodeRecord(job.id, job.id))
            if job.id in nodes.restore:
                nodes.keep(job, record, nodes.restore[job.id])
            # Only an `if` reads the scope: most jobs have none, and are spared building it.
            elif (decided := self.plan.decide(job.id, nodes.scope() if job.condition is not None else {}))[0] is not None:
                nodes.state.transition(record, decided[0], reason=decided[1])
            elif job.kind is JobKind.VALUE and job.matrix is None and job.repeat is None:
                nodes.value(job, record)
            else:
                self._nursery.start_soon(self._run, job, record, name=job.id)
                continue
            queue.extend(self._finished(record))

    async def _run(self, job: Job, record: NodeRecord) -> None:
        try:
            await self.nodes.run(job, record)
        finally:
            if not record.state.finished:  # stopped from outside, mid-run
                self.nodes.state.transition(record, NodeState.CANCELLED, reason=self.plan.cancellation.reason or "cancelled")
            self._start(self._finished(record))

    def _finished(self, record: NodeRecord) -> list[str]:
        ready = self.plan.finish(record)
        if reason := self.plan.fails_fast(record):
            self.cancel_run(reason)
        return ready

    def _outcome(self) -> RunOutcome:
        for job_id, record in self.jobs.items():
            if not record.state.finished:
                self.nodes.state.transition(record, NodeState.CANCELLED, reason=self.plan.cancellation.reason or "cancelled")
        for job_id in self.workflow.order:
            if job_id not in self.jobs:
                record = self.jobs[job_id] = self.nodes.state.add(NodeRecord(job_id, job_id))
                self.nodes.state.transition(record, NodeState.CANCELLED, reason=self.plan.cancellation.reason or "cancelled")
        failed = [r for r in self.jobs.values() if r.state is NodeState.FAILED and not r.continue_on_error]
        reason = self.failure_reason
        if self.control is not None and self.control.cancelled:
            status = Result.CANCELLED
            reason = self.plan.cancellation.reason
        elif failed or self.failure_reason:
            status = Result.FAILURE
            reason = reason or f"{len(failed)} job{'s' if len(failed) != 1 else ''} failed: " + ", ".join(
                r.id for r in failed[:5]
            )
        else:
            status = Result.SUCCESS
        outputs: dict[str, Any] = {}
        scope = self.nodes.scope()
        for name, value in self.workflow.outputs.items():
            try:
                outputs[name] = render_value(value, scope)
            except TemplateError as e:
                # After a failure, or with --target, outputs of jobs that did not run are simply missing.
                outputs[name] = None
                if status is Result.SUCCESS and self.plan.wanted is None:
                    status, reason = Result.FAILURE, f"outputs.{name}: {e}"
        outcome = RunOutcome(
            run_id=self.nodes.run_id,
            status=status,
            outputs=outputs,
            jobs=self.jobs,
            nodes=self.nodes.state.nodes,
            duration=time.monotonic() - self.nodes.state.started,
            reason=reason,
            signal=self.control.signal if self.control is not None else None,
            instances=self.nodes.instances,
            usage=add_usage(*(r.usage for r in self.jobs.values())),
        )
        self.nodes.reporter.run_finished(outcome.summary())
        return outcome

