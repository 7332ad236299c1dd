"""The HTTP API under /api/v1 (described by `openapi.py`), and the page at `/`.

Handlers read the store for what was recorded and act on live runs through
`Runs`; every error is a problem document (`problems.py`).
"""

from __future__ import annotations

import io
import json
import math
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from runner.errors import RunNotPossible, UsageError, WorkflowInvalid
from runner.model.results import RunStatus
from runner.server import page
from runner.server.problems import ApiError, problem
from runner.server.request import MAX_NUMBER, field, json_body, number
from runner.server.registry import Registry, problem_json
from runner.server.runs import Live, Runs, now_document
from runner.server.stream import follow, json_line, sse

MAX_WAIT = 3600.0
CLEANUP_GRACE = 5.0  # as the CLI gives jobs with `if: always()` after Ctrl-C


@dataclass
class Server:
    store: Any  # runner.history.store.Store
    registry: Registry
    runs: Runs
    allow_posted: bool = False


# -- helpers ------------------------------------------------------------------------


def _run_row(server: Server, run_id: str) -> dict[str, Any] | None:
    rows = server.store.rows("SELECT * FROM runs WHERE id = ?", run_id)
    return rows[0] if rows else None


def _summary(server: Server, row: dict[str, Any]) -> dict[str, Any]:
    from runner.history.runs import list_entry

    entry = list_entry(server.store, row)
    entry = {"run_id": entry.pop("id"), **entry, "registered": server.registry.name_of(row["workflow"])}
    entry["reason"] = row["reason"]
    entry["finished"] = row["finished"]
    return entry


def _document(server: Server, run_id: str) -> dict[str, Any]:
    """A run as `runs show --format json` shows it, with each node's state and times, and the job graph."""
    from runner.history.runs import show_document

    row = _run_row(server, run_id)
    if row is None:
        live = server.runs.get(run_id) or server.runs.unrecorded.get(run_id)
        if live is None:
            raise ApiError(404, f"no run `{run_id}`")
        return now_document(live)
    document = show_document(server.store, row)
    nodes = {n["node"]: n for n in server.store.nodes(run_id)}
    for node_id, entry in [*document["jobs"].items(),
                           *((n, i) for j in document["jobs"].values() for n, i in j.get("instances", {}).items())]:
        node = nodes.get(node_id)
        if node is not None:
            entry.update(state=node["state"], started=node["started"], finished=node["finished"])
    document["registered"] = server.registry.name_of(row["workflow"])
    document["graph"] = server.registry.graph(row["workflow"])
    return document


def _live(server: Server, run_id: str) -> Live:
    live = server.runs.get(run_id)
    if live is not None:
        return live
    row = _run_row(server, run_id)
    if row is None:
        raise ApiError(404, f"no run `{run_id}`")
    status = server.store.status(row).value
    raise ApiError(409, f"run {run_id} is not running in this server (it is {status})")


async def _answer_started(server: Server, live: Live, wait: float | None) -> Response:
    """201 once the run has begun (or at once, queued), 201 with its document if it ends within `wait` seconds,
    else 202; a problem if it could not begin."""
    if server.runs.slots is None or server.runs.slots.value > 0:
        await live.begun.wait()
    if live.error is not None and not live.feed.seqs:
        _raise_run_error(live.error)
    if wait:
        with trio.move_on_after(wait):
            await live.done.wait()
        if not live.done.is_set():
            return JSONResponse({"run_id": live.run_id, "status": _status(server, live)}, status_code=202)
        return JSONResponse(_document(server, live.run_id), status_code=201)
    return JSONResponse({"run_id": live.run_id, "status": _status(server, live)}, status_code=201)


def _status(server: Server, live: Live) -> str:
    row = _run_row(server, live.run_id)
    return server.store.status(row).value if row is not None else live.status.value


def _raise_run_error(error) -> None:
    if isinstance(error, WorkflowInvalid):
        raise ApiError(422, "the run cannot start: see problems", error.problems)
    if isinstance(error, UsageError):
        raise ApiError(422, str(error))
    raise ApiError(409, f"the run could not be carried out: {error}")


def _options(**changes):
    from runner.engine.run import RunOptions

    return RunOptions(inputs_source="inputs", **changes)


