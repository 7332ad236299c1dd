"""`runner trace ID`: a recorded run's timeline as Chrome trace events (Perfetto, chrome://tracing).

Read from the store alone, so it works for any recorded run, however it was
started: the run's attempts (`attempts`), each node's attempts (from its
`transitions`: a `running` begins one, the next `running` or a final state ends
it) and the steps of container jobs (`steps`).  Each node is a track of its own
(a thread, in the format's words), its steps nested under its attempts.
Times are microseconds from the run's start.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from runner.errors import RunNotPossible
from runner.model.results import NodeState

RUN_TRACK = 0


def chrome_trace(store, run: dict[str, Any]) -> dict[str, Any]:
    """The run as a Chrome trace events document (JSON object format)."""
    run_id, origin = run["id"], run["started"]
    until = run["finished"] or time.time()  # where what never ended stops (its runner was killed, or runs still)

    def span(name: str, category: str, track: int, start: float, end: float, **args: Any) -> dict[str, Any]:
        return {"ph": "X", "name": name, "cat": category, "pid": 1, "tid": track,
                "ts": round((start - origin) * 1e6, 1), "dur": round((end - start) * 1e6, 1), "args": args}

    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": 1, "tid": RUN_TRACK, "args": {"name": f"{run['name']} ({run_id})"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": RUN_TRACK, "args": {"name": "run"}},
    ]
    for attempt in store.attempts(run_id):
        events.append(span(
            f"{attempt['command']} (attempt {attempt['attempt']})", "run", RUN_TRACK, attempt["started"],
            attempt["finished"] or until, run_attempt=attempt["attempt"], status=attempt["status"],
            reason=attempt["reason"],
        ))
    tracks: dict[str, int] = {}
    begun: dict[str, tuple[float, int, int]] = {}  # node → its attempt going on: (start, run attempt, attempt)
    counts: dict[tuple[str, int], int] = {}  # (node, run attempt) → attempts begun

    def node_span(node: str, start: float, run_attempt: int, number: int, end: float, state: str, reason: str):
        name = node if number <= 1 else f"{node} (attempt {number})"
        events.append(span(name, "node", tracks[node], start, end, state=state, reason=reason, attempt=number,
                           run_attempt=run_attempt))

    for row in store.transitions(run_id):
        node, state, now = row["node"], NodeState(row["state"]), row["time"]
        tracks.setdefault(node, len(tracks) + 1)
        ended = begun.pop(node, None)
        if ended is not None:  # a retry, or a final state, ends the attempt going on
            node_span(node, *ended, now, "retried" if state is NodeState.RUNNING else state.value, row["reason"])
        if state is NodeState.RUNNING:
            number = counts[node, row["run_attempt"]] = counts.get((node, row["run_attempt"]), 0) + 1
            begun[node] = (now, row["run_attempt"], number)
        elif ended is None:  # ended without running: skipped, cached, kept, cancelled before it began
            node_span(node, now, row["run_attempt"], 0, now, state.value, row["reason"])
    for node, ended in begun.items():
        node_span(node, *ended, until, "running", "")
    for step in store.steps(run_id):
        track = tracks.setdefault(step["node"], len(tracks) + 1)
        events.append(span(
            step["step"], "step", track, step["started"], step["finished"] or step["started"], result=step["result"],
            exit_code=step["exit_code"], attempt=step["attempt"], run_attempt=step["run_attempt"],
        ))
    for node, track in tracks.items():
        events.append({"ph": "M", "name": "thread_name", "pid": 1, "tid": track, "args": {"name": node}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": 1, "tid": track, "args": {"sort_index": track}})
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"run_id": run_id, "workflow": run["workflow"], "name": run["name"], "status": run["status"],
                      "started": origin},
    }


def write_trace(store, run: dict[str, Any], output: str | None) -> None:
    document = chrome_trace(store, run)
    if output is None or output == "-":
        json.dump(document, sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
        return
    try:
        with open(output, "w", encoding="utf-8") as f:
            json.dump(document, f, separators=(",", ":"))
    except OSError as e:
        raise RunNotPossible(f"cannot write {output}: {e.strerror}") from None
