"""The live account of a run on the terminal, and the summary table at its end."""

from __future__ import annotations

import json
import sys
from collections import deque
from typing import Any, TextIO

from runner.model.durations import format_duration
from runner.model.results import NodeState, Result
from runner.report import Reporter

_MARKS = {Result.SUCCESS: "✓", Result.FAILURE: "✗", Result.SKIPPED: "-", Result.CANCELLED: "⊘"}
QUIET_LINES = 10  # a failed node's last lines that --quiet still shows
PROGRESS_FROM = 10  # instances of a matrix from which its progress is shown as it goes


class Console(Reporter):
    def __init__(self, out: TextIO | None = None, quiet: bool = False):
        self.out = out or sys.stdout
        self.quiet = quiet
        # --quiet: each running node's last lines, shown only if it fails.
        self.last: dict[str, deque[str]] = {}
        self.summaries: dict[str, str] = {}
        self.matrices: dict[str, _Progress] = {}  # a long matrix job's progress, by its instances' job

    def _print(self, text: str) -> None:
        try:
            print(text, file=self.out, flush=True)
        except BrokenPipeError:  # the reader went away (`| head`); the run goes on
            pass

    def run_started(self, run_id, workflow, name):
        if not self.quiet:
            self._print(f"run {run_id}: {name} ({workflow})")

    def node_started(self, node):
        self.summaries.pop(node.id, None)  # an attempt's summary starts anew
        progress = self.matrices.get(node.job_id) if node.id != node.job_id else None
        if progress is not None:
            progress.running.add(node.id)
        if self.quiet:
            return
        if node.attempts > 1:
            self._print(f"↻ {node.id} attempt {node.attempts} ({node.reason})")
        else:
            self._print(f"▶ {node.id}")

    def log(self, node_id, step, stream, line):
        if not self.quiet:
            self._print(f"[{node_id}/{step}] {line}")
        else:
            self.last.setdefault(node_id, deque(maxlen=QUIET_LINES)).append(f"[{node_id}/{step}] {line}")

    def expanded(self, node_id, instances):
        if len(instances) >= PROGRESS_FROM:
            self.matrices[node_id] = _Progress(len(instances))

    def node_finished(self, node):
        last = self.last.pop(node.id, ())
        if self.quiet and node.state is not NodeState.FAILED:  # the state, not `result`'s two property calls
            progress = self.matrices.get(node.job_id)
            if progress is not None:
                progress.finished(node)
            return
        for line in last:
            self._print(line)
        text = f"{_MARKS[node.result]} {node.id} {node.result.value}"
        if node.result in (Result.SUCCESS, Result.FAILURE):
            text += f" in {format_duration(round(node.duration, 1))}"
        if node.reason:
            text += f": {node.reason}"
        if node.result is Result.FAILURE and node.continue_on_error:
            text += " (continue_on_error)"
        self._print(text)
        if node.container:
            self._print(_kept(node.container))
        progress = self.matrices.get(node.job_id) if node.id != node.job_id else None
        if progress is not None and progress.finished(node) and not self.quiet:
            self._print(f"{node.job_id}: {progress}")

    def summary(self, node_id, text):
        self.summaries[node_id] = self.summaries.get(node_id, "") + text

    def run_finished(self, summary: dict[str, Any]):
        jobs = summary["jobs"]
        if not self.quiet and jobs:
            rows = [("job", "result", "duration", "attempts", "reason")]
            for job_id, job in jobs.items():
                reason = job["reason"] + (" (continue_on_error)" if job.get("continue_on_error") else "")
                rows.append((job_id, job["result"], format_duration(round(job["duration_s"], 1)), str(job["attempts"]), reason))
                for node_id, instance in job.get("instances", {}).items():
                    rows.append(("  " + node_id, instance["result"], "", "", instance["reason"]))
            widths = [max(len(r[i]) for r in rows) for i in range(4)]
            self._print("")
            for row in rows:
                self._print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
        if not self.quiet and summary["outputs"]:
            self._print("outputs:")
            for name, value in summary["outputs"].items():
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
                self._print(f"  {name}: {text}")
        if not self.quiet:
            for node_id, text in self.summaries.items():
                self._print(f"\nsummary of {node_id}:")
                self._print(text.rstrip("\n"))
        status = summary["status"]
        line = f"run {summary['run_id']} {status} in {format_duration(round(summary['duration_s'], 1))}"
        if summary.get("usage"):
            line += f" ({usage_text(summary['usage'])})"
        if summary.get("reason"):
            line += f": {summary['reason']}"
        self._print(line)


def usage_text(usage: dict[str, Any]) -> str:
    """`1,234 tokens: 1,000 prompt + 234 completion, cost 0.0123`"""
    text = f"{usage.get('total_tokens', 0):,} tokens"
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        text += f": {usage.get('prompt_tokens', 0):,} prompt + {usage.get('completion_tokens', 0):,} completion"
    if usage.get("cost") is not None:
        text += ", cost " + (f"{usage['cost']:.6f}".rstrip("0").rstrip(".") or "0")
    return text


class _Progress:
    """How far a matrix job has come: shown at every tenth of its instances, and at the last."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.failed = 0
        self.running: set[str] = set()

    def finished(self, node) -> bool:
        """Count the instance in; whether the progress is worth a line now."""
        self.running.discard(node.id)
        self.done += 1
        self.failed += node.result is Result.FAILURE
        step = max(1, self.total // 10)
        return self.done % step == 0 or self.done == self.total

    def __str__(self) -> str:
        return f"{self.done} of {self.total} done, {self.failed} failed, {len(self.running)} running"


def _kept(container: str) -> str:
    """How to enter a container kept for debugging."""
    from runner.backends.base import ON_NODE  # not imported before: a run of values has no container

    if ON_NODE in container:
        name, _, machine = container.partition(ON_NODE)
        return f"  container kept for debugging on node {machine}; there: docker exec -it {name} sh"
    return f"  container kept for debugging: docker exec -it {container} sh"
