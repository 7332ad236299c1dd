"""Recording a run in the state store, from the events of `RunState.transition`.

Every node transition becomes an item of its batch's row of `transitions` (a
row costs far more than an item), and the node's row in `nodes` holds its latest
state; each step's log file becomes a row of `logs`, and its times a row of
`steps`.  They are written in batches — a transaction every FLUSH_SECONDS or
FLUSH_ROWS transitions, and whenever the engine's timer finds some waiting — so
that ten thousand value nodes do not cost ten thousand commits, and a batch is
all or nothing.  (A writer thread
was tried and measured: it gained nothing on the 10,000-node chain, and a busy
event loop starved it, since SQLite gives up and takes back the GIL at every row.)

The recorder sits beside `Masking`, not behind it: it masks outputs and
reasons itself, so that it knows when a node's outputs held a secret's value.
Such outputs are recorded masked and marked `secret`, and are never reused
(by `resume`, `--from-run` or the cache), since their real value is not kept.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from typing import TYPE_CHECKING, Any

from runner.history.store import dumps
from runner.model.results import RunStatus
from runner.report import Reporter

if TYPE_CHECKING:
    from runner.masking import Masker
    from runner.report.events import Events
    from runner.history.store import Store

FLUSH_SECONDS = 0.05
FLUSH_ROWS = 5000
_EMPTY = dumps({})


class Recorder(Reporter):
    def __init__(self, store: "Store", run_id: str, run_attempt: int, masker: "Masker", events: "Events | None" = None):
        self.store = store
        self.run_id = run_id
        self.run_attempt = run_attempt
        self.masker = masker
        self.events = events  # written with each batch
        self.seq = store.node_seqs(run_id)  # transitions each node has had, in earlier attempts too
        self.started: dict[str, float] = {}
        self.nodes: dict[str, tuple] = {}
        self.transitions: list[tuple] = []  # the batch's items (see the store's `transitions`)
        self.logs: list[tuple] = []
        self.steps: list[tuple] = []  # finished steps' rows
        self.attempt: dict[str, int] = {}  # node id → its current attempt, for its steps' rows
        self.open_steps: dict[tuple[str, str], float] = {}  # (node id, step) → when it started
        self.last_flush = time.monotonic()
        self.warned = False
        self.failed: list[tuple] = []  # batches not written yet (the database was busy or failing)

    def node_started(self, node):
        if self.open_steps:
            self._stop_steps(node.id)
        self.attempt[node.id] = node.attempts or 1  # counted from 1 once the first attempt runs
        self._transition(node)

    def node_finished(self, node):
        if self.open_steps:
            self._stop_steps(node.id)
        self._transition(node)

    def _stop_steps(self, node_id: str) -> None:
        """Steps whose attempt ended without them (cancelled, timed out): they end now, without a result."""
        for key in [k for k in self.open_steps if k[0] == node_id]:
            self._step(node_id, key[1], None, None)

    def step_started(self, node_id, step):
        self.open_steps[node_id, step] = time.time()

    def step_finished(self, node_id, step, result, exit_code):
        self._step(node_id, step, result.value, exit_code)

    def _step(self, node_id: str, step: str, result: str | None, exit_code: int | None) -> None:
        started = self.open_steps.pop((node_id, step), None)
        if started is not None:
            self.steps.append((self.run_id, node_id, self.run_attempt, self.attempt.get(node_id, 1), step, started,
                               time.time(), result, exit_code))

    def log_file(self, node_id: str, step: str, attempt: int, path: str) -> None:
        """A step's log file was opened (called by StepLogs); kept relative to the state directory."""
        path = os.path.relpath(os.path.abspath(path), os.path.abspath(self.store.directory))
        self.logs.append((self.run_id, node_id, step, self.run_attempt, attempt, path))

    def run_finished(self, summary: dict[str, Any]) -> None:
        self.flush()

    def run_paused(self) -> None:
        self.flush()
        self.store.set_status(self.run_id, RunStatus.PAUSED)

    def run_unpaused(self) -> None:
        self.flush()
        self.store.set_status(self.run_id, RunStatus.RUNNING)

    def close(self) -> None:
        """Write everything."""
        self.flush()
        if self.failed:
            self._write([])

    def _transition(self, node) -> None:
        # Only what the transition itself was is taken now; the node's row is built from
        # the record (which holds its latest state) when the batch is written.  A state's
        # `_value_` is read, not its `value`, a property in Python that costs four times as much.
        # The time is taken in whole microseconds: JSON writes an integer several times faster than a float.
        micros = time.time_ns() // 1000
        now = micros / 1e6
        node_id = node.id
        seq = self.seq[node_id] = self.seq.get(node_id, 0) + 1
        self.started.setdefault(node_id, now)
        self.nodes[node_id] = (node, seq, now)
        reason = node.reason
        if reason and self.masker.patterns:
            reason = self.masker.text(reason)
        self.transitions.append((node_id, seq, node.state._value_, micros, reason))
        if len(self.transitions) >= FLUSH_ROWS or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def _row(self, node, seq: int, now: float) -> tuple:
        # The masker's patterns are asked, not the masker (a Python call: a few for each row), since
        # most runs have no secret; they are asked each time, since secrets may be added as the run goes.
        # Flags are integers: a bool is bound through its adapter, a call each.
        masker = self.masker
        masking = masker.patterns
        outputs, children, secret = node.outputs, node.children, 0
        if node.state.finished:
            if masking and outputs:
                masked = masker.value(outputs, numbers=True)
                secret = 1 if masked != outputs else 0
                outputs = masked
            outputs = dumps(outputs) if outputs else _EMPTY
            children = dumps(masker.value(children)) if children is not None else None
            finished = now
        else:
            outputs, children, finished = _EMPTY, None, None
        reason = masker.text(node.reason) if masking else node.reason
        matrix = node.matrix
        if matrix is not None:
            matrix = dumps(masker.value(matrix, numbers=True) if masking else matrix)
        return (
            self.run_id, node.id, node.job_id, matrix,
            node.state._value_, outputs, secret, reason, node.attempts, self.started[node.id], finished,
            round(node.duration, 6), 1 if node.continue_on_error else 0, node.cached_from, node.kept_from,
            node.container, dumps(node.usage) if node.usage else None, children, self.run_attempt, seq,
        )

    @property
    def dirty(self) -> bool:
        return bool(self.nodes or self.transitions or self.logs or self.steps
                    or self.events is not None and self.events.pending)

    def flush(self) -> None:
        """Write what is waiting, as one transaction; if the store fails, keep it for the next try."""
        self.last_flush = time.monotonic()
        if not self.dirty:
            return
        events = self.events.take() if self.events is not None else []
        transitions = self.transitions and [
            (self.run_id, self.run_attempt, self.transitions[-1][3] / 1e6, dumps(self.transitions))]
        batch = ([self._row(*entry) for entry in self.nodes.values()], transitions, self.logs, self.steps, events)
        self.nodes, self.transitions, self.logs, self.steps = {}, [], [], []
        self._write([batch])

    def _write(self, batches: list[tuple]) -> None:
        pending = self.failed + batches
        while pending:
            try:
                self.store.record(*pending[0])
            except sqlite3.Error as e:
                if not self.warned:
                    self.warned = True
                    print(f"runner: cannot record the run in {self.store.path}: {e}; will retry", file=sys.stderr)
                break  # tried again with the next batch, and at the end
            if self.events is not None:
                self.events.written(pending[0][4])
            pending.pop(0)
        self.failed = pending
