"""Executors carry out one node's action; the engine owns everything around it.

The engine's node lifecycle (`engine/node.py`) handles condition, timeout,
retry, continue_on_error, outputs and state; an executor only does what differs
by kind: run steps in a container, send a request.  It gets a `NodeRun` with
everything it needs already resolved and returns an `Outcome`; it never sees
YAML.  Its own failures derive from `NodeFailed`: one raised out of `run` fails
the attempt with its text as the reason.  No library's exception leaves an
executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from runner.model.workflow import Job, Retry
from runner.model.results import Result


class NodeFailed(Exception):
    """A node's action failed; the text says why, for the user."""


@dataclass
class NodeRun:
    job: Job
    retry: Retry  # the job's retry policy, rendered
    node_id: str
    scope: dict[str, Any]  # what templates may refer to: inputs, env, secrets, matrix, jobs, run
    env: dict[str, str]  # the workflow's and the job's env, rendered
    log: Callable[[str, str, str], None]  # (step, stream, line)
    directory: Path  # this node's own directory in the run's directory
    workspace: Path  # the run's workspace
    summary: Callable[[str], None] = lambda text: None  # Markdown a step wrote to $RUNNER_STEP_SUMMARY
    step_started: Callable[[str], None] = lambda step: None  # (step label)
    step_finished: Callable[[str, Result, int | None], None] = lambda step, result, exit_code: None
    # When runs are traced: the W3C traceparent of this attempt's span, or (given a step's label) of the step's.
    traceparent: Callable[[str | None], str] | None = None
    # Set by the executor: whether an attempt that the job's `timeout` ends may be
    # retried (None: as the retry policy says).  An http POST may have been received.
    timeout_retryable: bool | None = None


@dataclass
class Outcome:
    result: Result  # SUCCESS, FAILURE, or CANCELLED when a sub-run was cancelled
    reason: str = ""
    scope: dict[str, Any] = field(default_factory=dict)  # added to the scope of the job's outputs
    exit_code: int | None = None
    outputs: dict[str, Any] = field(default_factory=dict)  # the job's outputs before its own `outputs:`
    children: dict[str, Any] | None = None  # a sub-workflow's jobs, as in --output-json
    # Retries: None leaves the decision to the retry policy (`on_exit_codes`); an
    # executor that knows better (an http POST, a 404) says True or False.
    retryable: bool | None = None
    retry_after: float | None = None  # the least wait before the next attempt (Retry-After), in seconds
    usage: dict[str, Any] | None = None  # tokens used (llm): prompt_tokens, completion_tokens, total_tokens, cost
    kept: str | None = None  # the name of a failed job's container left running (--keep-on-failure)


class Executor:
    """What differs by kind of node; the engine owns the lifecycle around it."""

    async def run(self, node: NodeRun) -> Outcome:
        """Carry out the node's action.

        On cancellation, everything the executor started (containers, requests)
        is torn down before the Cancelled exception leaves this call.
        """
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what the executor keeps for the whole run (an HTTP client); called once it has ended."""
