"""What the state store tells users: `runner runs list|show|gc|clean` and `runner logs`.

Everything here reads the store (and the run directories' log files); only
`gc` and `clean` change anything.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from runner.model.durations import format_duration
from runner.errors import RunNotPossible, UsageError
from runner.model.results import NodeRecord, NodeState, RunStatus, add_usage, file_name, run_document
from runner.history.store import Store, loads
from runner.report.console import usage_text


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _duration(seconds: float | None) -> str:
    return format_duration(round(seconds or 0, 1))


def _table(rows: list[tuple], out: TextIO) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print(("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + str(row[-1])).rstrip(), file=out)


def _run_duration(store: Store, run: dict, status: RunStatus) -> float:
    if status in (RunStatus.RUNNING, RunStatus.PAUSED):  # the attempt under way counts so far
        last = store.attempts(run["id"])[-1]
        return run["duration"] + time.time() - last["started"]
    if status is RunStatus.KILLED:  # until its last recorded transition
        last = store.attempts(run["id"])[-1]
        ended = store.value("SELECT max(time) FROM transitions WHERE run_id = ? AND run_attempt = ?", run["id"], last["attempt"])[0]
        return run["duration"] + (ended or last["started"]) - last["started"]
    return run["duration"]


# -- list and show -----------------------------------------------------------------


def list_runs(store: Store, limit: int | None, fmt: str, out: TextIO = sys.stdout) -> None:
    entries = [list_entry(store, run) for run in store.runs(limit)]
    if fmt == "json":
        json.dump(entries, out, indent=2)
        out.write("\n")
        return
    if not entries:
        print(f"no runs recorded in {store.directory}", file=out)
        return
    rows = [("id", "workflow", "status", "started", "duration")]
    for e in entries:
        status = e["status"] + (f" (attempt {e['attempts']})" if e["attempts"] > 1 else "")
        workflow = _short(e["workflow"]) + (f" --only {e['only']}" if e.get("only") else "")
        rows.append((e["id"], workflow, status, _when(e["started"]), _duration(e["duration_s"])))
    _table(rows, out)


def list_entry(store: Store, run: dict) -> dict[str, Any]:
    """A run as `runs list --format json` lists it."""
    status = store.status(run)
    only = (loads(run["options"]) or {}).get("only")
    return {
        "id": run["id"], "workflow": run["workflow"], "name": run["name"], "status": status.value,
        "started": run["started"], "duration_s": round(_run_duration(store, run, status), 3),
        "attempts": run["attempt"], **({"only": only} if only else {}),
    }


def _short(path: str) -> str:
    """A workflow's path relative to here when it is below here."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def show_document(store: Store, run: dict) -> dict[str, Any]:
    """The run as `runs show --format json` prints it: like --output-json, with its history."""
    with store.snapshot():
        status = store.status(run)
        nodes = store.nodes(run["id"])
        attempts = store.attempts(run["id"])
    holder = store.lock_holder(run["id"])
    records = [_record(n) for n in nodes if n["node"] == n["job"] or "/" not in n["job"]]
    durations = {n["node"]: n["duration"] for n in nodes}
    document = run_document(
        run_id=run["id"], status=status.value, outputs=loads(run["outputs"]), nodes=records,
        duration=_run_duration(store, run, status), reason=run["reason"],
        node_duration=lambda record: durations[record.id], masked={n["node"] for n in nodes if n["secret"]},
        usage=add_usage(*(r.usage for r in records if r.id == r.job_id)),
    )
    summaries = store.directory / "runs" / run["id"] / "summaries"
    for node_id, entry in _entries(document["jobs"]):
        path = summaries / f"{file_name(node_id)}.md"
        if path.is_file():
            entry["summary"] = path.read_text(encoding="utf-8", errors="replace")
    return {
        **document,
        "reason": run["reason"],
        "workflow": run["workflow"],
        "name": run["name"],
        "hash": run["hash"],
        "inputs": loads(run["inputs"]),
        "started": run["started"],
        "attempts": [
            {k: a[k] for k in ("attempt", "command", "status", "reason", "started", "finished", "host", "pid")}
            for a in attempts
        ],
        **({"held_by": str(holder)} if holder else {}),
    }


