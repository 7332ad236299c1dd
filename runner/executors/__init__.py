"""Executors carry out one node's action; the scheduler owns everything around it.

The scheduler handles the shared lifecycle (condition, timeout, retry,
continue_on_error, outputs, state); an executor only does what differs by kind:
run steps in a container, send a request.  It gets a `NodeRun` with everything
it needs already resolved and returns an `Outcome`; it never sees YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ..model import Job, Result


@dataclass
class NodeRun:
    job: Job
    node_id: str
    scope: dict[str, Any]  # what templates may refer to: inputs, env, secrets, matrix, jobs, run
    env: dict[str, str]  # the workflow's and the job's env, rendered
    log: Callable[[str, str, str], None]  # (step, stream, line)
    directory: Path  # this node's own directory in the run's directory
    workspace: Path  # the workflow's directory


@dataclass
class Outcome:
    result: Result  # SUCCESS, FAILURE, or CANCELLED when a sub-run was cancelled
    reason: str = ""
    scope: dict[str, Any] = field(default_factory=dict)  # added to the scope of the job's outputs
    exit_code: int | None = None
    outputs: dict[str, Any] = field(default_factory=dict)  # the job's outputs before its own `outputs:`
    children: dict[str, Any] | None = None  # a sub-workflow's jobs, as in --output-json


class Executor(Protocol):
    async def run(self, node: NodeRun) -> Outcome:
        """Carry out the node's action.

        On cancellation, everything the executor started (containers, requests)
        is torn down before the Cancelled exception leaves this call.
        """
        ...


class Unsupported:
    """Fails nodes of a kind this build of runner cannot run yet, saying so."""

    def __init__(self, what: str):
        self.what = what

    async def run(self, node: NodeRun) -> Outcome:
        return Outcome(Result.FAILURE, f"{self.what} jobs are not supported by this version of runner")