def _check_inputs(workflow, inputs: dict) -> None:
    """The run's inputs and secrets, checked before it is accepted: 422 with the CLI's located problems."""
    from runner.engine.run import read_secrets
    from runner.model.inputs import resolve

    try:
        resolve(workflow, inputs, "inputs")
        read_secrets(workflow)
    except WorkflowInvalid as e:
        raise ApiError(422, "the inputs are not valid: see problems", e.problems) from None


def _registered(server: Server, name: str):
    if server.registry.path(name) is None:
        invalid = server.registry.invalid.get(name)
        if invalid:
            raise ApiError(422, f"workflow `{name}` is not valid, so it is not registered", invalid)
        raise ApiError(404, f"no workflow `{name}` is registered")
    try:
        return server.registry.load(name)
    except WorkflowInvalid as e:
        raise ApiError(422, f"workflow `{name}` is no longer valid", e.problems) from None


# -- handlers -----------------------------------------------------------------------


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def openapi(request: Request) -> Response:
    from runner.server.openapi import document

    return JSONResponse(document())


async def list_workflows(request: Request) -> Response:
    registry: Registry = request.app.state.server.registry
    return JSONResponse({
        "workflows": [{"name": name, **registry.described[name]} for name in registry.workflows],
        "invalid": [{"name": name, "problems": [problem_json(p) for p in problems]}
                    for name, problems in registry.invalid.items()],
    })


async def get_workflow(request: Request) -> Response:
    server: Server = request.app.state.server
    name = request.path_params["name"]
    _registered(server, name)
    return JSONResponse({"name": name, **server.registry.described[name]})


async def post_run(request: Request) -> Response:
    server: Server = request.app.state.server
    wait = number(request, "wait", None, MAX_WAIT, whole=False)
    body = await json_body(request)
    name, source = field(body, "workflow", str), field(body, "source", str)
    inputs = field(body, "inputs", dict, {})
    if (name is None) == (source is None):
        raise ApiError(422, "give `workflow` (a registered workflow's name) or `source` (a workflow's text), not both")
    if source is not None:
        workflow, digest = _posted(server, source)
    else:
        workflow, digest = _registered(server, name)
    _check_inputs(workflow, inputs)
    live = server.runs.start(workflow, _options(inputs=inputs, digest=digest), name)
    return await _answer_started(server, live, wait)


def _posted(server: Server, source: str):
    if not server.allow_posted:
        raise ApiError(403, "this server runs registered workflows only (start it with --allow-posted-workflows "
                            "to accept a workflow's text: whoever holds a token may then run any image)")
    import hashlib

    from runner.load.workflow import content_hash, load_workflow

    directory = server.store.directory / "posted"
    directory.mkdir(exist_ok=True)
    path = directory / (hashlib.sha256(source.encode()).hexdigest()[:16] + ".yml")
    path.write_text(source, encoding="utf-8")
    try:
        workflow, _ = load_workflow(str(path))
    except WorkflowInvalid as e:
        raise ApiError(422, "the posted workflow is not valid: see problems", e.problems) from None
    return workflow, content_hash(workflow)


async def list_runs(request: Request) -> Response:
    server: Server = request.app.state.server
    limit = number(request, "limit", 50, 1000, least=1)
    status = request.query_params.get("status") or None
    workflow = request.query_params.get("workflow") or None
    cursor = request.query_params.get("cursor") or None
    if status is not None and status not in {s.value for s in RunStatus}:
        raise ApiError(400, f"?status= is one of {', '.join(s.value for s in RunStatus)}, not {status!r}")
    path = server.registry.path(workflow) if workflow else None
    entries: list[dict[str, Any]] = []
    if cursor is None:
        entries = [now_document(live) for live in server.runs.queued()]
        entries = [e for e in entries if (status is None or e["status"] == status)
                   and (workflow is None or workflow in (e["workflow"], e["registered"]))]
    sql, args = "SELECT * FROM runs", []
    if cursor is not None:
        started, _, after_id = cursor.partition(":")
        try:
            args = [float(started), float(started), after_id]
            if not math.isfinite(args[0]):
                raise ValueError(started)
        except ValueError:
            raise ApiError(400, f"?cursor= is not one this server gave: {cursor!r}") from None
        sql += " WHERE started < ? OR (started = ? AND id < ?)"
    sql += " ORDER BY started DESC, id DESC"
    next_cursor = None
    for row in server.store.rows(sql, *args):
        if workflow is not None and row["workflow"] not in (path, workflow):
            continue
        entry = _summary(server, row)
        if status is not None and entry["status"] != status:
            continue
        if len(entries) == limit:
            last = entries[-1]
            next_cursor = f"{last['started']!r}:{last['run_id']}"
            break
        entries.append(entry)
    return JSONResponse({"runs": entries, "next_cursor": next_cursor})