def _entries(jobs: dict[str, Any]) -> list[tuple[str, dict]]:
    """Each job's entry and each matrix instance's, by node id."""
    return [*jobs.items(), *((n, i) for j in jobs.values() for n, i in j.get("instances", {}).items())]


def _record(row: dict[str, Any]) -> NodeRecord:
    """A node as the store recorded it."""
    return NodeRecord(
        row["node"], row["job"], loads(row["matrix"]), NodeState(row["state"]), loads(row["outputs"]), row["reason"],
        row["attempts"], bool(row["continue_on_error"]), children=loads(row["children"]), usage=loads(row["usage"]),
        cached_from=row["cached_from"], kept_from=row["kept_from"], container=row["container"],
    )


def show_run(store: Store, run: dict, fmt: str, out: TextIO = sys.stdout) -> None:
    doc = show_document(store, run)
    if fmt == "json":
        json.dump(doc, out, indent=2, default=str)
        out.write("\n")
        return
    p = lambda text="": print(text, file=out)  # noqa: E731
    p(f"run {doc['run_id']}: {doc['name']} ({doc['workflow']})")
    p(f"status    {doc['status']}" + (f": {doc['reason']}" if doc["reason"] else ""))
    p(f"started   {_when(doc['started'])}, {_duration(doc['duration_s'])} in all")
    p(f"hash      {doc['hash'][:12]}")
    if doc.get("held_by"):
        p(f"in use by {doc['held_by']}")
    if doc.get("usage"):
        p(f"usage     {usage_text(doc['usage'])}")
    if doc["inputs"]:
        p("inputs    " + ", ".join(f"{k}={_text(v)}" for k, v in doc["inputs"].items()))
    if len(doc["attempts"]) > 1:
        p("attempts")
        for a in doc["attempts"]:
            p(f"  {a['attempt']}  {a['command']:<6}  {a['status']:<9}  {_when(a['started'])}" + (f"  {a['reason']}" if a["reason"] else ""))
    p()
    rows = [("job", "result", "duration", "attempts", "reason")]
    for job_id, job in doc["jobs"].items():
        rows.append((job_id, job["result"], _duration(job["duration_s"]), job["attempts"], job["reason"]))
        for node_id, instance in job.get("instances", {}).items():
            rows.append(("  " + node_id, instance["result"], _duration(instance["duration_s"]), instance["attempts"], instance["reason"]))
    _table(rows, out)
    with_outputs = {k: j for k, j in doc["jobs"].items() if j["outputs"]}
    if with_outputs:
        p()
        p("job outputs")
        for job_id, job in with_outputs.items():
            masked = " (held a secret: recorded masked)" if job.get("outputs_masked") else ""
            p(f"  {job_id}: {_text(job['outputs'])}{masked}")
    kept = {k: j["container"] for k, j in doc["jobs"].items() if j.get("container")}
    kept.update({n: i["container"] for j in doc["jobs"].values() for n, i in j.get("instances", {}).items() if i.get("container")})
    if kept:
        p()
        p(f"containers kept for debugging (remove them with `runner runs clean {doc['run_id']}`)")
        for node_id, name in kept.items():
            p(f"  {node_id}: docker exec -it {name} sh")
    for node_id, entry in _entries(doc["jobs"]):
        if entry.get("summary"):
            p()
            p(f"summary of {node_id}:")
            p(entry["summary"].rstrip("\n"))
    if doc["outputs"]:
        p()
        p("outputs")
        for name, value in doc["outputs"].items():
            p(f"  {name}: {_text(value)}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


# -- logs --------------------------------------------------------------------------


def print_logs(store: Store, run: dict, target: str | None, out: TextIO = sys.stdout) -> None:
    """Every step log of the run (or of one job, or one step: JOB/STEP), oldest first."""
    logs = store.logs(run["id"])
    job, _, step = (target or "").partition("/")
    if target:
        nodes = {n["node"]: n["job"] for n in store.nodes(run["id"])}
        picked = [
            entry for entry in logs
            if (entry["node"] == job or nodes.get(entry["node"]) == job or entry["node"].startswith(job + "/")
                or file_name(entry["node"]) == job)
            and (not step or entry["step"] == step or file_name(entry["step"]) == step)
        ]
        # A sub-workflow's step: `report/render/build` is the node `report/render`, step `build`.
        if not picked and "/" in target:
            node, _, step = target.rpartition("/")
            picked = [e for e in logs if e["node"] == node and e["step"] == step]
        if not picked:
            known = sorted({f"{e['node']}/{e['step']}" for e in logs})
            listed = ", ".join(known[:10]) + (", …" if len(known) > 10 else "") if known else "none"
            raise UsageError(f"run {run['id']} has no log for `{target}` (logs: {listed})")
        logs = picked
    single = len(logs) == 1 and step
    for entry in logs:
        path = store.directory / entry["path"]
        if not single:
            attempt = []
            if entry["run_attempt"] > 1:
                attempt.append(f"run attempt {entry['run_attempt']}")
            if entry["attempt"] > 1:
                attempt.append(f"attempt {entry['attempt']}")
            print(f"== {entry['node']}/{entry['step']}" + (f" ({', '.join(attempt)})" if attempt else "") + " ==", file=out)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                shutil.copyfileobj(f, out)
        except OSError as e:
            print(f"[runner: the log file {path} cannot be read: {e.strerror}]", file=out)
    if not logs:
        print(f"run {run['id']} has no step logs", file=out)


# -- gc and clean ------------------------------------------------------------------


def gc(store: Store, keep: int, older_than: float | None, out: TextIO = sys.stdout) -> None:
    """Remove all but the `keep` newest runs (and those newer than `older_than` seconds), their
    directories, and expired cache entries. Runs in use or keeping a container stay."""
    now = time.time()
    runs = store.runs()
    doomed, spared = [], []
    for index, run in enumerate(runs):
        if index < keep or (older_than is not None and run["started"] > now - older_than):
            continue
        if store.lock_holder(run["id"]) is not None:
            spared.append(f"{run['id']} (in use)")
        elif any(n["container"] for n in store.nodes(run["id"])):
            spared.append(f"{run['id']} (keeps a container: `runner runs clean {run['id']}` first)")
        else:
            doomed.append(run["id"])
    store.delete_runs(doomed)
    for run_id in doomed:
        shutil.rmtree(store.directory / "runs" / run_id, ignore_errors=True)
    expired = store.cache_expired(now)
    store.cache_delete([e["key"] for e in expired])
    kept_archives = store.cache_archives()
    removed_archives = 0
    for archive in (store.directory / "cache").glob("*.tar.gz*") if (store.directory / "cache").is_dir() else ():
        if f"cache/{archive.name}" not in kept_archives:
            archive.unlink(missing_ok=True)
            removed_archives += 1
    store.checkpoint()
    print(f"removed {len(doomed)} run{'s' if len(doomed) != 1 else ''} and {len(expired)} expired cache "
          f"entr{'ies' if len(expired) != 1 else 'y'}; {len(runs) - len(doomed)} run{'s' if len(runs) - len(doomed) != 1 else ''} kept",
          file=out)
    for note in spared:
        print(f"  kept {note}", file=out)


def clean(store: Store, run: dict, out: TextIO = sys.stdout) -> int:
    """Remove the containers a run kept for debugging (--keep-on-failure); how many."""
    run_id = run["id"]
    holder = store.lock_holder(run_id)
    if holder is not None:
        raise RunNotPossible(f"run {run_id} is in use by {holder}; its containers go when it ends")
    kept = [n for n in store.nodes(run_id) if n["container"]]
    from runner.backends import open_backend

    backend = open_backend((loads(run["options"]) or {}).get("backend", "docker"))
    removed = backend.remove_run(run_id, kept_only=True)
    for n in kept:
        store.set_container(run_id, n["node"], None)
        shutil.rmtree(store.directory / "runs" / run_id / "nodes" / file_name(n["node"]), ignore_errors=True)
    for name in removed:
        print(f"removed {name}", file=out)
    if not removed:
        print(f"run {run_id} keeps no container", file=out)
    return len(removed)
