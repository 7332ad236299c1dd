"""The state of a run: every node's record, changed in one place only.

`RunState.transition` is the single point where a node's state changes; it
stamps times and tells the reporter, so events, logs and the state store
(`report/recorder.py`) hook in here and nowhere else.
"""

from __future__ import annotations

import time
from typing import Any

from runner.model.results import NodeRecord, NodeState
from runner.report import Reporter


class RunState:
    def __init__(self, run_id: str, reporter: Reporter):
        self.run_id = run_id
        self.reporter = reporter
        self.nodes: dict[str, NodeRecord] = {}
        self.started = time.monotonic()

    def add(self, record: NodeRecord) -> NodeRecord:
        self.nodes[record.id] = record
        return record

    def transition(self, record: NodeRecord, state: NodeState, **changes: Any) -> None:
        """Move a node to `state`, setting any of its fields, and report it."""
        for name, value in changes.items():
            setattr(record, name, value)
        record.state = state
        now = time.monotonic()
        if state is NodeState.RUNNING:
            if record.started is None:
                record.started = now
            self.reporter.node_started(record)  # once per attempt
        elif state.finished:
            if record.started is None:
                record.started = now
            record.finished = now
            self.reporter.node_finished(record)
