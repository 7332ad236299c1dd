"""A run's state: every node change goes through one transition, which stamps times and tells the reporter."""

from __future__ import annotations

from runner.engine.state import RunState
from runner.model.results import NodeRecord, NodeState, Result
from runner.report import Reporter


class Seen(Reporter):
    def __init__(self):
        self.events = []

    def node_started(self, node):
        self.events.append(("started", node.id, node.state))

    def node_finished(self, node):
        self.events.append(("finished", node.id, node.result, node.reason))


def test_a_node_is_reported_at_each_attempt_and_once_finished():
    seen = Seen()
    state = RunState("r", seen)
    node = state.add(NodeRecord("build", "build"))
    assert state.nodes == {"build": node} and node.state is NodeState.PENDING
    state.transition(node, NodeState.RUNNING)
    started = node.started
    state.transition(node, NodeState.RUNNING, reason="attempt 1 failed: exit 1")
    assert node.started == started  # the node's start, not the attempt's
    state.transition(node, NodeState.FAILED, reason="exit 2", attempts=2)
    assert seen.events == [
        ("started", "build", NodeState.RUNNING),
        ("started", "build", NodeState.RUNNING),
        ("finished", "build", Result.FAILURE, "exit 2"),
    ]
    assert node.attempts == 2 and node.finished >= node.started


def test_a_node_that_ends_without_running_has_no_duration_and_no_start_event():
    seen = Seen()
    state = RunState("r", seen)
    node = state.add(NodeRecord("docs", "docs"))
    state.transition(node, NodeState.SKIPPED, reason="if was false")
    assert seen.events == [("finished", "docs", Result.SKIPPED, "if was false")]
    assert node.duration == 0.0