async def get_run(request: Request) -> Response:
    return JSONResponse(_document(request.app.state.server, request.path_params["run_id"]))


async def run_events(request: Request) -> Response:
    server: Server = request.app.state.server
    run_id = request.path_params["run_id"]
    if _run_row(server, run_id) is None and server.runs.get(run_id) is None:
        if server.runs.unrecorded.get(run_id) is None:
            raise ApiError(404, f"no run `{run_id}`")
    given = request.headers.get("last-event-id")
    if given is not None and not (given.strip().isascii() and given.strip().isdigit() and int(given) <= MAX_NUMBER):
        raise ApiError(400, f"Last-Event-ID is an event's id (a whole number), not {given!r}")
    after = int(given) if given is not None else number(request, "after", 0)
    stream = "text/event-stream" in request.headers.get("accept", "")
    render = sse if stream else json_line

    async def body():
        async for event in follow(server.store, server.runs.feeds, run_id, after):
            yield render(event)

    return StreamingResponse(
        body(), media_type="text/event-stream" if stream else "application/x-ndjson",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def run_logs(request: Request) -> Response:
    from runner.history.runs import print_logs

    server: Server = request.app.state.server
    run_id, target = request.path_params["run_id"], request.path_params["target"]
    row = _run_row(server, run_id)
    if row is None:
        raise ApiError(404, f"no run `{run_id}`")
    offset, tail = number(request, "offset", 0), number(request, "tail", None)
    out = io.StringIO()
    try:
        print_logs(server.store, row, target, out)
    except UsageError as e:
        raise ApiError(404, str(e)) from None
    data = out.getvalue().encode("utf-8")
    if tail is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail:]) if tail else b""
    else:
        data = data[offset:]
    size = len(out.getvalue().encode("utf-8"))
    return PlainTextResponse(data, headers={"X-Log-Size": str(size)})


async def cancel_run(request: Request) -> Response:
    server: Server = request.app.state.server
    live = _live(server, request.path_params["run_id"])
    if live.control.cancelled:  # a second cancel, as a second Ctrl-C, ends cleanup jobs too
        live.control.stop()
    else:
        live.control.cancel("cancelled over the API")
        server.runs.nursery.start_soon(_stop_after, live, CLEANUP_GRACE)
    return JSONResponse({"run_id": live.run_id, "status": _status(server, live)}, status_code=202)


