"""The API's OpenAPI 3.1 document, served at /api/v1/openapi.json.

Written by hand next to the handlers (`app.py`): each operation lists every
status it answers with, and each body's schema, so that a client (or a fuzzer)
can rely on it.
"""

from __future__ import annotations

from typing import Any

from runner import __version__
from runner.model.results import NodeState, Result, RunStatus

EVENT_TYPES = ["run.started", "node.started", "node.log", "node.expanded", "node.finished",
               "run.paused", "run.unpaused", "run.finished"]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


_ERRORS = {
    "400": "a query parameter or header is malformed, or the body is not JSON",
    "401": "no valid token (`Authorization: Bearer TOKEN`)",
    "403": "posting a workflow's text is off (start the server with --allow-posted-workflows)",
    "404": "no such workflow, run, job or log",
    "409": "the run is not in a state that allows this, or could not be carried out",
    "413": "the body is larger than 1 MiB",
    "422": "the body, the inputs or the workflow are not valid; `problems` locates each",
}


def _errors(*codes: str) -> dict:
    return {code: _problem(_ERRORS[code]) for code in ("401", *codes)}


def _run_id() -> dict:
    return {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict, description: str) -> dict:
    if schema.get("type") in ("integer", "number"):  # `?limit=` is taken as if it were not there
        schema = {"anyOf": [schema, {"const": ""}]}
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_WAIT = _query("wait", {"type": "number", "minimum": 0, "maximum": 3600},
               "answer when the run ends, or after this many seconds (202) if it goes on")
_BODY_JSON = {"required": False, "content": {"application/json": {"schema": {}}}}


def _body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _schemas() -> dict[str, Any]:
    nullable_str = {"type": ["string", "null"]}
    number = {"type": "number"}
    return {
        "Problem": {
            "type": "object", "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"},
                "problems": {"type": "array", "items": _ref("Located")},
            },
        },
        "Located": {
            "type": "object", "required": ["file", "line", "col", "path", "message"],
            "properties": {
                "file": {"type": "string"}, "line": {"type": "integer"}, "col": {"type": "integer"},
                "path": {"type": "string", "description": "the field, as `jobs.build.steps[0].run`"},
                "message": {"type": "string"}, "severity": {"enum": ["error", "warning"]},
            },
        },
        "Input": {
            "type": "object", "required": ["name", "type", "default", "required"],
            "properties": {
                "name": {"type": "string"},
                "type": {"enum": ["string", "integer", "number", "boolean", "array", "object"]},
                "default": {}, "required": {"type": "boolean"}, "description": {"type": "string"},
                "enum": {"type": "array"},
            },
        },
        "GraphJob": {
            "type": "object", "required": ["id", "needs"],
            "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "kind": {"type": "string"},
                           "needs": {"type": "array", "items": {"type": "string"}}},
        },
        "Workflow": {
            "type": "object", "required": ["name", "title", "description", "inputs", "jobs"],
            "properties": {"name": {"type": "string", "description": "its path under --workflows"},
                           "title": {"type": "string"}, "description": {"type": "string"},
                           "inputs": {"type": "array", "items": _ref("Input")},
                           "jobs": {"type": "array", "items": _ref("GraphJob")}},
        },
        "RunStarted": {
            "type": "object", "required": ["run_id", "status"],
            "properties": {"run_id": {"type": "string"}, "status": {"enum": [s.value for s in RunStatus]}},
        },
        "RunSummary": {
            "type": "object", "required": ["run_id", "status", "workflow"],
            "properties": {
                "run_id": {"type": "string"}, "status": {"enum": [s.value for s in RunStatus]},
                "workflow": {"type": "string", "description": "the workflow file's absolute path"},
                "registered": {**nullable_str, "description": "its name in this server's registry"},
                "name": {"type": "string"}, "reason": {"type": "string"},
                "started": {"type": ["number", "null"]}, "finished": {"type": ["number", "null"]},
                "submitted": number, "duration_s": number, "attempts": {"type": "integer"},
                "only": {"type": "string"}, "jobs": {"type": "object"},
            },
        },
        "Node": {
            "type": "object",
            "properties": {
                "result": {"enum": [*(r.value for r in Result), None]},
                "state": {"enum": [s.value for s in NodeState]},
                "outputs": {}, "reason": {"type": "string"}, "attempts": {"type": "integer"},
                "duration_s": number, "started": {"type": ["number", "null"]}, "finished": {"type": ["number", "null"]},
                "instances": {"type": "object", "additionalProperties": _ref("Node")},
                "matrix": {}, "usage": {"type": "object"}, "summary": {"type": "string"},
            },
        },
        "Run": {
            "type": "object", "required": ["run_id", "status", "jobs"],
            "description": "as `runner runs show ID --format json`, with each node's state and times",
            "properties": {
                "run_id": {"type": "string"}, "status": {"enum": [s.value for s in RunStatus]},
                "workflow": {"type": "string"}, "registered": nullable_str, "name": {"type": "string"},
                "reason": {"type": "string"}, "outputs": {}, "inputs": {"type": "object"},
                "jobs": {"type": "object", "additionalProperties": _ref("Node")},
                "started": {"type": ["number", "null"]}, "duration_s": number,
                "attempts": {"type": "array", "items": {"type": "object"}},
                "graph": {"type": ["array", "null"], "items": _ref("GraphJob")},
            },
        },
        "Event": {
            "type": "object", "required": ["id", "event", "data"],
            "description": "one line of the JSON-lines stream (in SSE: `id:`, `event:` and `data:`)",
            "properties": {"id": {"type": "integer"}, "event": {"enum": EVENT_TYPES}, "data": {"type": "object"}},
        },
    }


