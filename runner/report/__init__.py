"""What a run tells the world, as events; each output format is a `Reporter`.

The scheduler calls a single `Reporter`; `Reporters` fans the calls out, and
`Masking` masks secrets in every event before any reporter sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.masking import Masker
    from runner.model.results import NodeRecord, Result


class Reporter:
    """Events of a run; every method may be left as it is (does nothing)."""

    def run_started(self, run_id: str, workflow: str, name: str) -> None: ...

    def node_started(self, node: "NodeRecord") -> None: ...

    def log(self, node_id: str, step: str, stream: str, line: str) -> None: ...

    def step_started(self, node_id: str, step: str) -> None:
        """A step of a container job begins, in the node's current attempt (`step` is its label, as in `log`)."""

    def step_finished(self, node_id: str, step: str, result: "Result", exit_code: int | None) -> None:
        """The step ended (`exit_code` None: its command did not run to an exit)."""

    def node_finished(self, node: "NodeRecord") -> None: ...

    def expanded(self, node_id: str, instances: list[str]) -> None:
        """A matrix job's instances, known once its matrix is expanded and before any starts."""

    def summary(self, node_id: str, text: str) -> None:
        """Markdown a step of the node wrote to `$RUNNER_STEP_SUMMARY` (`$GITHUB_STEP_SUMMARY`)."""

    def run_paused(self) -> None:
        """No job starts until the run is unpaused; running ones go on."""

    def run_unpaused(self) -> None: ...

    def run_finished(self, summary: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _calls(reporters: list[Reporter], event: str) -> tuple:
    """The reporters' methods for `event`, a `Reporters` giving its own in its place; one that leaves
    the event as `Reporter`'s, doing nothing, is not called for it."""
    calls: list = []
    for r in reporters:
        if isinstance(r, Reporters):
            calls.extend(_calls(r.reporters, event))
            continue
        method = getattr(r, event)
        if getattr(method, "__func__", None) is not getattr(Reporter, event):
            calls.append(method)
    return tuple(calls)


class Reporters(Reporter):
    def __init__(self, reporters: list[Reporter]):
        self.reporters = reporters
        # A node's events and a step's lines are the many: each is one loop over what hears it.
        self._node_started = _calls(reporters, "node_started")
        self._node_finished = _calls(reporters, "node_finished")
        self._log = _calls(reporters, "log")

    def run_started(self, run_id, workflow, name):
        for r in self.reporters:
            r.run_started(run_id, workflow, name)

    def node_started(self, node):
        for call in self._node_started:
            call(node)

    def log(self, node_id, step, stream, line):
        for call in self._log:
            call(node_id, step, stream, line)

    def step_started(self, node_id, step):
        for r in self.reporters:
            r.step_started(node_id, step)

    def step_finished(self, node_id, step, result, exit_code):
        for r in self.reporters:
            r.step_finished(node_id, step, result, exit_code)

    def node_finished(self, node):
        for call in self._node_finished:
            call(node)

    def expanded(self, node_id, instances):
        for r in self.reporters:
            r.expanded(node_id, instances)

    def summary(self, node_id, text):
        for r in self.reporters:
            r.summary(node_id, text)

    def run_paused(self):
        for r in self.reporters:
            r.run_paused()

    def run_unpaused(self):
        for r in self.reporters:
            r.run_unpaused()

    def run_finished(self, summary):
        for r in self.reporters:
            r.run_finished(summary)

    def close(self):
        for r in self.reporters:
            r.close()


class Prefixed(Reporter):
    """A sub-workflow's events, its nodes named under the parent node: `report/render`."""

    def __init__(self, inner: Reporter, prefix: str):
        self.inner = inner
        self.prefix = prefix

    def node_started(self, node):
        self.inner.node_started(self._node(node))

    def log(self, node_id, step, stream, line):
        self.inner.log(self.prefix + node_id, step, stream, line)

    def step_started(self, node_id, step):
        self.inner.step_started(self.prefix + node_id, step)

    def step_finished(self, node_id, step, result, exit_code):
        self.inner.step_finished(self.prefix + node_id, step, result, exit_code)

    def node_finished(self, node):
        self.inner.node_finished(self._node(node))

    def expanded(self, node_id, instances):
        self.inner.expanded(self.prefix + node_id, [self.prefix + i for i in instances])

    def summary(self, node_id, text):
        self.inner.summary(self.prefix + node_id, text)

    def _node(self, node: "NodeRecord") -> "NodeRecord":
        from dataclasses import replace

        return replace(node, id=self.prefix + node.id, job_id=self.prefix + node.job_id)


class Masking(Reporter):
    """Masks secrets in every string of every event, then passes it on."""

    def __init__(self, inner: Reporter, masker: "Masker"):
        self.inner = inner
        self.masker = masker
        # A node's events go straight to the reporters behind `inner`, not through its fan-out.
        self._node_started = _calls([inner], "node_started")
        self._node_finished = _calls([inner], "node_finished")

    def run_started(self, run_id, workflow, name):
        self.inner.run_started(run_id, workflow, name)

    def node_started(self, node):
        if self.masker.patterns:  # the dict's truth, not Masker.__bool__'s call: read twice a node
            node = self._masked(node)
        for call in self._node_started:
            call(node)

    def log(self, node_id, step, stream, line):
        self.inner.log(node_id, step, stream, self.masker.text(line))

    def step_started(self, node_id, step):
        self.inner.step_started(node_id, step)  # node ids and step labels are written in the workflow

    def step_finished(self, node_id, step, result, exit_code):
        self.inner.step_finished(node_id, step, result, exit_code)

    def node_finished(self, node):
        if self.masker.patterns:
            node = self._masked(node)
        for call in self._node_finished:
            call(node)

    def expanded(self, node_id, instances):
        self.inner.expanded(node_id, instances)  # instance names are made from masked values

    def summary(self, node_id, text):
        self.inner.summary(node_id, self.masker.text(text))

    def run_paused(self):
        self.inner.run_paused()

    def run_unpaused(self):
        self.inner.run_unpaused()

    def run_finished(self, summary):
        self.inner.run_finished(self.masker.value(summary))

    def close(self):
        self.inner.close()

    def _masked(self, node: "NodeRecord") -> "NodeRecord":
        from dataclasses import replace

        return replace(node, outputs=self.masker.value(node.outputs, numbers=True), reason=self.masker.text(node.reason),
                       matrix=self.masker.value(node.matrix, numbers=True))