async def _stop_after(live: Live, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await live.done.wait()
    live.control.stop()


async def pause_run(request: Request) -> Response:
    server: Server = request.app.state.server
    live = _live(server, request.path_params["run_id"])
    if live.control.cancelled:
        raise ApiError(409, f"run {live.run_id} is being cancelled")
    live.control.pause()
    return JSONResponse({"run_id": live.run_id, "status": _status(server, live)})


async def unpause_run(request: Request) -> Response:
    server: Server = request.app.state.server
    live = _live(server, request.path_params["run_id"])
    live.control.unpause()
    return JSONResponse({"run_id": live.run_id, "status": _status(server, live)})


async def resume_run(request: Request) -> Response:
    import os

    from runner.history.resume import plan_resume
    from runner.load.workflow import content_hash, load_workflow

    server: Server = request.app.state.server
    run_id = request.path_params["run_id"]
    body = await json_body(request)
    from_job, force = field(body, "from", str), field(body, "force", bool, False)
    row = _run_row(server, run_id)
    if row is None:
        raise ApiError(404, f"no run `{run_id}`")
    if server.runs.get(run_id) is not None:
        raise ApiError(409, f"run {run_id} is still running")
    holder = server.store.lock_holder(run_id)
    if holder is not None:
        raise ApiError(409, f"run {run_id} is in use by {holder}; wait for it to end, or stop it first")
    if not os.path.isfile(row["workflow"]):
        raise ApiError(409, f"run {run_id} ran {row['workflow']}, which no longer exists")
    try:
        workflow, _ = load_workflow(row["workflow"])
        digest = content_hash(workflow)
        plan = plan_resume(server.store, row, workflow, digest, force=force, from_job=from_job)
    except WorkflowInvalid as e:
        raise ApiError(422, f"the workflow {row['workflow']} is not valid now", e.problems) from None
    except UsageError as e:
        raise ApiError(422, str(e)) from None
    if not plan.rerun:
        raise ApiError(409, f"run {run_id} succeeded: nothing to resume (`from` names a job to run again with what follows it)")
    options = _options(
        resume=plan, digest=digest, image_map=plan.options.get("image_map") or {},
        concurrency=plan.options.get("concurrency"),
    )
    live = server.runs.start(workflow, options, server.registry.name_of(row["workflow"]))
    return await _answer_started(server, live, number(request, "wait", None, MAX_WAIT, whole=False))


async def run_job(request: Request) -> Response:
    from runner.history.resume import plan_only

    server: Server = request.app.state.server
    name, job = request.path_params["name"], request.path_params["job"]
    body = await json_body(request)
    inputs, sets = field(body, "inputs", dict, {}), field(body, "set", dict, {})
    workflow, digest = _registered(server, name)
    _check_inputs(workflow, inputs)
    try:
        only = plan_only(workflow, job, [f"{k}={json.dumps(v)}" for k, v in sets.items()], None)
    except UsageError as e:
        status = 404 if job not in workflow.jobs else 422
        raise ApiError(status, str(e)) from None
    live = server.runs.start(workflow, _options(inputs=inputs, digest=digest, only=only), name)
    await live.done.wait()
    if live.error is not None and not live.feed.seqs:
        _raise_run_error(live.error)
    return JSONResponse(_document(server, live.run_id))


# -- the application ----------------------------------------------------------------


def routes() -> list[Route]:
    api = "/api/v1"
    return [
        *page.routes(),  # the web page at / and its files under /static/
        Route(f"{api}/health", health),
        Route(f"{api}/openapi.json", openapi),
        Route(f"{api}/workflows", list_workflows),
        Route(f"{api}/workflows/{{name:path}}/jobs/{{job}}/run", run_job, methods=["POST"]),
        Route(f"{api}/workflows/{{name:path}}", get_workflow),
        Route(f"{api}/runs", list_runs),
        Route(f"{api}/runs", post_run, methods=["POST"]),
        Route(f"{api}/runs/{{run_id}}", get_run),
        Route(f"{api}/runs/{{run_id}}/events", run_events),
        Route(f"{api}/runs/{{run_id}}/logs/{{target:path}}", run_logs),
        Route(f"{api}/runs/{{run_id}}/cancel", cancel_run, methods=["POST"]),
        Route(f"{api}/runs/{{run_id}}/pause", pause_run, methods=["POST"]),
        Route(f"{api}/runs/{{run_id}}/unpause", unpause_run, methods=["POST"]),
        Route(f"{api}/runs/{{run_id}}/resume", resume_run, methods=["POST"]),
    ]


async def _api_error(request: Request, error: ApiError) -> Response:
    return problem(error.status, error.detail, error.problems, error.headers)


async def _http_error(request: Request, error: HTTPException) -> Response:
    return problem(error.status_code, error.detail if isinstance(error.detail, str) else "", headers=error.headers)


async def _internal_error(request: Request, error: Exception) -> Response:
    print(f"runner: internal error answering {request.method} {request.url.path}: {error!r}", file=sys.stderr)
    traceback.print_exc()
    return problem(500, "internal error: the server's log says more")


def create_app(server: Server, tokens: list[str]):
    from runner.server.auth import Auth

    app = Starlette(routes=routes(), exception_handlers={
        ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error,
        RunNotPossible: lambda r, e: problem(409, str(e)),
    })
    app.state.server = server
    return Auth(app, tokens)
