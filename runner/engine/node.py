"""One node's lifecycle, the same for every kind of job.

Condition aside (the plan decides whether a job runs), everything around an
executor's action is here: env, continue_on_error and timeout rendered where
they are used, the cache, the concurrency slot, attempts, retry, repeat,
timeout, outputs, and every state transition.  A matrix job runs one such
node per combination.  Executors only do what differs by kind.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from functools import partial
from typing import Any, Callable, Mapping

import trio

from runner.engine.control import Gate
from runner.engine.plan import Cancellation, mentions
from runner.engine.state import RunState
from runner.executors import Executor, NodeFailed, NodeRun, Outcome
from runner.model.results import add_usage
from runner.expr.matrix import MatrixError, expand, labels
from runner.expr.templates import Template, TemplateError, ever_read, render_value, templates_in, to_text
from runner.masking import Masker
from runner.model import fields
from runner.model.durations import format_duration
from runner.model.fields import FieldError
from runner.model.results import NodeRecord, NodeState, Result, file_name
from runner.model.workflow import Job, JobKind
from runner.report import Reporter


@dataclass
class Lifecycle:
    """What every node of one workflow's run shares, and the lifecycle they go through."""

    run_id: str
    inputs: Mapping[str, Any]
    secrets: Mapping[str, str]
    jobs: dict[str, dict[str, Any]]  # finished jobs as expressions see them (the plan's)
    state: RunState
    reporter: Reporter
    executors: Mapping[JobKind, Executor]
    run_dir: Path
    workspace: Path  # one for the whole run: a sub-workflow works in its caller's
    prefix: str  # `report/` for the nodes of a sub-workflow run by the node `report`
    limiter: trio.CapacityLimiter
    cancellation: Cancellation
    restore: Mapping[str, dict] = field(default_factory=dict)  # resume: node id → what it recorded
    cache: Any = None  # runner.history.cache.Cache, or None
    masker: Masker | None = None
    env: dict[str, str] = field(default_factory=dict)  # the workflow's, rendered
    instances: dict[str, list[str]] = field(default_factory=dict)  # matrix job → its nodes' ids
    git: Mapping[str, str | None] = field(default_factory=dict)  # the workspace's checkout (engine/workspace.py)
    # When the run is traced: the traceparent of (node id, attempt, step label or None)'s span (report/traceids.py).
    traceparent: Callable[[str, int, str | None], str] | None = None
    _secret_outputs: dict[int, list[str]] = field(default_factory=dict, init=False, repr=False)  # by id(job)
    gate: Gate = field(default_factory=Gate)  # closed while the run is paused

    def keep(self, job: Job, record: NodeRecord, kept: dict) -> None:
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

    def scope(self) -> dict[str, Any]:
        """What templates of this run may refer to, before a node adds its own (matrix, env, attempt)."""
        return {
            "inputs": self.inputs,
            "secrets": self.secrets,
            "jobs": self.jobs,
            "run": {"id": self.run_id, "attempt": 1},
            "git": self.git,
            "env": self.env,
            "matrix": {},
        }

    def _begin(self, job: Job, record: NodeRecord, matrix: dict | None) -> tuple[dict, bool, float | None] | None:
        """A node's scope and settings, or None when it is already settled (kept from an earlier attempt, or failed
        because a setting renders to an invalid value)."""
        if record.id in self.restore:  # a matrix instance that succeeded in an earlier attempt
            self._kept(record, self.restore[record.id])
            return None
        scope = self.scope()
        scope["matrix"] = matrix or {}
        try:
            continue_on_error, timeout = self._settings(job, scope)
        except FieldError as e:
            self.state.transition(record, NodeState.FAILED, reason=str(e))
            return None
        return scope, continue_on_error, timeout

    def value(self, job: Job, record: NodeRecord, matrix: dict | None = None) -> None:
        """A value job without repeat, or an instance of its matrix: its outputs, evaluated at once."""
        begun = self._begin(job, record, matrix)
        if begun is None:
            return
        scope, continue_on_error, _ = begun
        self.state.transition(record, NodeState.RUNNING, continue_on_error=continue_on_error)
        try:
            outputs = render_value(job.outputs, scope)
            self._taint(job, outputs)
        except TemplateError as e:
            self.state.transition(record, NodeState.FAILED, reason=fields.failed(job.outputs, e, "outputs"), attempts=1)
            return
        self.state.transition(record, NodeState.SUCCEEDED, outputs=outputs, attempts=1)

    def _settings(self, job: Job, scope: dict[str, Any]) -> tuple[bool, float | None]:
        """The job's env (added to `scope`), continue_on_error and timeout; FieldError."""
        scope["env"] = {**self.env, **fields.text_mapping(job.env, scope, "env")} if job.env else dict(self.env)
        continue_on_error = job.continue_on_error
        if not isinstance(continue_on_error, bool):  # a template
            continue_on_error = fields.truth(continue_on_error, scope, "continue_on_error")
        return continue_on_error, fields.duration(job.timeout, scope) if job.timeout is not None else None

    async def run(self, job: Job, record: NodeRecord) -> None:
        """Run a job that its plan lets start, to its final state (unless cancelled from outside)."""
        if job.matrix is None:
            await self._run_node(job, record, None)
        else:
            await self._run_matrix(job, record)

    async def _run_matrix(self, job: Job, record: NodeRecord) -> None:
        try:
            matrix = render_value(job.matrix, self.scope())
            if not isinstance(matrix, dict):
                raise MatrixError("`matrix` must be a mapping of axes")
            combos = expand(matrix)
        except TemplateError as e:
            self.state.transition(record, NodeState.FAILED, reason=fields.failed(job.matrix, e, "matrix"))
            return
        except MatrixError as e:
            written = job.matrix
            if isinstance(written, Mapping) and e.key in written:
                written = written[e.key]
            self.state.transition(record, NodeState.FAILED, reason=fields.located(written, f"matrix: {e}"))
            return
        if not combos:
            self.state.transition(record, NodeState.SKIPPED, reason="matrix is empty", outputs=[])
            return
        # Written in the matrix, the field's location goes with its value.
        written = job.matrix if isinstance(job.matrix, Mapping) else matrix
        try:
            limit = fields.count(written.get("max_parallel"), self.scope(), "matrix.max_parallel")
        except FieldError as e:
            self.state.transition(record, NodeState.FAILED, reason=str(e))
            return
        limiter = trio.CapacityLimiter(limit or len(combos))
        self.state.transition(record, NodeState.RUNNING)
        fail_fast = bool(matrix.get("fail_fast", True))
        names = labels(job.id, combos, self.masker)
        nodes = [self.state.add(NodeRecord(name, job.id, values)) for name, values in zip(names, combos)]
        self.instances[job.id] = [n.id for n in nodes]
        self.reporter.expanded(record.id, self.instances[job.id])
        if job.kind is JobKind.VALUE and job.repeat is None and limit is None:
            # Value instances await nothing: started as tasks, each would run to its end
            # at its first turn, every one of them whatever a sibling's result.
            for node in nodes:
                self.value(job, node, node.matrix)
        else:
            await self._run_instances(job, nodes, limiter, fail_fast)
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
        elif all(n.state is NodeState.CANCELLED for n in failed) and self.cancellation.cancelled:
            self.state.transition(record, NodeState.CANCELLED, outputs=outputs, reason=self.cancellation.reason)
        else:
            broken = [n for n in failed if n.state is NodeState.FAILED]
            cancelled = len(failed) - len(broken)
            reason = f"{len(broken)} of {len(nodes)} instances failed" + (f", {cancelled} cancelled" if cancelled else "")
            reason += ": " + ", ".join(n.id for n in (broken or failed)[:5])
            self.state.transition(
                record, NodeState.FAILED, outputs=outputs, reason=reason, attempts=attempts,
                continue_on_error=tolerated and any(n.state is NodeState.FAILED for n in failed),
            )

    async def _run_instances(self, job: Job, nodes: list[NodeRecord], limiter: trio.CapacityLimiter, fail_fast: bool) -> None:
        with trio.CancelScope() as siblings:

            async def instance(node: NodeRecord) -> None:
                async with limiter:
                    await self._run_node(job, node, node.matrix)
                if fail_fast and node.state is NodeState.FAILED and not node.continue_on_error:
                    siblings.cancel()

            async with trio.open_nursery() as nursery:
                for node in nodes:
                    nursery.start_soon(instance, node, name=node.id)

    async def _run_node(self, job: Job, record: NodeRecord, matrix: dict | None) -> None:
        """The lifecycle every node shares: limit, timeout, retry, repeat, outputs, result."""
        begun = self._begin(job, record, matrix)
        if begun is None:
            return
        scope, continue_on_error, timeout = begun
        key = None
        if self.cache is not None and job.cache is not None and not self.cancellation.cancelled:
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
            await self.gate.wait()
            with trio.CancelScope() as cancel:
                if job.kind is not JobKind.WORKFLOW:  # a sub-workflow is cancelled through its scheduler
                    self.cancellation.running.add(cancel)
                if self.cancellation.cancelled and not mentions(job.condition, ("always", "cancelled")):
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
                    self.cancellation.running.discard(cancel)
            if cancel.cancelled_caught and not record.state.finished:
                self.state.transition(record, NodeState.CANCELLED, reason=self.cancellation.reason or "cancelled")

    async def _attempts(self, job, record, scope, executor, timeout) -> tuple[NodeState, dict]:
        repeat = None
        try:
            retry = fields.retry(job.retry, scope)
            if job.repeat is not None:
                repeat = {
                    "until": job.repeat.get("until"),
                    "delay": fields.duration(job.repeat.get("delay", 0), scope, "repeat.delay", zero=True),
                    "max": fields.count(job.repeat.get("max", 10), scope, "repeat.max"),
                }
        except FieldError as e:
            return NodeState.FAILED, {"reason": str(e)}
        passes = 0
        retrying = ""
        while True:
            record.attempts += 1
            if retrying:
                self.state.transition(record, NodeState.RUNNING, reason=retrying)
            scope["run"] = {"id": self.run_id, "attempt": record.attempts}
            if repeat is not None:
                scope["repeat"] = {"index": passes}
            outcome = await self._attempt(job, record, scope, executor, timeout, retry)
            record.children = outcome.children
            record.usage = add_usage(record.usage, outcome.usage)  # every attempt and pass costs
            if outcome.result is Result.CANCELLED:
                return NodeState.CANCELLED, {"reason": outcome.reason, "outputs": outcome.outputs}
            if outcome.result is Result.SUCCESS:
                try:
                    outputs = {**outcome.outputs, **render_value(dict(job.outputs), {**scope, **outcome.scope})}
                    self._taint(job, outputs)
                except TemplateError as e:
                    return NodeState.FAILED, {"reason": fields.failed(job.outputs, e, "outputs")}
                if repeat is None:
                    return NodeState.SUCCEEDED, {"outputs": outputs, "reason": outcome.reason}
                passes += 1
                done, reason = self._repeat_done(job, repeat, outputs, passes, scope)
                if done:
                    return (NodeState.FAILED if reason else NodeState.SUCCEEDED), {"outputs": outputs, "reason": reason}
                await trio.sleep(repeat["delay"])
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
        if self.masker is None or not ever_read("secrets"):  # no expression reads a secret
            return
        names = self._secret_outputs.get(id(job))
        if names is None:  # the same for every node of the job: a matrix has thousands
            names = self._secret_outputs[id(job)] = [
                name for name, value in job.outputs.items()
                if any(root == "secrets" for t in templates_in(value) for e in t.expressions for root, _ in e.refs)
            ]
        for name in names:
            self.masker.add(to_text(outputs.get(name)))

    def _repeat_done(self, job, repeat, outputs, passes, scope) -> tuple[bool, str]:
        until = repeat["until"]
        pass_scope = {**scope, "outputs": outputs, "repeat": {"index": passes - 1}}
        try:
            holds = until.render(pass_scope) if isinstance(until, Template) else bool(until)
        except TemplateError as e:
            return True, f"repeat.until: {e}"
        if holds:
            return True, ""
        limit = repeat["max"]
        if passes >= limit:
            return True, f"repeat limit ({limit}) reached without until becoming true"
        return False, ""

    async def _attempt(self, job, record, scope, executor, timeout, retry) -> Outcome:
        if executor is None:
            return Outcome(Result.SUCCESS)
        node_id = self.prefix + record.id
        reporter = self.reporter
        traceparent = partial(self.traceparent, node_id, record.attempts) if self.traceparent else None
        node = NodeRun(
            job=job,
            retry=retry,
            node_id=node_id,
            scope=scope,
            env={**scope["env"], "TRACEPARENT": traceparent(None)} if traceparent else dict(scope["env"]),
            log=lambda step, stream, line: reporter.log(record.id, step, stream, line),
            summary=lambda text: reporter.summary(record.id, text),
            step_started=lambda step: reporter.step_started(record.id, step),
            step_finished=lambda step, result, exit_code: reporter.step_finished(record.id, step, result, exit_code),
            traceparent=traceparent,
            directory=self.run_dir / "nodes" / file_name(node_id),
            workspace=self.workspace,
        )
        with trio.move_on_after(timeout if timeout is not None else math.inf):
            try:
                return await executor.run(node)
            except NodeFailed as e:
                return Outcome(Result.FAILURE, str(e))
        return Outcome(Result.FAILURE, f"timed out after {format_duration(timeout)}", retryable=node.timeout_retryable)


def _retries(retry, outcome: Outcome) -> bool:
    if outcome.retryable is not None:  # the executor knows (an http status, a method)
        return outcome.retryable
    if retry.on_exit_codes is None:
        return True
    return outcome.exit_code in retry.on_exit_codes
