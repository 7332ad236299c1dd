"""The document that describes a run, built in one place from its node records.

`--output-json` (from a `RunOutcome`), `runner runs show --format json` (from
the state store's records, with the run's history added) and anything else
that reports a run use `run_document`, so that a job reads the same wherever
it is read.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Iterable

from runner.model.results import NodeRecord, Result


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
    entry: dict[str, Any] = {
        "result": record.result.value if record.result else None,
        "outputs": record.outputs,
        "reason": record.reason,
        "attempts": record.attempts,
        "duration_s": round(duration, 3),
    }
    if masked:
        entry["outputs_masked"] = True
    if record.continue_on_error and record.result is Result.FAILURE:
        entry["continue_on_error"] = True
    if record.children is not None:
        entry["jobs"] = record.children
    if record.usage:
        entry["usage"] = record.usage
    for name in ("cached_from", "kept_from", "container"):
        if getattr(record, name) is not None:
            entry[name] = getattr(record, name)
    return entry
