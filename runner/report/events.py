"""A run's events, numbered: what `GET /runs/{id}/events` streams, from the store or as they happen.

Every event gets the next sequence number of its run — across attempts, so
that a client resuming after event N misses nothing and sees nothing twice,
whichever process wrote them.  Events wait in `pending` until the recorder
writes them with its next batch (one transaction for both), the batch's events
as one row of lines: a 10,000-node run has 20,000 events, and rows cost far
more than lines.  `listener`, if given, hears each once it is written (a
server's live streams), so that a client never sees an event that a killed
server did not record: it would miss the event that takes its number when the
run is resumed.  `wake`, if set, is called at each new event, so that a
followed run is written promptly.  It sits behind `Masking`: what it sees is
masked already.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from json.encoder import encode_basestring as _text  # a JSON string, as dumps writes it

from runner.history.store import dumps
from runner.model.results import NodeState
from runner.report import Reporter

# The event types, as clients see them.
RUN_STARTED = "run.started"
RUN_PAUSED = "run.paused"
RUN_UNPAUSED = "run.unpaused"
RUN_FINISHED = "run.finished"
NODE_STARTED = "node.started"
NODE_FINISHED = "node.finished"
NODE_EXPANDED = "node.expanded"
NODE_LOG = "node.log"

_RESULTS = {state._value_: state.result.value for state in NodeState if state.finished}

Listener = Callable[[int, str, str], None]  # (seq, type, data as JSON text)


class Events(Reporter):
    def __init__(self, run_id: str, run_attempt: int, last: int, listener: Listener | None = None):
        self.run_id = run_id
        self.run_attempt = run_attempt
        self.seq = last  # the run's last recorded event
        self.listener = listener
        self.wake: Callable[[], None] | None = None
        self.pending: list[str] = []  # lines

    def take(self) -> list[tuple]:
        """The row of the events waiting to be written, if any (the recorder takes it into its batch)."""
        if not self.pending:
            return []
        lines, self.pending = self.pending, []
        last = self.seq
        return [(self.run_id, last - len(lines) + 1, last, self.run_attempt, "\n".join(lines))]

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        self._add(kind, dumps(data))

    def _add(self, kind: str, text: str) -> None:
        self.seq += 1
        self.pending.append(f"{self.seq}\t{time.time_ns() // 1_000_000}\t{kind}\t{text}")
        if self.wake is not None:
            self.wake()

    def written(self, rows: list[tuple]) -> None:
        """Rows `take` gave are in the store now: the listener hears their events."""
        if self.listener is not None:
            for row in rows:
                for line in row[4].split("\n"):
                    seq, _, kind, text = line.split("\t", 3)
                    self.listener(int(seq), kind, text)

    def run_started(self, run_id, workflow, name):
        self._emit(RUN_STARTED, {"run_id": run_id, "workflow": workflow, "name": name, "attempt": self.run_attempt})

    # A node's two events are written out by hand: a 10,000-node run has 20,000 of them
    # (and a state's `_value_` read, not the Python property `value`).
    def node_started(self, node):
        self._add(NODE_STARTED, f'{{"node":{_text(node.id)},"job":{_text(node.job_id)},"state":"{node.state._value_}",'
                                f'"attempts":{node.attempts}}}')

    def node_finished(self, node):
        cached = f',"cached_from":{_text(node.cached_from)}' if node.cached_from is not None else ""
        took = node.finished - node.started if node.started is not None and node.finished is not None else 0.0
        self._add(NODE_FINISHED, f'{{"node":{_text(node.id)},"job":{_text(node.job_id)},"state":"{node.state._value_}",'
                                 f'"result":"{_RESULTS[node.state._value_]}","reason":{_text(node.reason)},'
                                 f'"attempts":{node.attempts},"duration_s":{took:.3f}{cached}}}')

    def expanded(self, node_id, instances):
        self._emit(NODE_EXPANDED, {"node": node_id, "instances": instances})

    def log(self, node_id, step, stream, line):
        self._emit(NODE_LOG, {"node": node_id, "step": step, "stream": stream, "line": line})

    def run_paused(self):
        self._emit(RUN_PAUSED, {})

    def run_unpaused(self):
        self._emit(RUN_UNPAUSED, {})

    def finish(self, status: str, reason: str, outputs: Any, duration: float) -> None:
        """The attempt's end, however it ended (the run's code calls it, not the scheduler): the last event."""
        self._emit(RUN_FINISHED, {"status": status, "reason": reason, "outputs": outputs, "duration_s": round(duration, 3)})
