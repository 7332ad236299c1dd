"""What a run tells the world, as events; each output format is a `Reporter`.

The scheduler calls a single `Reporter`; `Reporters` fans the calls out, and
`Masking` masks secrets in every event before any reporter sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.masking import Masker
    from runner.model.results import NodeRecord


class Reporter:
    """Events of a run; every method may be left as it is (does nothing)."""

    def run_started(self, run_id: str, workflow: str, name: str) -> None: ...

    def node_started(self, node: "NodeRecord") -> None: ...

    def log(self, node_id: str, step: str, stream: str, line: str) -> None: ...

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


class Reporters(Reporter):
    def __init__(self, reporters: list[Reporter]):
        self.reporters = reporters

    def run_started(self, run_id, workflow, name):
        for r in self.reporters:
            r.run_started(run_id, workflow, name)

    def node_started(self, node):
        for r in self.reporters:
            r.node_started(node)

    def log(self, node_id, step, stream, line):
        for r in self.reporters:
            r.log(node_id, step, stream, line)

    def node_finished(self, node):
        for r in self.reporters:
            r.node_finished(node)

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

    def run_started(self, run_id, workflow, name):
        self.inner.run_started(run_id, workflow, name)

    def node_started(self, node):
        self.inner.node_started(self._node(node))

    def log(self, node_id, step, stream, line):
        self.inner.log(node_id, step, stream, self.masker.text(line))

    def node_finished(self, node):
        self.inner.node_finished(self._node(node))

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

    def _node(self, node: "NodeRecord") -> "NodeRecord":
        if not self.masker:
            return node
        from dataclasses import replace

        return replace(node, outputs=self.masker.value(node.outputs, numbers=True), reason=self.masker.text(node.reason),
                       matrix=self.masker.value(node.matrix, numbers=True))
