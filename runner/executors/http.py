"""HTTP jobs: one request, no container, made through the run's `Session` (`session.py`).

Here: the request the job describes, rendered and checked, and what its response
means for the job: the expected statuses, and whether a failed request may be
retried (a method that is not idempotent only when `retry.on_methods` says so).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.model import checks
from runner.model.results import Result
from runner.model.workflow import BodyKind, HttpSpec, LlmSpec
from runner.expr.templates import TemplateError, render_value, templates_in
from runner.executors import Executor, NodeFailed, NodeRun, Outcome
from runner.executors.response import Headers, Response
from runner.executors.session import DEFAULT_TIMEOUT, Request, RequestFailed, Session, traced

IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")  # retried unless `retry.on_methods` says otherwise


class SpecError(NodeFailed):
    """A request the workflow describes cannot be made; the message says why and where it is written."""


class SessionExecutor(Executor):
    """An executor whose requests go through the run's one Session, closed when the run ends."""

    def __init__(self, session: Session):
        self.session = session

    async def aclose(self) -> None:
        await self.session.aclose()


class HttpExecutor(SessionExecutor):

    async def run(self, node: NodeRun) -> Outcome:
        try:
            req, expect = http_request(node)
        except SpecError as e:
            return Outcome(Result.FAILURE, self.session.mask(str(e)), retryable=False)
        # A method that is not idempotent may have taken effect: retried only if the workflow says so.
        repeatable = req.method in (node.retry.on_methods or IDEMPOTENT)
        node.timeout_retryable = repeatable
        note = ""
        if req.verify is False and req.url.lower().startswith("https:"):
            note = "TLS certificate not verified (verify: false)"
            node.log("request", "stderr", f"warning: {note}")
        log = lambda line: node.log("request", "stdout", line)  # noqa: E731
        try:
            reply = await self.session.request(req, log)
        except RequestFailed as e:
            retryable = e.retryable and (repeatable or not e.sent)
            reason = e.message + self._not_retried(node, req, e.retryable and not retryable)
            return Outcome(Result.FAILURE, _with_note(reason, note), retryable=retryable)
        if not _expected(reply.status, expect):
            retryable = reply.transient and repeatable
            wanted = "2xx" if expect is None else ", ".join(map(str, expect))
            status = f"{reply.status} {reply.phrase}".strip()
            reason = f"{reply.method} {reply.url} returned {status} (expected {wanted})"
            body = self.session.snippet(reply.text)
            if body:
                reason += f": {body}"
            reason += self._not_retried(node, req, reply.transient and not repeatable)
            return Outcome(
                Result.FAILURE, _with_note(reason, note), retryable=retryable,
                retry_after=reply.retry_after if retryable else None,
            )
        fields = {"status": reply.status, "headers": Headers(reply.headers), "text": reply.text, "url": reply.final_url}
        response = Response(fields, reply.text, self.session.snippet)
        return Outcome(Result.SUCCESS, note, scope={"response": response})

    @staticmethod
    def _not_retried(node: NodeRun, req: Request, held_back: bool) -> str:
        if held_back and node.retry.attempts > 1:
            return f" (not retried: a {req.method} may have taken effect; list it in retry.on_methods to retry it)"
        return ""


def _with_note(reason: str, note: str) -> str:
    return f"{reason}; {note}" if note else reason


def _expected(status: int, expect: tuple[int, ...] | None) -> bool:
    return 200 <= status < 300 if expect is None else status in expect


def http_request(node: NodeRun) -> tuple[Request, tuple[int, ...] | None]:
    """The request an http job describes, rendered and checked; SpecError if it cannot be made."""
    spec = node.job.http
    field = lambda key: resolved("http", spec, key, node.scope)  # noqa: E731
    req = Request(method=field("method"), url=field("url"))
    req.headers = traced(dict(field("headers") or {}), node.traceparent)
    req.params = dict(field("params") or {}) or None
    if spec.body_kind is BodyKind.JSON:
        req.json, req.has_json = render_value(field("json"), {}), True  # plain lists and dicts for JSON
    elif spec.body_kind is BodyKind.TEXT:
        req.content = field("body").encode("utf-8")
    elif spec.body_kind is BodyKind.FORM:
        req.form = dict(field("form"))
    req.timeout = request_timeout(node, field("timeout"), DEFAULT_TIMEOUT)
    req.max_bytes = field("max_bytes")
    req.follow_redirects = field("follow_redirects")
    verify = field("verify")
    if isinstance(verify, str):
        path = Path(node.workspace, os.path.expanduser(verify))
        if not path.is_file():
            raise SpecError(f"{spec.locations['verify']}: http.verify: no CA bundle at {path}")
        verify = str(path)
    req.verify = verify
    return req, field("expect")


def resolved(kind: str, spec: HttpSpec | LlmSpec, key: str, scope: Mapping[str, Any]) -> Any:
    """A field's value: as compiled, or rendered and checked as the compiler checks one written out.

    SpecError names where the field is written in the workflow.
    """
    value = spec.value(key)
    if not any(templates_in(value)):
        return value
    try:
        return checks.FIELDS[kind][key](render_value(value, scope))
    except (TemplateError, checks.FieldError) as e:
        raise SpecError(f"{spec.locations[key]}: {kind}.{key}: {e}") from None


def request_timeout(node: NodeRun, seconds: float | None, default: float) -> float:
    """The request's total deadline: its own `timeout`, else the job's (which the scheduler keeps), else `default`."""
    if seconds is None:
        return default if node.job.timeout is None else math.inf
    return seconds