def document() -> dict[str, Any]:
    started = {
        "201": _json(_ref("RunStarted"), "the run has begun (or is queued); with ?wait=, it has ended: its Run"),
        "202": _json(_ref("RunStarted"), "?wait= is over, the run goes on"),
    }
    started["201"]["content"]["application/json"]["schema"] = {"anyOf": [_ref("RunStarted"), _ref("Run")]}
    control = {"200": _json(_ref("RunStarted"), "done; the run's status now"), **_errors("404", "409")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "runner", "version": __version__,
                 "description": "Runs YAML workflows and follows them; see docs/server.md."},
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/health": {"get": {
                "operationId": "health", "security": [],
                "responses": {"200": _json({"type": "object", "required": ["status"],
                                            "properties": {"status": {"const": "ok"}}}, "the server answers")},
            }},
            "/api/v1/openapi.json": {"get": {
                "operationId": "openapi", "responses": {"200": _json({"type": "object"}, "this document"), **_errors()},
            }},
            "/api/v1/workflows": {"get": {
                "operationId": "listWorkflows",
                "responses": {"200": _json({
                    "type": "object", "required": ["workflows", "invalid"],
                    "properties": {"workflows": {"type": "array", "items": _ref("Workflow")},
                                   "invalid": {"type": "array", "items": {"type": "object", "properties": {
                                       "name": {"type": "string"},
                                       "problems": {"type": "array", "items": _ref("Located")}}}}},
                }, "the registered workflows, and the files under --workflows that are not valid"), **_errors()},
            }},
            "/api/v1/workflows/{name}": {"get": {
                "operationId": "getWorkflow",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json(_ref("Workflow"), "the workflow"), **_errors("404", "422")},
            }},
            "/api/v1/workflows/{name}/jobs/{job}/run": {"post": {
                "operationId": "runJob",
                "description": "Run one job with given values of the jobs it uses (`runner run --only`); "
                               "answered when it ends.",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "job", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": _body({"type": "object", "properties": {
                    "inputs": {"type": "object"},
                    "set": {"type": "object", "description": "`jobs.X.outputs.Y` (or `jobs.X.outputs`, "
                                                             "`jobs.X.result`) → value"}}}, required=False),
                "responses": {"200": _json(_ref("Run"), "the job's run, ended"),
                              **_errors("400", "404", "409", "413", "422")},
            }},
            "/api/v1/runs": {
                "get": {
                    "operationId": "listRuns",
                    "parameters": [
                        _query("status", {"enum": ["", *(s.value for s in RunStatus)]},
                               "only runs with this status (empty: any)"),
                        _query("workflow", {"type": "string"}, "only runs of this workflow (registered name or path)"),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most this many (50)"),
                        _query("cursor", {"type": "string"}, "the `next_cursor` of the page before"),
                    ],
                    "responses": {"200": _json({
                        "type": "object", "required": ["runs", "next_cursor"],
                        "properties": {"runs": {"type": "array", "items": _ref("RunSummary")},
                                       "next_cursor": {"type": ["string", "null"]}},
                    }, "runs, newest first"), **_errors("400")},
                },
                "post": {
                    "operationId": "startRun",
                    "parameters": [_WAIT],
                    "requestBody": _body({"type": "object", "properties": {
                        "workflow": {"type": "string", "description": "a registered workflow's name"},
                        "source": {"type": "string", "description": "a workflow's text (--allow-posted-workflows)"},
                        "inputs": {"type": "object"}}}),
                    "responses": {**started, **_errors("400", "403", "404", "409", "413", "422")},
                },
            },
            "/api/v1/runs/{run_id}": {"get": {
                "operationId": "getRun", "parameters": [_run_id()],
                "responses": {"200": _json(_ref("Run"), "the run"), **_errors("404")},
            }},
            "/api/v1/runs/{run_id}/events": {"get": {
                "operationId": "runEvents",
                "description": "Server-Sent Events if the request accepts text/event-stream, else JSON lines; "
                               "ends after run.finished. `?token=` is accepted here in place of the header.",
                "parameters": [
                    _run_id(),
                    _query("after", {"type": "integer", "minimum": 0}, "only events after this id"),
                    _query("token", {"type": "string"}, "a token, for clients that cannot send headers"),
                    {"name": "Last-Event-ID", "in": "header", "required": False,
                     "schema": {"type": "string", "pattern": "^[0-9]+$"}, "description": "as ?after="},
                ],
                "responses": {"200": {"description": "the events", "content": {
                    "text/event-stream": {"schema": {"type": "string"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                }}, **_errors("400", "404")},
            }},
            "/api/v1/runs/{run_id}/logs/{target}": {"get": {
                "operationId": "runLogs",
                "description": "`target` is JOB or JOB/STEP, as `runner logs ID JOB/STEP` takes it. "
                               "X-Log-Size is the whole log's length in bytes: the next ?offset=.",
                "parameters": [
                    _run_id(), {"name": "target", "in": "path", "required": True, "schema": {"type": "string"}},
                    _query("offset", {"type": "integer", "minimum": 0}, "from this byte on"),
                    _query("tail", {"type": "integer", "minimum": 0}, "only the last N lines"),
                ],
                "responses": {"200": {"description": "the log", "content": {"text/plain": {"schema": {"type": "string"}}}},
                              **_errors("400", "404")},
            }},
            "/api/v1/runs/{run_id}/cancel": {"post": {
                "operationId": "cancelRun", "parameters": [_run_id()],
                "responses": {"202": _json(_ref("RunStarted"), "cancelling: jobs with `if: always()` still run"),
                              **_errors("404", "409")},
            }},
            "/api/v1/runs/{run_id}/pause": {"post": {
                "operationId": "pauseRun", "parameters": [_run_id()], "responses": control,
            }},
            "/api/v1/runs/{run_id}/unpause": {"post": {
                "operationId": "unpauseRun", "parameters": [_run_id()], "responses": control,
            }},
            "/api/v1/runs/{run_id}/resume": {"post": {
                "operationId": "resumeRun",
                "description": "Run again what did not succeed (`runner resume`), as a new attempt of the run.",
                "parameters": [_run_id(), _WAIT],
                "requestBody": _body({"type": "object", "properties": {
                    "from": {"type": "string", "description": "also run this job again, and what follows it"},
                    "force": {"type": "boolean", "description": "even though the workflow file changed"}}},
                    required=False),
                "responses": {**started, **_errors("400", "404", "409", "413", "422")},
            }},
        },
    }
