"""Everything `runner run` does around the scheduler.

Inputs, secrets, the run's directory, the container engine and the reporters
are all settled before the first job starts; whatever cannot be is an error
with its own exit status, and nothing has run.
"""

from __future__ import annotations

import json
import os
import secrets as random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Problem, RunNotPossible, WorkflowInvalid
from .masking import Masker
from .model import JobKind, Workflow
from .reporting import Masking, Reporter, Reporters
from .reporting.files import EventLog, StepLogs


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
    handle_signals: bool = True


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + random.token_hex(3)


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


def state_directory(workflow: Workflow, option: str | None) -> Path:
    return Path(option or os.environ.get("RUNNER_STATE_DIR") or Path(workflow.directory) / ".runner")


def make_run_dir(state_dir: Path, run_id: str) -> Path:
    run_dir = state_dir / "runs" / run_id
    try:
        run_dir.mkdir(parents=True)
        ignore = state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")
    except OSError as e:
        raise RunNotPossible(f"cannot write the state directory {state_dir}: {e.strerror}") from None
    return run_dir


def execute(workflow: Workflow, options: RunOptions):
    """Run a compiled workflow to the end and return its RunOutcome."""
    import trio

    from .inputs import resolve
    from .scheduler import Scheduler

    inputs = resolve(workflow, options.inputs, options.inputs_source)
    secret_values = read_secrets(workflow)
    masker = Masker(list(secret_values.values()))
    executors: dict[JobKind, Any] = {}
    run_id = new_run_id()
    needs_docker = any(job.kind is JobKind.CONTAINER for w in workflow.workflows() for job in w.jobs.values())
    if needs_docker:
        executors[JobKind.CONTAINER] = _container_executor(workflow, options, run_id)
    if any(job.kind in (JobKind.HTTP, JobKind.LLM) for w in workflow.workflows() for job in w.jobs.values()):
        executors.update(_http_executors(secret_values))
    run_dir = make_run_dir(state_directory(workflow, options.state_dir), run_id)
    if needs_docker:
        # Both are mounted into job containers: the engine must be able to reach them.
        for path in (workflow.directory, str(run_dir)):
            executors[JobKind.CONTAINER].backend.host_path(os.path.abspath(path))
    reporters: list[Reporter] = [*options.reporters, StepLogs(run_dir / "logs")]
    if options.events:
        try:
            reporters.append(EventLog(options.events))
        except OSError as e:
            raise RunNotPossible(f"cannot write the events file {options.events}: {e.strerror}") from None
    reporter = Masking(Reporters(reporters), masker)
    scheduler = Scheduler(
        workflow,
        run_id=run_id,
        inputs=inputs,
        secrets=secret_values,
        executors=executors,
        reporter=reporter,
        run_dir=run_dir,
        concurrency=options.concurrency,
        handle_signals=options.handle_signals,
    )

    async def run_and_close():
        try:
            return await scheduler.run()
        finally:
            with trio.CancelScope(shield=True):
                for executor in executors.values():
                    if hasattr(executor, "aclose"):
                        await executor.aclose()  # what an executor keeps for the run: the HTTP client

    try:
        outcome = trio.run(run_and_close)
    finally:
        reporter.close()
    if options.output_json:
        _write_json(options.output_json, masker.value(outcome.summary()))
    return outcome


def _write_json(path: str, document: dict) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2, default=str)
            f.write("\n")
    except OSError as e:
        raise RunNotPossible(f"cannot write {path}: {e.strerror}") from None


def _http_executors(secret_values: dict[str, str]) -> dict[JobKind, Any]:
    """http and llm jobs share one session: the run's HTTP client and the secrets to mask."""
    from .executors.http import HttpExecutor, Session
    from .executors.llm import LlmExecutor

    session = Session(secret_values.values())
    return {JobKind.HTTP: HttpExecutor(session), JobKind.LLM: LlmExecutor(session)}


def _container_executor(workflow: Workflow, options: RunOptions, run_id: str):
    from .executors.container import ContainerExecutor
    from .executors.docker import DockerBackend, connect

    threads = 2 * (options.concurrency or workflow.concurrency or os.cpu_count() or 1) + 8
    backend = DockerBackend(connect(threads), threads)
    backend.reap()
    executor = ContainerExecutor(backend, run_id, options.image_map)
    _check_images(workflow, backend, executor)
    return executor


def _check_images(workflow: Workflow, backend, executor) -> None:
    """Every image named in the file is there (or can be pulled) before anything runs."""
    import trio

    from .executors.container import BackendError

    missing: list[str] = []

    async def check_all():
        async def check(image: str):
            try:
                await backend.ensure_image(executor.image_for(image))
            except BackendError as e:
                jobs = [
                    f"{w.path}: {j.id}" if w is not workflow else j.id
                    for w in workflow.workflows()
                    for j in w.jobs.values()
                    if j.container and j.container.image == image
                ]
                missing.append(f"{e} (used by {', '.join(jobs)})")

        async with trio.open_nursery() as nursery:
            for image in sorted(workflow.images()):
                nursery.start_soon(check, image)

    trio.run(check_all)
    if missing:
        raise RunNotPossible("\n".join(missing))
