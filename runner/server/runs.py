"""The runs a server carries out: started, queued for a free slot, cancelled, paused, resumed.

Each run is `run_workflow` in a task of the server's own trio loop, with a
`RunControl` the API acts through, recorded in the same store as the CLI's runs.
A run is answered for once it has begun (its `run.started` is recorded), so
that everything the API then says about it comes from the store.
"""

from __future__ import annotations

import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import trio

from runner.engine.control import RunControl
from runner.errors import Problem, RunnerError, WorkflowInvalid
from runner.model.results import RunOutcome, RunStatus
from runner.model.workflow import Workflow
from runner.report.events import RUN_STARTED
from runner.server.stream import Feed


UNRECORDED_KEPT = 1000  # runs that ended before they were recorded, still answered for (the newest)


@dataclass
class Live:
    """A run this server has accepted and not yet finished."""

    run_id: str
    workflow: str  # the file's absolute path
    registered: str | None = None  # its name in the server's registry
    control: RunControl = field(default_factory=RunControl)
    feed: Feed = field(default_factory=Feed)
    status: RunStatus = RunStatus.QUEUED
    submitted: float = field(default_factory=time.time)
    begun: trio.Event = field(default_factory=trio.Event)  # recorded in the store, or ended before it could be
    done: trio.Event = field(default_factory=trio.Event)
    outcome: RunOutcome | None = None
    error: RunnerError | None = None  # why it could not be carried out (nothing recorded)


class Runs:
    def __init__(self, store, nursery: trio.Nursery, concurrency: int | None, backend: str,
                 image_map: dict[str, str] | None = None):
        self.store = store
        self.nursery = nursery
        self.slots = trio.Semaphore(concurrency) if concurrency else None
        self.backend = backend
        self.image_map = image_map or {}  # serve's --image-map, for every run
        self.live: dict[str, Live] = {}
        self.unrecorded: dict[str, Live] = {}  # runs that ended before the store knew them (cancelled while queued, …)
        self.feeds: dict[str, Feed] = {}
        self.closing = False

    def start(self, workflow: Workflow, options, registered: str | None) -> Live:
        """Start (or queue) a run; `options` are its RunOptions, without control or store."""
        import os

        from runner.engine.run import new_run_id

        run_id = options.resume.run_id if options.resume is not None else new_run_id()
        live = Live(run_id, os.path.abspath(workflow.path), registered)
        options.run_id, options.control, options.store = run_id, live.control, self.store
        options.backend = self.backend
        options.image_map = {**self.image_map, **options.image_map}
        options.on_event = lambda seq, kind, data: self._event(live, seq, kind, data)
        self.live[run_id] = live
        self.feeds[run_id] = live.feed
        self.nursery.start_soon(self._run, live, workflow, options, name=f"run {run_id}")
        return live

    def _event(self, live: Live, seq: int, kind: str, data: str) -> None:
        live.feed.add(seq, kind, data)
        if kind == RUN_STARTED:
            live.status = RunStatus.RUNNING
            live.begun.set()

    async def _run(self, live: Live, workflow: Workflow, options) -> None:
        from runner.engine.run import run_workflow

        try:
            async with self.slots if self.slots is not None else nullcontext():
                if live.control.cancelled:
                    live.error = RunnerError(f"cancelled before it started: {live.control.reason}")
                    return
                live.status = RunStatus.RUNNING
                live.outcome = await run_workflow(workflow, options)
        except RunnerError as e:
            live.error = e
        except Exception as e:  # a bug: the server goes on, the run ends
            print(f"runner: internal error in run {live.run_id}: {e!r}", file=sys.stderr)
            traceback.print_exc()
            live.error = RunnerError(f"internal error: {type(e).__name__}")
        finally:
            if live.error is not None and not live.begun.is_set():
                self.unrecorded[live.run_id] = live
                while len(self.unrecorded) > UNRECORDED_KEPT:
                    del self.unrecorded[next(iter(self.unrecorded))]
            del self.live[live.run_id]
            del self.feeds[live.run_id]
            live.feed.end()
            live.begun.set()
            live.done.set()

    def get(self, run_id: str) -> Live | None:
        return self.live.get(run_id)

    def queued(self) -> list[Live]:
        return [live for live in self.live.values() if not live.begun.is_set()]

    def cancel_all(self, reason: str, signal: int | None) -> None:
        self.closing = True
        for live in list(self.live.values()):
            live.control.cancel(reason, signal)

    def stop_all(self) -> None:
        for live in list(self.live.values()):
            live.control.stop()

    async def wait_all(self) -> None:
        for live in list(self.live.values()):
            await live.done.wait()


def not_possible(error: RunnerError) -> list[Problem]:
    """A run's error as located problems (a workflow's), or none (another error: its message is the detail)."""
    return list(error.problems) if isinstance(error, WorkflowInvalid) else []


def now_document(live: Live) -> dict[str, Any]:
    """What the API says of a run the store does not know (yet): queued, or ended before it began."""
    document: dict[str, Any] = {"run_id": live.run_id, "status": live.status.value, "workflow": live.workflow,
                                "registered": live.registered, "started": None, "submitted": live.submitted,
                                "jobs": {}}
    if live.error is not None:
        document["status"] = RunStatus.FAILURE.value if not live.control.cancelled else RunStatus.CANCELLED.value
        document["reason"] = str(live.error)
    return document
