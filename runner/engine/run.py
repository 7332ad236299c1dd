"""Everything `runner run` does around the scheduler.

Inputs, secrets, the run's directory, the container engine and the reporters
are all settled before the first job starts; whatever cannot be is an error
with its own exit status, and nothing has run.  Then the run is recorded in
the state store (`store.py`): begun, every node transition as it happens
(`reporting/recorder.py`), and its end, whatever ends it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from runner.engine.control import RunControl
from runner.errors import Interrupted, Problem, RunNotPossible, WorkflowInvalid
from runner.masking import Masker
from runner.engine.plan import needed
from runner.model.workflow import Job, JobKind, Workflow
from runner.model.results import Result, RunOutcome
from runner.report import Masking, Reporter, Reporters
from runner.report import traceids
from runner.report.files import EventLog, StepLogs, StepSummaries

PROMPT_SECONDS = 0.002  # how long a followed run's new event waits for others to share its transaction


@dataclass
class RunOptions:
    inputs: dict[str, Any] = field(default_factory=dict)
    inputs_source: str = "--input"
    concurrency: int | None = None
    image_map: dict[str, str] = field(default_factory=dict)
    state_dir: str | None = None
    events: str | None = None
    output_json: str | None = None
    reporters: list[Reporter] = field(default_factory=list)
    control: RunControl | None = None  # how the caller cancels or stops the run from outside
    store: Any = None  # an open runner.history.store.Store (resume opens it first); else one is opened
    resume: Any = None  # runner.history.resume.ResumePlan: continue a recorded run
    only: Any = None  # runner.history.resume.OnlyPlan: the workflow is one job, with given values of others
    use_cache: bool = True  # False: --no-cache
    keep_on_failure: bool = False
    digest: str = ""  # the workflow's content hash, taken when it was loaded
    targets: list[str] = field(default_factory=list)  # --target: run these jobs and what they need; skip the rest
    backend: str = "docker"  # what runs container jobs: runner.backends.BACKENDS
    workspace: str | None = None  # --workspace; else the repository holding the workflow (engine/workspace.py)
    run_id: str | None = None  # the new run's id, chosen by the caller (a server answers with it first)
    on_event: Any = None  # runner.report.events.Listener: hears each of the run's numbered events as it happens


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(3).hex()


def read_secrets(workflow: Workflow, environ=os.environ) -> dict[str, str]:
    """Every secret the workflow and its sub-workflows declare, from the environment."""
    declared = {name: where for w in workflow.workflows() for name, where in w.secrets.items()}
    missing = [name for name in declared if name not in environ]
    if missing:
        raise WorkflowInvalid([
            Problem(declared[name], f"secret `{name}` is declared but not set in the environment", ("secrets",))
            for name in missing
        ])
    return {name: environ[name] for name in declared}


def state_directory(workflow: Workflow, option: str | None, workspace: str | Path | None = None) -> Path:
    """--state-dir, RUNNER_STATE_DIR, else the workspace's own outside it (`project_state_dir`).

    Its real path: a node's scratch directory in it is mounted into the node's
    container, and where it lies inside the workspace it is hidden from jobs.
    """
    from runner.engine.workspace import find_workspace
    from runner.history.store import project_state_dir

    chosen = option or os.environ.get("RUNNER_STATE_DIR")
    if chosen:
        return Path(chosen).resolve()
    return project_state_dir(workspace or find_workspace(workflow.directory)).resolve()


def make_run_dir(state_dir: Path, run_id: str, exist_ok: bool = False) -> Path:
    run_dir = state_dir / "runs" / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=exist_ok)
        ignore = state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")
    except OSError as e:
        raise RunNotPossible(f"cannot write the state directory {state_dir}: {e.strerror}") from None
    return run_dir


def private_directories(state_dir: Path, workspace: Path) -> tuple[Path, ...]:
    """What no job may read or write: runner's state. Where it lies in the workspace, jobs see an empty directory."""
    real = os.path.realpath(state_dir)
    if real == os.path.realpath(workspace):
        raise RunNotPossible(
            f"the state directory {state_dir} is the workspace, which jobs can write; "
            "name another with --state-dir, or leave it out"
        )
    return (Path(real),)


