"""What a run produces: results, node states and records, and the run's outcome.

One module for every state a user sees, enums end to end; the store
(`history/store.py`) converts them to and from text in one place.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Collection, Iterable


class Result(Enum):
    """How a job or step ended, as users see it (`jobs.<id>.result`)."""

    SUCCESS = "success"
    FAILURE = "failure"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class NodeState(Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    # Keyed by the value, a string: an Enum member hashes in Python, and these are asked
    # several times for every transition of every node.
    @property
    def result(self) -> Result | None:
        return _RESULTS.get(self._value_)

    @property
    def finished(self) -> bool:
        return self._value_ in _RESULTS


_RESULTS = {
    NodeState.SUCCEEDED.value: Result.SUCCESS,
    NodeState.FAILED.value: Result.FAILURE,
    NodeState.SKIPPED.value: Result.SKIPPED,
    NodeState.CANCELLED.value: Result.CANCELLED,
}


class RunStatus(Enum):
    QUEUED = "queued"  # a server's run waiting for a free slot (--concurrency); not in the store yet
    RUNNING = "running"
    PAUSED = "paused"  # running, but no job starts until it is unpaused
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    KILLED = "killed"  # a run (or attempt) whose runner was killed: it says `running`, its lock holder is gone


USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "cost")


def add_usage(*usages: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sum of token counts (and costs), or None if none of them counts anything."""
    present = [u for u in usages if u]
    if not present:
        return None
    total: dict[str, Any] = {}
    for key in USAGE_KEYS:
        values = [u[key] for u in present if u.get(key) is not None]
        if values:
            total[key] = round(sum(values), 6) if key == "cost" else sum(values)
    return total


@dataclass
class NodeRecord:
    """One node: a job, or one instance of a matrix job (then `job_id` names the job)."""

    id: str
    job_id: str
    matrix: dict | None = None
    state: NodeState = NodeState.PENDING
    outputs: Any = field(default_factory=dict)
    reason: str = ""
    attempts: int = 0
    continue_on_error: bool = False
    started: float | None = None
    finished: float | None = None
    children: dict | None = None  # a sub-workflow's jobs, as in --output-json
    usage: dict | None = None  # tokens (and cost) used by llm calls, every attempt summed
    cached_from: str | None = None  # the run whose cached result this node reused
    kept_from: int | None = None  # on resume: the attempt of the run whose result this node kept
    container: str | None = None  # a failed job's container left running (--keep-on-failure)

    @property
    def result(self) -> Result | None:
        return self.state.result

    @property
    def duration(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    @property
    def tolerated(self) -> bool:
        """A failure that `continue_on_error` lets dependents treat as success."""
        return self.state is NodeState.FAILED and self.continue_on_error


def file_name(node_id: str) -> str:
    """A node's id as a file name: `build (shard=1)` → `build-shard-1`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", node_id).strip("-") or "_"


@dataclass
class RunOutcome:
    """How a run ended: its status, outputs, and every job's and node's record."""

    run_id: str
    status: Result
    outputs: dict[str, Any]
    jobs: dict[str, NodeRecord]  # one record per job; a matrix job's holds the list of outputs
    nodes: dict[str, NodeRecord]  # every node, matrix instances included
    duration: float
    reason: str = ""
    signal: int | None = None
    instances: dict[str, list[str]] = field(default_factory=dict)
    usage: dict[str, Any] | None = None  # tokens (and cost) of every llm call, summed

    def summary(self) -> dict[str, Any]:
        """The `--output-json` document."""
        listed = [record for job_id, record in self.jobs.items()]
        listed += [self.nodes[node_id] for job_id in self.jobs for node_id in self.instances.get(job_id, ())]
        return run_document(
            run_id=self.run_id, status=self.status.value, outputs=self.outputs, nodes=listed,
            duration=self.duration, reason=self.reason, usage=self.usage,
        )


# -- the run's document: --output-json, `runs show --format json`, and the API build it here alone


def run_document(
    *,
    run_id: str,
    status: str,
    outputs: Any,
    nodes: Iterable[NodeRecord],
    duration: float,
    reason: str = "",
    usage: dict | None = None,
    node_duration: Callable[[NodeRecord], float] = lambda record: record.duration,
    masked: Collection[str] = (),
) -> dict[str, Any]:
    """`nodes`: every job's record and every matrix instance's, in the order they are listed.

    `masked` names the nodes whose outputs held a secret and are shown masked.
    """
    jobs: dict[str, Any] = {}
    instances: dict[str, dict[str, Any]] = {}
    for record in nodes:
        entry = _entry(record, node_duration(record), record.id in masked)
        if record.id == record.job_id:
            jobs[record.id] = entry
        else:
            instances.setdefault(record.job_id, {})[record.id] = {"matrix": record.matrix, **entry}
    for job_id, found in instances.items():
        if job_id in jobs:
            jobs[job_id]["instances"] = found
    document: dict[str, Any] = {"run_id": run_id, "status": status, "outputs": outputs, "jobs": jobs}
    if reason:
        document["reason"] = reason
    if usage:
        document["usage"] = usage
    document["duration_s"] = round(duration, 3)
    return document


def _entry(record: NodeRecord, duration: float, masked: bool) -> dict[str, Any]:
    result = record.result
    entry: dict[str, Any] = {
        "result": result.value if result else None,
        "outputs": record.outputs,
        "reason": record.reason,
        "attempts": record.attempts,
        "duration_s": round(duration, 3),
    }
    if masked:
        entry["outputs_masked"] = True
    if record.continue_on_error and result is Result.FAILURE:
        entry["continue_on_error"] = True
    if record.children is not None:
        entry["jobs"] = record.children
    if record.usage:
        entry["usage"] = record.usage
    if record.cached_from is not None:
        entry["cached_from"] = record.cached_from
    if record.kept_from is not None:
        entry["kept_from"] = record.kept_from
    if record.container is not None:
        entry["container"] = record.container
    return entry
