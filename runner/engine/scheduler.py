"""Run a compiled workflow with trio: each node starts as soon as its needs have finished.

One task per running node, a capacity limiter for `concurrency`, and a cancel
scope per node so that cancelling the run (fail_fast, run timeout, the caller's
`RunControl.cancel`) stops what runs while jobs with `if: always()` still get
their turn; `RunControl.stop` stops those too.  Value jobs are evaluated
inline: they cost no task.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Mapping

import trio

from runner.model.durations import format_duration, parse_duration
from runner.executors import Executor, NodeRun, Outcome, add_usage
from runner.executors.subworkflow import SubWorkflows
from runner.masking import Masker
from runner.expr.matrix import MatrixError, expand, label
from runner.model.workflow import Job, JobKind, Workflow
from runner.model.results import Result
from runner.report import Prefixed, Reporter
from runner.model.results import NodeRecord, NodeState, RunOutcome, file_name
from runner.engine.control import RunControl
from runner.engine.state import RunState
from runner.expr.templates import (
    CONDITION_FUNCTIONS,
    Template,
    TemplateError,
    render_value,
    templates_in,
    to_text,
)


class Scheduler:
    def __init__(
        self,
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
        limiter: trio.CapacityLimiter | None = None,
        workspace: Path | None = None,
        prefix: str = "",
        restore: Mapping[str, dict] | None = None,
        preset: Mapping[str, dict] | None = None,
        cache: Any = None,
        masker: Masker | None = None,
    ):
        self.workflow = workflow
        self.masker = masker
        self.run_id = run_id
        self.inputs = dict(inputs)
        self.secrets = dict(secrets)
        self.executors = {**executors, JobKind.WORKFLOW: SubWorkflows(self)}
        self.reporter = reporter
        self.run_dir = run_dir
        self.concurrency = concurrency or workflow.concurrency or os.cpu_count() or 1
        self.control = control  # the caller's: cancels or stops the run from outside
        self.state = RunState(run_id, reporter)
        self.jobs: dict[str, NodeRecord] = {}
        self.instances: dict[str, list[str]] = {}
        # `--only`: the results and outputs of the jobs it uses, given rather than run.
        self.jobs_scope: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (preset or {}).items()}
        # Resume: node id → what a succeeded node of an earlier attempt recorded, kept as it was.
        self.restore = dict(restore or {})
        self.cache = cache  # runner.history.cache.Cache, or None
        self.remaining = {job_id: len(job.needs) for job_id, job in workflow.jobs.items()}
        self.cancelled = False
        self.cancel_reason = ""
        self.failure_reason = ""
        self._running: set[trio.CancelScope] = set()
        self._nursery: trio.Nursery | None = None
        self._hard: trio.CancelScope | None = None
        self._children: list[Scheduler] = []
        self.limiter = limiter
        # One workspace for the whole run: a sub-workflow works in its caller's.
        self.workspace = workspace or Path(workflow.directory)
        self.prefix = prefix  # `report/` for the nodes of a sub-workflow run by the node `report`

    def child(self, workflow: Workflow, node_id: str, inputs: Mapping[str, Any]) -> "Scheduler":
        """A scheduler for a sub-workflow run by the node `node_id`; it shares this one's limits."""
        child = Scheduler(
            workflow,
            run_id=self.run_id,
            inputs=inputs,
            secrets={name: self.secrets[name] for name in workflow.secrets},
            executors=self.executors,
            reporter=Prefixed(self.reporter, f"{node_id[len(self.prefix):]}/"),
            prefix=f"{node_id}/",
            run_dir=self.run_dir,
            concurrency=self.concurrency,
            masker=self.masker,
            limiter=self.limiter,
            workspace=self.workspace,
            cache=self.cache,
        )
        self._children.append(child)
        if self.cancelled:
            child.cancel_run(self.cancel_reason)
        return child

    # -- the run ---------------------------------------------------------

    async def run(self) -> RunOutcome:
        """Run every job and return the outcome.

        Cancellation from outside stops the run at once (as a second Ctrl-C
        does): running nodes are cancelled and their containers removed.
        """
        self.reporter.run_started(self.run_id, self.workflow.path, self.workflow.name)
        if self.limiter is None:
            self.limiter = trio.CapacityLimiter(self.concurrency)
        self.env = {}
        try:
            self.env = {k: to_text(v) for k, v in render_value(dict(self.workflow.env), self._base_scope()).items()}
        except TemplateError as e:
            self.failure_reason = f"env: {e}"
        async with trio.open_nursery() as outer:
            if self.workflow.timeout:
                outer.start_soon(self._run_deadline, self.workflow.timeout)
            with trio.CancelScope() as self._hard:
                if self.control is not None:
                    self.control.on_cancel(self.cancel_run)
                    self.control.stops(self._hard)
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if self.failure_reason:
                        self.cancel_run(self.failure_reason)
                    self._settle([job_id for job_id in self.workflow.order if self.remaining[job_id] == 0])
            outer.cancel_scope.cancel()
        return self._outcome()

    def cancel_run(self, reason: str) -> None:
        """Stop what runs; jobs not yet started run only if their `if` asks for it."""
        if not self.cancelled:
            self.cancelled = True
            self.cancel_reason = reason
        for scope in list(self._running):
            scope.cancel()
        for child in self._children:
            child.cancel_run(reason)

    async def _run_deadline(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.failure_reason = f"the run timed out after {format_duration(seconds)}"
        self.cancel_run(self.failure_reason)

    # -- deciding what runs ----------------------------------------------

    def _settle(self, ready: list[str]) -> None:
        """Start ready jobs; those that finish at once (skipped, value) release their dependents."""
        queue = deque(ready)
        while queue:
            job_id = queue.popleft()
            if not self._start(self.workflow.jobs[job_id]):
                continue
            for dependent in self.workflow.dependents[job_id]:
                self.remaining[dependent] -= 1
                if self.remaining[dependent] == 0:
                    queue.append(dependent)

    def _job_done(self, job_id: str) -> None:
        record = self.jobs[job_id]
        if not record.state.finished:  # stopped from outside, mid-run
            self.state.transition(record, NodeState.CANCELLED, reason=self.cancel_reason or "cancelled")
        self._settled(record)
        ready = []
        for dependent in self.workflow.dependents[job_id]:
            self.remaining[dependent] -= 1
            if self.remaining[dependent] == 0:
                ready.append(dependent)
        self._settle(ready)

    def _settled(self, record: NodeRecord) -> None:
        """A job's result is final: publish it to expressions, and honour fail_fast."""
        self.jobs_scope[record.id] = {"outputs": record.outputs, "result": record.result.value}
        if record.state is NodeState.FAILED and not record.continue_on_error:
            if self.workflow.fail_fast and not self.cancelled:
                self.cancel_run(f"cancelled because `{record.id}` failed and fail_fast is on")

    def _start(self, job: Job) -> bool:
        """Decide whether `job` runs; True if it is already finished on return."""
        record = self.jobs[job.id] = self.state.add(NodeRecord(job.id, job.id))
        if job.id in self.restore:
            self._keep(job, record, self.restore[job.id])
        elif (decided := self._decide(job))[0] is not None:
            self.state.transition(record, decided[0], reason=decided[1])
        elif job.kind is JobKind.VALUE and job.matrix is None and job.repeat is None:
            self._finish_value(job, record)
        else:
            self._nursery.start_soon(self._run_job, job, record, name=job.id)
            return False
        self._settled(record)
        return True

    def _keep(self, job: Job, record: NodeRecord, kept: dict) -> None:
        """Resume: a node that succeeded in an earlier attempt keeps its outputs and is not run."""
        if kept.get("instances"):
            nodes = [self.state.add(NodeRecord(i["node"], job.id, i["matrix"])) for i in kept["instances"]]
            self.instances[job.id] = [n.id for n in nodes]
            for node, instance in zip(nodes, kept["instances"]):
                self._kept(node, instance)
        self._kept(record, kept)

    def _kept(self, record: NodeRecord, kept: dict) -> None:
        self.state.transition(
            record, NodeState.SUCCEEDED, outputs=kept["outputs"], attempts=kept["attempts"],
            children=kept.get("children"), kept_from=kept["run_attempt"],
            reason=f"kept from attempt {kept['run_attempt']}",
        )

    def _decide(self, job: Job) -> tuple[NodeState | None, str]:
        """None if the job runs, else the state it ends in instead, and why."""
        needs = [self.jobs[n] for n in job.needs]
        if job.condition is None or not _mentions(job.condition, CONDITION_FUNCTIONS):
            # Without a status function, `if` holds only after every need succeeded.
            if self.cancelled:
                return NodeState.CANCELLED, self.cancel_reason
            for need in needs:
                if need.state is not NodeState.SUCCEEDED and not need.tolerated:
                    verb = {NodeState.FAILED: "failed", NodeState.SKIPPED: "was skipped"}.get(need.state, "was cancelled")
                    return NodeState.SKIPPED, f"needs {need.id} {verb}"
            if job.condition is None:
                return None, ""
        scope = self._base_scope()
        scope.update(self._status_functions(needs))
        try:
            holds = job.condition.render(scope)
        except TemplateError as e:
            return NodeState.FAILED, f"if: {e}"
        if holds:
            return None, ""
        if self.cancelled and not _mentions(job.condition, ("always", "cancelled")):
            return NodeState.CANCELLED, self.cancel_reason
        return NodeState.SKIPPED, "if was false"

    def _status_functions(self, needs: list[NodeRecord]) -> dict[str, Any]:
        failed = any(n.state is NodeState.FAILED and not n.tolerated for n in needs)
        succeeded = all(n.state is NodeState.SUCCEEDED or n.tolerated for n in needs)
        return {
            "success": lambda: succeeded and not self.cancelled,
            "failure": lambda: failed,
            "always": lambda: True,
            "cancelled": lambda: self.cancelled,
        }

    # -- running ---------------------------------------------------------

    def _base_scope(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "secrets": self.secrets,
            "jobs": self.jobs_scope,
            "run": {"id": self.run_id, "attempt": 1},
            "env": getattr(self, "env", {}),
            "matrix": {},
        }

    def _finish_value(self, job: Job, record: NodeRecord) -> None:
        self.state.transition(record, NodeState.RUNNING)
        scope = self._base_scope()
        try:
            outputs = render_value(dict(job.outputs), scope)
            self._taint(job, outputs)
        except TemplateError as e:
            self.state.transition(record, NodeState.FAILED, reason=f"outputs: {e}", attempts=1)
            return
        self.state.transition(record, NodeState.SUCCEEDED, outputs=outputs, attempts=1)

    async def _run_job(self, job: Job, record: NodeRecord) -> None:
        try:
            if job.matrix is None:
                await self._run_node(job, record, None)
            else:
                await self._run_matrix(job, record)
        finally:
            self._job_done(job.id)

    async def _run_matrix(self, job: Job, record: NodeRecord) -> None:
        try:
            matrix = render_value(job.matrix, self._base_scope())
            if not isinstance(matrix, dict):
                raise MatrixError("`matrix` must be a mapping of axes")
            combos = expand(matrix)
        except (TemplateError, MatrixError) as e:
            self.state.transition(record, NodeState.FAILED, reason=f"matrix: {e}")
            return
        if not combos:
            self.state.transition(record, NodeState.SKIPPED, reason="matrix is empty", outputs=[])
            return
        self.state.transition(record, NodeState.RUNNING)
        limiter = trio.CapacityLimiter(int(matrix.get("max_parallel") or len(combos)))
        fail_fast = bool(matrix.get("fail_fast", True))
        nodes = [self.state.add(NodeRecord(label(job.id, values), job.id, values)) for values in combos]
        self.instances[job.id] = [n.id for n in nodes]
        with trio.CancelScope() as siblings:

            async def instance(node: NodeRecord) -> None:
                async with limiter:
                    await self._run_node(job, node, node.matrix)
                if fail_fast and node.state is NodeState.FAILED and not node.continue_on_error:
                    siblings.cancel()

            async with trio.open_nursery() as nursery:
                for node in nodes:
                    nursery.start_soon(instance, node, name=node.id)
        for node in nodes:
            if not node.state.finished:
                failed = next(n.id for n in nodes if n.state is NodeState.FAILED)
                self.state.transition(node, NodeState.CANCELLED, reason=f"cancelled because {failed} failed (matrix fail_fast)")
        failed = [n for n in nodes if n.state in (NodeState.FAILED, NodeState.CANCELLED)]
        tolerated = all(n.continue_on_error for n in failed if n.state is NodeState.FAILED)
        outputs = [n.outputs if n.state is NodeState.SUCCEEDED else None for n in nodes]
        attempts = max(n.attempts for n in nodes)
        record.usage = add_usage(*(n.usage for n in nodes))
        if not failed:
            self.state.transition(record, NodeState.SUCCEEDED, outputs=outputs, attempts=attempts)
        elif all(n.state is NodeState.CANCELLED for n in failed) and self.cancelled:
            self.state.transition(record, NodeState.CANCELLED, outputs=outputs, reason=self.cancel_reason)
        else:
            reason = f"{len(failed)} of {len(nodes)} instances failed: " + ", ".join(n.id for n in failed[:5])
            self.state.transition(
                record, NodeState.FAILED, outputs=outputs, reason=reason, attempts=attempts,
                continue_on_error=tolerated and any(n.state is NodeState.FAILED for n in failed),
            )

    async def _run_node(self, job: Job, record: NodeRecord, matrix: dict | None) -> None:
        """The lifecycle every node shares: limit, timeout, retry, repeat, outputs, result."""
        if record.id in self.restore:  # a matrix instance that succeeded in an earlier attempt
            self._kept(record, self.restore[record.id])
            return
        scope = self._base_scope()
        scope["matrix"] = matrix or {}
        try:
            job_env = {k: to_text(v) for k, v in render_value(dict(job.env), scope).items()}
            scope["env"] = {**self.env, **job_env}
            continue_on_error = bool(render_value(job.continue_on_error, scope))
            timeout = render_value(job.timeout, scope)
            timeout = parse_duration(timeout) if timeout is not None else None
        except (TemplateError, ValueError) as e:
            self.state.transition(record, NodeState.FAILED, reason=str(e))
            return
        key = None
        if self.cache is not None and job.cache is not None and not self.cancelled:
            key = await self.cache.key(job, scope, self.workspace)  # None if it cannot be computed
            hit = await self.cache.lookup(key, self.workspace) if key else None
            if hit is not None:
                self.state.transition(
                    record, NodeState.SUCCEEDED, outputs=hit.outputs, cached_from=hit.run_id,
                    continue_on_error=continue_on_error, reason=f"cached (from run {hit.run_id})",
                )
                return
        executor = self.executors.get(job.kind)
        # A sub-workflow holds no slot itself: its jobs take theirs from the same limiter.
        limited = executor is not None and job.kind is not JobKind.WORKFLOW
        async with self.limiter if limited else nullcontext():
            with trio.CancelScope() as cancel:
                if job.kind is not JobKind.WORKFLOW:  # a sub-workflow is cancelled through its scheduler
                    self._running.add(cancel)
                if self.cancelled and not _mentions(job.condition, ("always", "cancelled")):
                    cancel.cancel()
                try:
                    self.state.transition(record, NodeState.RUNNING, continue_on_error=continue_on_error)
                    state, changes = await self._attempts(job, record, scope, executor, timeout)
                    self.state.transition(record, state, **changes)
                    if key and state is NodeState.SUCCEEDED:
                        with trio.CancelScope(shield=True):
                            note = await self.cache.save(key, job, self.prefix + record.id, record.outputs, self.workspace)
                        if note:
                            self.reporter.log(record.id, "cache", "stderr", note)
                finally:
                    self._running.discard(cancel)
            if cancel.cancelled_caught and not record.state.finished:
                self.state.transition(record, NodeState.CANCELLED, reason=self.cancel_reason or "cancelled")

    async def _attempts(self, job, record, scope, executor, timeout) -> tuple[NodeState, dict]:
        retry = job.retry
        repeat = None
        if job.repeat is not None:
            try:
                repeat = {k: v if k == "until" else render_value(v, scope) for k, v in job.repeat.items()}
            except TemplateError as e:
                return NodeState.FAILED, {"reason": f"repeat: {e}"}
        passes = 0
        retrying = ""
        while True:
            record.attempts += 1
            if retrying:
                self.state.transition(record, NodeState.RUNNING, reason=retrying)
            scope["run"] = {"id": self.run_id, "attempt": record.attempts}
            if repeat is not None:
                scope["repeat"] = {"index": passes}
            outcome = await self._attempt(job, record, scope, executor, timeout)
            record.children = outcome.children
            record.usage = add_usage(record.usage, outcome.usage)  # every attempt and pass costs
            if outcome.result is Result.CANCELLED:
                return NodeState.CANCELLED, {"reason": outcome.reason, "outputs": outcome.outputs}
            if outcome.result is Result.SUCCESS:
                try:
                    outputs = {**outcome.outputs, **render_value(dict(job.outputs), {**scope, **outcome.scope})}
                    self._taint(job, outputs)
                except TemplateError as e:
                    return NodeState.FAILED, {"reason": f"outputs: {e}"}
                if repeat is None:
                    return NodeState.SUCCEEDED, {"outputs": outputs, "reason": outcome.reason}
                passes += 1
                done, reason = self._repeat_done(job, repeat, outputs, passes, scope)
                if done:
                    return (NodeState.FAILED if reason else NodeState.SUCCEEDED), {"outputs": outputs, "reason": reason}
                await trio.sleep(parse_duration(repeat.get("delay", 0)))
                continue
            if record.attempts >= retry.attempts or not _retries(retry, outcome):
                reason = outcome.reason
                if record.attempts > 1:
                    reason += f" (attempt {record.attempts} of {retry.attempts})"
                return NodeState.FAILED, {"reason": reason, "container": outcome.kept}
            if outcome.kept is not None:  # only the last attempt's container is kept
                await executor.discard(outcome.kept)
            delay = retry.delay * retry.backoff_factor ** (record.attempts - 1)
            delay = min(delay, retry.max_delay) if retry.max_delay is not None else delay
            if outcome.retry_after is not None:  # the server's Retry-After is the least wait
                if retry.max_delay is not None and outcome.retry_after > retry.max_delay:
                    wait, limit = format_duration(outcome.retry_after), format_duration(retry.max_delay)
                    why = f"not retried: the server asks to wait {wait}, more than retry.max_delay {limit}"
                    return NodeState.FAILED, {"reason": f"{outcome.reason} ({why})"}
                delay = max(delay, outcome.retry_after)
            await trio.sleep(delay)
            retrying = f"attempt {record.attempts} failed: {outcome.reason}"

    def _taint(self, job: Job, outputs: dict[str, Any]) -> None:
        """An output computed from a secret is masked like the secret, wherever it goes next."""
        if self.masker is None:
            return
        for name, value in job.outputs.items():
            if any(root == "secrets" for t in templates_in(value) for e in t.expressions for root, _ in e.refs):
                self.masker.add(to_text(outputs.get(name)))

    def _repeat_done(self, job, repeat, outputs, passes, scope) -> tuple[bool, str]:
        until = repeat.get("until")
        pass_scope = {**scope, "outputs": outputs, "repeat": {"index": passes - 1}}
        try:
            holds = until.render(pass_scope) if isinstance(until, Template) else bool(until)
        except TemplateError as e:
            return True, f"repeat.until: {e}"
        if holds:
            return True, ""
        limit = int(repeat.get("max", 10))
        if passes >= limit:
            return True, f"repeat limit ({limit}) reached without until becoming true"
        return False, ""

    async def _attempt(self, job, record, scope, executor, timeout) -> Outcome:
        if executor is None:
            return Outcome(Result.SUCCESS)
        node = NodeRun(
            job=job,
            node_id=self.prefix + record.id,
            scope=scope,
            env=dict(scope["env"]),
            log=lambda step, stream, line: self.reporter.log(record.id, step, stream, line),
            directory=self.run_dir / "nodes" / file_name(self.prefix + record.id),
            workspace=self.workspace,
        )
        with trio.move_on_after(timeout if timeout is not None else math.inf) as deadline:
            return await executor.run(node)
        return Outcome(Result.FAILURE, f"timed out after {format_duration(timeout)}", retryable=node.timeout_retryable)

    def _outcome(self) -> RunOutcome:
        for job_id, record in self.jobs.items():
            if not record.state.finished:
                self.state.transition(record, NodeState.CANCELLED, reason=self.cancel_reason or "cancelled")
        for job_id in self.workflow.order:
            if job_id not in self.jobs:
                record = self.jobs[job_id] = self.state.add(NodeRecord(job_id, job_id))
                self.state.transition(record, NodeState.CANCELLED, reason=self.cancel_reason or "cancelled")
        failed = [r for r in self.jobs.values() if r.state is NodeState.FAILED and not r.continue_on_error]
        reason = self.failure_reason
        if self.control is not None and self.control.cancelled:
            status = Result.CANCELLED
            reason = self.cancel_reason
        elif failed or self.failure_reason:
            status = Result.FAILURE
            reason = reason or f"{len(failed)} job{'s' if len(failed) != 1 else ''} failed: " + ", ".join(
                r.id for r in failed[:5]
            )
        else:
            status = Result.SUCCESS
        outputs: dict[str, Any] = {}
        scope = self._base_scope()
        for name, value in self.workflow.outputs.items():
            try:
                outputs[name] = render_value(value, scope)
            except TemplateError as e:
                # After a failure, outputs of jobs that did not run are simply missing.
                outputs[name] = None
                if status is Result.SUCCESS:
                    status, reason = Result.FAILURE, f"outputs.{name}: {e}"
        outcome = RunOutcome(
            run_id=self.run_id,
            status=status,
            outputs=outputs,
            jobs=self.jobs,
            nodes=self.state.nodes,
            duration=time.monotonic() - self.state.started,
            reason=reason,
            signal=self.control.signal if self.control is not None else None,
            instances=self.instances,
            usage=add_usage(*(r.usage for r in self.jobs.values())),
        )
        self.reporter.run_finished(outcome.summary())
        return outcome


def _mentions(condition: Template | None, functions: tuple[str, ...]) -> bool:
    if condition is None:
        return False
    return any((name, None) in expr.refs for expr in condition.expressions for name in functions)


def _retries(retry, outcome: Outcome) -> bool:
    if outcome.retryable is not None:  # the executor knows (an http status, a method)
        return outcome.retryable
    if retry.on_exit_codes is None:
        return True
    return outcome.exit_code in retry.on_exit_codes