async def run_workflow(workflow: Workflow, options: RunOptions) -> RunOutcome:
    """Run a compiled workflow to the end in the caller's trio loop, recording it in the state store.

    Cancelling the call from outside stops the run at once (as `RunControl.stop` does);
    the run is then recorded as cancelled and the Cancelled exception goes on.
    """
    from runner.engine.workspace import find_workspace
    from runner.history.store import Store

    recorded = options.resume.options.get("workspace") if options.resume is not None else None
    workspace = find_workspace(workflow.directory, options.workspace or recorded)
    state_dir = (
        Path(options.store.directory).absolute() if options.store is not None
        else state_directory(workflow, options.state_dir, workspace)
    )
    store = options.store or Store(state_dir)
    try:
        return await _run(workflow, options, store, state_dir, workspace)
    except BaseExceptionGroup as group:
        raise _alone(group) from None  # a RunNotPossible leaves as itself, not inside a nursery's group
    finally:
        if options.store is None:
            store.close()


def _alone(error: BaseException) -> BaseException:
    """The one exception inside nested groups of one, or the group itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def _run(workflow: Workflow, options: RunOptions, store, state_dir: Path, workspace: Path) -> RunOutcome:
    from runner.engine.workspace import git_facts, uses_git
    from runner.model.inputs import resolve
    from runner.report.events import Events
    from runner.report.recorder import Recorder
    from runner.engine.scheduler import Scheduler
    from runner.model.results import RunStatus
    from runner.load.workflow import content_hash

    plan = options.resume
    scheduled = options.only.workflow if options.only is not None else workflow  # --only: one job
    inputs = resolve(workflow, plan.inputs if plan else options.inputs, options.inputs_source)
    secret_values = read_secrets(scheduled)
    masker = Masker(list(secret_values.values()))
    for name, value in secret_values.items():
        if value in masker.too_short:
            print(f"runner: warning: secret `{name}` is shorter than 4 characters and cannot be masked", file=sys.stderr)
    run_id = plan.run_id if plan else options.run_id or new_run_id()
    control = options.control or RunControl()
    private = private_directories(state_dir, workspace)
    async with _executors(scheduled, options, run_id, masker, secret_values, control, private) as executors:
        run_dir = make_run_dir(state_dir, run_id, exist_ok=plan is not None)
        if JobKind.CONTAINER in executors:
            # Both are mounted into job containers: the engine must be able to reach them.
            for path in (str(workspace), str(run_dir)):
                executors[JobKind.CONTAINER].backend.host_path(os.path.abspath(path))
            await executors[JobKind.CONTAINER].backend.check_storage(str(workspace), str(run_dir))
        masked_inputs = masker.value(inputs, numbers=True)
        attempt = store.begin_run(
            run_id,
            workflow=os.path.abspath(workflow.path),
            name=workflow.name,
            hash=options.digest or content_hash(workflow),
            inputs=masked_inputs,
            secret_inputs=[name for name in inputs if masked_inputs[name] != inputs[name]],
            options={
                "image_map": options.image_map,
                "concurrency": options.concurrency,
                "backend": options.backend,
                "workspace": str(workspace),
                **({"only": options.only.job} if options.only else {}),
                **({"targets": options.targets} if options.targets else {}),
            },
            command="resume" if plan else "only" if options.only else "run",
        )
        started = time.monotonic()
        status, reason, outputs = RunStatus.FAILURE, "runner stopped by an error", None
        events = Events(run_id, attempt, store.last_event(run_id), options.on_event)
        recorder = Recorder(store, run_id, attempt, masker, events)
        reporter: Reporter = Reporters([])
        try:
            cache = _cache(scheduled, store, run_id, secret_values, masker, executors, options)
            reporters: list[Reporter] = [*options.reporters, events]
            if executors or cache is not None:
                # Only executors' steps and the cache's notes write logs and summaries: a run of value
                # jobs has none, and its many nodes' events need not pass through these reporters.
                reporters += [StepLogs(run_dir / "logs", attempt, recorder.log_file), StepSummaries(run_dir / "summaries")]
            traced = traceids.enabled()
            if traced:  # OpenTelemetry is imported only here
                from runner.report.otel import Tracing

                container = executors.get(JobKind.CONTAINER)
                reporters.append(Tracing(scheduled, run_id, attempt, masker, container.image_for if container else None))
            if options.events:
                try:
                    reporters.append(EventLog(options.events))
                except OSError as e:
                    raise RunNotPossible(f"cannot write the events file {options.events}: {e.strerror}") from None
            # The recorder masks for itself: it must know which outputs held a secret.
            reporter = Reporters([Masking(Reporters(reporters), masker), recorder])
            scheduler = Scheduler.for_run(
                scheduled,
                run_id=run_id,
                inputs=inputs,
                secrets=secret_values,
                executors=executors,
                reporter=reporter,
                run_dir=run_dir,
                concurrency=options.concurrency,
                control=control,
                masker=masker,
                restore=plan.restore if plan else None,
                preset=options.only.preset if options.only else None,
                targets=options.targets,
                cache=cache,
                workspace=workspace,
                git=git_facts(workspace) if uses_git(scheduled) else None,
                traceparent=partial(traceids.traceparent, run_id, attempt) if traced else None,
            )
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(_keep_flushing, recorder, events)
                    outcome = await scheduler.run()
                    nursery.cancel_scope.cancel()
            except BaseException as e:
                stopped = (KeyboardInterrupt, trio.Cancelled)
                if isinstance(e, stopped) or isinstance(e, BaseExceptionGroup) and e.split(stopped)[1] is None:
                    status, reason = RunStatus.CANCELLED, "interrupted"
                raise
            status = {Result.FAILURE: RunStatus.FAILURE, Result.CANCELLED: RunStatus.CANCELLED}.get(
                outcome.status, RunStatus.SUCCESS
            )
            reason, outputs = masker.text(outcome.reason), masker.value(outcome.outputs, numbers=True)
        finally:
            reporter.close()
            events.finish(status.value, reason, outputs, time.monotonic() - started)
            recorder.close()  # everything written before the run's end is
            store.finish_run(run_id, attempt, status, reason, outputs, time.monotonic() - started)
    if options.output_json:
        _write_json(options.output_json, masker.value(outcome.summary()))
    return outcome


@asynccontextmanager
async def _executors(workflow: Workflow, options: RunOptions, run_id: str, masker: Masker,
                     secret_values: dict[str, str], control: RunControl, private: tuple[Path, ...]):
    """The executors the jobs the run may start need, with what they keep for the run, released at its end."""
    used = _used(workflow, needed(workflow, options.targets) if options.targets else None)
    executors: dict[JobKind, Any] = {}
    try:
        async with trio.open_nursery() as removals:  # a run ends once its containers are removed
            with trio.CancelScope() as setup:
                control.on_cancel(lambda reason: setup.cancel())
                control.stops(setup)
                if any(job.kind is JobKind.CONTAINER for _, job in used):
                    executors[JobKind.CONTAINER] = await _container_executor(
                        workflow, used, options, run_id, masker, removals, private
                    )
            if setup.cancelled_caught:
                raise Interrupted(control.signal)
            if any(job.kind in (JobKind.HTTP, JobKind.LLM) for _, job in used):
                executors.update(_http_executors(secret_values))
            yield executors
    finally:
        with trio.CancelScope(shield=True):
            for executor in executors.values():
                await executor.aclose()


def _used(workflow: Workflow, wanted: set[str] | None) -> list[tuple[Workflow, Job]]:
    """Every job the run may start, with its workflow: the wanted ones, and all of the workflows they use."""
    used = []
    for job in workflow.jobs.values():
        if wanted is None or job.id in wanted:
            used.append((workflow, job))
            if job.workflow is not None:
                used.extend((w, j) for w in job.workflow.workflows() for j in w.jobs.values())
    return used


async def _keep_flushing(recorder, events, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Write waiting transitions of a run whose nodes are busy, so that the store is never far behind.

    A run whose events someone follows (a server's) is written within milliseconds of each event,
    since they are shown once written; the events of one moment still share a transaction.
    """
    woken = trio.Event()

    def wake() -> None:
        woken.set()

    if events.listener is not None:
        events.wake = wake
    task_status.started()
    while True:
        with trio.move_on_after(0.1):
            await woken.wait()
            woken = trio.Event()
            await trio.sleep(PROMPT_SECONDS)
        if recorder.dirty:
            recorder.flush()


