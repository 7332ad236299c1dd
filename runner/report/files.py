"""Reporters that write files: JSON-lines events (`--events`), each step's full log, and step summaries."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any, Callable

from runner.model.results import file_name
from runner.report import Reporter


def _node(node) -> dict[str, Any]:
    event = {"node": node.id, "job": node.job_id, "state": node.state.value}
    if node.matrix is not None:
        event["matrix"] = node.matrix
    return event


class EventLog(Reporter):
    """One JSON object a line: run_started, node_started, log, node_finished, run_finished."""

    def __init__(self, path: str | Path):
        self.file: IO[str] = open(path, "w", encoding="utf-8")

    def _write(self, type_: str, **fields: Any) -> None:
        self.file.write(json.dumps({"type": type_, "time": round(time.time(), 6), **fields}, default=str) + "\n")

    def run_started(self, run_id, workflow, name):
        self._write("run_started", run_id=run_id, workflow=workflow, name=name)
        self.file.flush()

    def node_started(self, node):
        self._write("node_started", **_node(node))

    def log(self, node_id, step, stream, line):
        self._write("log", node=node_id, step=step, stream=stream, line=line)

    def node_finished(self, node):
        result = node.result.value if node.result else None
        self._write(
            "node_finished", **_node(node), result=result, reason=node.reason, attempts=node.attempts,
            duration_s=round(node.duration, 3), outputs=node.outputs,
        )
        self.file.flush()

    def summary(self, node_id, text):
        self._write("summary", node=node_id, text=text)

    def run_finished(self, summary):
        self._write("run_finished", **summary)
        self.file.flush()

    def close(self):
        self.file.close()


class StepLogs(Reporter):
    """Keeps every step's output in full: `<run dir>/logs/<node>/<step>.log`,
    and `<step>.attempt-2.log` for the second attempt of a retried node.

    A resumed run's second attempt writes `<step>.run-2.log` (and
    `<step>.run-2.attempt-2.log`), keeping the first attempt's logs; `opened`
    is told of every file, for the state store.
    """

    def __init__(self, directory: Path, run_attempt: int = 1, opened: Callable[[str, str, int, str], None] | None = None):
        self.directory = directory
        self.run_suffix = f".run-{run_attempt}" if run_attempt > 1 else ""
        self.opened = opened
        self.files: dict[tuple[str, str], IO[str]] = {}
        self.attempts: dict[str, int] = {}

    def node_started(self, node):
        if node.attempts > 1:
            self.attempts[node.id] = node.attempts
            self.node_finished(node)  # the previous attempt's files are complete

    def log(self, node_id, step, stream, line):
        key = (node_id, step)
        file = self.files.get(key)
        if file is None:
            attempt = self.attempts.get(node_id, 1)
            suffix = self.run_suffix + (f".attempt-{attempt}" if attempt > 1 else "")
            path = self.directory / file_name(node_id) / f"{file_name(step)}{suffix}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            file = self.files[key] = open(path, "a", encoding="utf-8")
            if self.opened is not None:
                self.opened(node_id, step, attempt, str(path))
        file.write(line + "\n")

    def node_finished(self, node):
        for key in [k for k in self.files if k[0] == node.id]:
            self.files.pop(key).close()

    def close(self):
        for file in self.files.values():
            file.close()
        self.files.clear()


class StepSummaries(Reporter):
    """What a node's steps wrote to `$RUNNER_STEP_SUMMARY`: `<run dir>/summaries/<node>.md`,
    read by `runner runs show`.  A node that runs again (a retry, a resume) starts its file anew."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.started: set[str] = set()

    def node_started(self, node):
        self.started.discard(node.id)

    def summary(self, node_id, text):
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{file_name(node_id)}.md", "a" if node_id in self.started else "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        self.started.add(node_id)
