"""What a run that builds on another one takes from it: `runner resume` and `runner run --only`.

Resume re-runs what did not succeed.  A node that succeeded keeps its recorded
outputs, unless something it depends on runs again (its inputs may change) or
`--from` names it or a job upstream of it; failed, cancelled, skipped and
never-started nodes run again.  A matrix job that failed keeps the instances
that succeeded.  Outputs that held a secret's value were recorded masked, so
their node runs again.

`--only JOB` runs one job, the outputs of the jobs it uses supplied with
`--set jobs.X.outputs.y=VALUE` or taken from a recorded run (`--from-run ID`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any

from runner.errors import UsageError, suggest
from runner.model.workflow import Job, Workflow, frozen
from runner.history.store import Store, loads
from runner.expr.templates import paths_in


@dataclass
class ResumePlan:
    run_id: str
    inputs: dict[str, Any]
    options: dict[str, Any]  # the run's recorded image_map, concurrency and workspace
    restore: dict[str, dict] = field(default_factory=dict)  # node id → its recorded result, kept
    rerun: list[str] = field(default_factory=list)  # the jobs that run again


@dataclass
class OnlyPlan:
    job: str
    workflow: Workflow  # the one job, its needs removed
    preset: dict[str, dict]  # job id → {"outputs", "result"} of what it uses


# -- resume -------------------------------------------------------------------------


def plan_resume(store: Store, run: dict, workflow: Workflow, digest: str, *, force: bool, from_job: str | None) -> ResumePlan:
    """What the next attempt of `run` keeps and what it runs again.

    The caller holds the run's lock.  UsageError (exit 2) when the run cannot be
    resumed: the file changed (unless `force`), `from_job` is not a job, or its
    inputs held a secret's value.
    """
    run_id = run["id"]
    options = loads(run["options"]) or {}
    if options.get("only"):
        raise UsageError(
            f"run {run_id} ran only `{options['only']}` (--only); run it again with --only rather than resume it"
        )
    if digest != run["hash"] and not force:
        raise UsageError(
            f"{workflow.path} has changed since run {run_id} (content hash {run['hash'][:12]} then, {digest[:12]} now); "
            "resuming would mix results of two different workflows. Pass --force to resume with the file as it is "
            "now, or start a new run"
        )
    secret_inputs = loads(run["secret_inputs"]) or []
    if secret_inputs:
        raise UsageError(
            f"run {run_id} cannot be resumed: the value of input{'s' if len(secret_inputs) > 1 else ''} "
            f"{', '.join(f'`{n}`' for n in secret_inputs)} held a secret, and secrets are never recorded; start a new run"
        )
    if from_job is not None and from_job not in workflow.jobs:
        raise UsageError(f"--from: there is no job `{from_job}` in {workflow.path}{suggest(from_job, workflow.jobs)}")
    plan = ResumePlan(run_id, loads(run["inputs"]) or {}, options)
    nodes = store.nodes(run_id)
    by_id = {n["node"]: n for n in nodes}
    forced: set[str] = set()  # runs again whatever it recorded: --from, or something upstream runs again
    again: set[str] = set()
    for job_id in workflow.order:
        job = workflow.jobs[job_id]
        if job_id == from_job or any(n in again for n in job.needs):
            forced.add(job_id)
        if job_id in forced or not _usable(by_id.get(job_id)):
            again.add(job_id)
            plan.rerun.append(job_id)
            if job_id not in forced and job.matrix is not None:  # keep the instances that succeeded
                for n in nodes:
                    if n["job"] == job_id and n["node"] != job_id and _usable(n):
                        plan.restore[n["node"]] = _kept(n)
            continue
        kept = plan.restore[job_id] = _kept(by_id[job_id])
        if job.matrix is not None:
            kept["instances"] = [_kept(n) for n in nodes if n["job"] == job_id and n["node"] != job_id]
    return plan


def _usable(node: dict | None) -> bool:
    return node is not None and node["state"] == "succeeded" and not node["secret"]


def _kept(node: dict) -> dict:
    return {
        "node": node["node"],
        "matrix": loads(node["matrix"]),
        "outputs": loads(node["outputs"]),
        "attempts": node["attempts"],
        "children": loads(node["children"]),
        "run_attempt": node["kept_from"] or node["run_attempt"],
    }


# -- one node ------------------------------------------------------------------------


def plan_only(workflow: Workflow, job_id: str, sets: list[str], from_run: tuple[Store, dict] | None) -> OnlyPlan:
    """The workflow reduced to `job_id`, and the values it uses from other jobs; UsageError listing
    every value that is missing."""
    if job_id not in workflow.jobs:
        raise UsageError(f"--only: there is no job `{job_id}` in {workflow.path}{suggest(job_id, workflow.jobs)}")
    job = workflow.jobs[job_id]
    uses = _uses(job, workflow)
    preset: dict[str, dict] = {}
    if from_run is not None:
        store, run = from_run
        rows = {n["node"]: n for n in store.nodes(run["id"])}
        for other in uses:
            row = rows.get(other)
            if row is None or row["state"] not in ("succeeded", "failed") or row["secret"]:
                continue  # not there to take: named as missing below unless --set gives it
            result = {"succeeded": "success", "failed": "failure"}[row["state"]]
            preset[other] = {"outputs": loads(row["outputs"]), "result": result}
    for item in sets:
        name, sep, text = item.partition("=")
        parts = name.split(".")
        if not sep or len(parts) < 3 or parts[0] != "jobs" or parts[2] not in ("outputs", "result") or (
            parts[2] == "result" and len(parts) != 3) or len(parts) > 4:
            raise UsageError(f"--set takes jobs.JOB.outputs.NAME=VALUE, jobs.JOB.outputs=JSON or jobs.JOB.result=RESULT; got {item!r}")
        other = parts[1]
        if other not in uses:
            used = ", ".join(f"`{u}`" for u in uses) or "no other job"
            raise UsageError(f"--set {name}: `{job_id}` does not use `jobs.{other}` (it uses {used}){suggest(other, uses)}")
        entry = preset.setdefault(other, {"outputs": {}, "result": "success"})
        value = _value(text)
        if parts[2] == "result":
            if value not in ("success", "failure", "skipped", "cancelled"):
                raise UsageError(f"--set {name}: a result is success, failure, skipped or cancelled, not {text!r}")
            entry["result"] = value
        elif len(parts) == 3:
            entry["outputs"] = value
        else:
            if not isinstance(entry["outputs"], dict):
                entry["outputs"] = {}
            entry["outputs"] = {**entry["outputs"], parts[3]: value}
    missing = []
    for other, wanted in sorted(uses.items()):
        outputs = preset.get(other, {}).get("outputs")
        for name in sorted(wanted, key=lambda n: (n is not None, n or "")):
            if name is None and outputs is None:
                missing.append(f"jobs.{other}.outputs")
            elif name is not None and not (isinstance(outputs, dict) and name in outputs):
                missing.append(f"jobs.{other}.outputs.{name}")
    if missing:
        where = f"run {from_run[1]['id']} does not have them, so " if from_run is not None else ""
        raise UsageError(
            f"--only {job_id} uses values of other jobs that were not given: {', '.join(missing)}; "
            f"{where}supply each with --set NAME=VALUE (for example --set {missing[0]}=VALUE), "
            "or take them from a recorded run with --from-run ID"
        )
    for other in uses:
        preset.setdefault(other, {"outputs": {}, "result": "success"})
    alone = replace(job, needs=())
    reduced = replace(
        workflow, jobs=frozen({job_id: alone}), order=(job_id,), dependents=frozen({job_id: ()}), outputs=frozen({}),
    )
    return OnlyPlan(job_id, reduced, preset)


def _uses(job: Job, workflow: Workflow) -> dict[str, set]:
    """Job id → the output names the job uses of it (None: all of its outputs)."""
    found: dict[str, set] = {}
    for template in job.templates():
        for path in paths_in(template, "jobs"):
            if not path:  # `jobs` itself: everything upstream
                for other in _upstream(job, workflow):
                    found.setdefault(other, set()).add(None)
                continue
            wanted = found.setdefault(path[0], set())
            if len(path) >= 3 and path[1] == "outputs":
                wanted.add(path[2])
            elif len(path) == 1 or path[1] != "result":
                wanted.add(None)
    return {k: v for k, v in found.items() if k != job.id}


def _upstream(job: Job, workflow: Workflow) -> list[str]:
    seen: list[str] = []
    queue = list(job.needs)
    while queue:
        need = queue.pop()
        if need not in seen:
            seen.append(need)
            queue.extend(workflow.jobs[need].needs)
    return seen


def _value(text: str) -> Any:
    """A --set value: JSON when it parses as JSON, else the text as it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)