def _cache(workflow: Workflow, store, run_id: str, secret_values: dict[str, str], masker: Masker, executors: dict,
           options: RunOptions):
    """The run's cache, if any of its jobs asks for one."""
    if not any(job.cache is not None for w in workflow.workflows() for job in w.jobs.values()):
        return None
    from runner.history.cache import Cache

    container = executors.get(JobKind.CONTAINER)
    return Cache(
        store, run_id, secret_values, masker, read=options.use_cache,
        digest=container.image_digest if container is not None else None,
    )


def _write_json(path: str, document: dict) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2, default=str)
            f.write("\n")
    except OSError as e:
        raise RunNotPossible(f"cannot write {path}: {e.strerror}") from None


def _http_executors(secret_values: dict[str, str]) -> dict[JobKind, Any]:
    """http and llm jobs share one session: the run's HTTP client and the secrets to mask."""
    from runner.executors.http import HttpExecutor, Session
    from runner.executors.llm import LlmExecutor

    session = Session(secret_values.values())
    return {JobKind.HTTP: HttpExecutor(session), JobKind.LLM: LlmExecutor(session)}


async def _container_executor(workflow: Workflow, used: list, options: RunOptions, run_id: str, masker: Masker, removals,
                              private: tuple[Path, ...]):
    from runner.backends import open_backend
    from runner.executors.container import ContainerExecutor

    threads = 2 * (options.concurrency or workflow.concurrency or os.cpu_count() or 1) + 8
    backend = open_backend(options.backend, threads)
    for warning in backend.check(workflow):
        print(f"runner: {warning}", file=sys.stderr)
    backend.reap()
    if options.resume is not None:
        # The lock is ours, so whatever containers the run still has are leftovers of a runner
        # that was killed, or kept for debugging by an earlier attempt.
        backend.remove_run(run_id)
    executor = ContainerExecutor(
        backend, run_id, options.image_map, keep_on_failure=options.keep_on_failure, masker=masker, removals=removals,
        private=private,
    )
    await _check_images(workflow, used, backend, executor)
    return executor


async def _check_images(workflow: Workflow, used: list, backend, executor) -> None:
    """Every image named in the file that the run may use is there (or can be pulled) before anything runs."""
    from runner.backends.base import BackendError

    missing: list[str] = []

    async def check(image: str):
        try:
            await backend.ensure_image(executor.image_for(image))
        except BackendError as e:
            jobs = [f"{w.path}: {j.id}" if w is not workflow else j.id for w, j in used if j.container and image in j.container.images()]
            missing.append(f"{e} (used by {', '.join(jobs)})")

    async with trio.open_nursery() as nursery:
        # Images named by an expression are known only when their job runs.
        for image in sorted({image for _, j in used if j.container for image in j.container.images()}):
            nursery.start_soon(check, image)
    if missing:
        raise RunNotPossible("\n".join(missing))
