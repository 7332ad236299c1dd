"""LLM jobs: one chat completion against an OpenAI-compatible endpoint.

The request is an http request like any other (`session.Session.request`: the
run's client, the deadline, the body limit, the log line, masking); this module
only shapes the call and reads the answer.  A completion has no effect but its
cost, so it is retried like an idempotent request: refused connections,
timeouts, 429 and 5xx, after the server's Retry-After when it gives one.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from runner.model.results import Result
from runner.expr.templates import TemplateError, to_text
from runner.executors import NodeRun, Outcome
from runner.executors.http import SessionExecutor, SpecError, request_timeout, resolved
from runner.executors.session import Reply, Request, RequestFailed, traced
from runner.executors.response import Response
from runner.model import checks

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 600.0  # models can take minutes over a long answer
BASE_URL_SECRET = "OPENAI_BASE_URL"
API_KEY_SECRET = "OPENAI_API_KEY"


class LlmExecutor(SessionExecutor):

    async def run(self, node: NodeRun) -> Outcome:
        try:
            call = Call(node)
        except SpecError as e:
            return Outcome(Result.FAILURE, self.session.mask(str(e)), retryable=False)
        node.timeout_retryable = True
        try:
            reply = await self.session.request(call.request, lambda line: node.log("request", "stdout", line))
        except RequestFailed as e:
            return Outcome(Result.FAILURE, e.message, retryable=e.retryable)
        if not reply.ok:
            return Outcome(
                Result.FAILURE, self._refused(call, reply), retryable=reply.transient,
                retry_after=reply.retry_after if reply.transient else None,
            )
        return self._answer(call, reply, node)

    def _snippet(self, call: "Call", text: str) -> str:
        return self.session.snippet(text, call.request.secrets)

    def _refused(self, call: "Call", reply: Reply) -> str:
        """The endpoint said no: its own error message when it gives one (OpenAI's `error.message`)."""
        detail = reply.text
        try:
            error = json.loads(detail).get("error")
            detail = (error.get("message") or detail) if isinstance(error, Mapping) else (error or detail)
        except (ValueError, AttributeError):
            pass
        reason = f"{call.model}: {reply.method} {reply.url} returned {reply.status} {reply.phrase}".rstrip()
        message = self._snippet(call, to_text(detail))
        if message:
            reason += f": {message}"
        if reply.status == 401 and not call.has_key:
            reason += f" (no API key was sent: set `api_key`, or declare the secret {API_KEY_SECRET})"
        return reason

    def _answer(self, call: "Call", reply: Reply, node: NodeRun) -> Outcome:
        try:
            data = json.loads(reply.text)
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return Outcome(
                Result.FAILURE,
                f"{call.model}: the endpoint's answer is not a chat completion "
                f"(is base_url right? it usually ends in /v1): {self._snippet(call, reply.text) or 'empty'}",
                retryable=False,
            )
        usage = _usage(data.get("usage"), call.cost_per_1k_tokens)
        text = message.get("content")
        finish = choice.get("finish_reason")
        if usage:
            line = f"{data.get('model') or call.model}: {usage['total_tokens']} tokens"
            line += f" ({usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion)"
            if "cost" in usage:
                line += f", cost {usage['cost']:g}"
            node.log("request", "stdout", f"{line}, finish_reason {finish}")
        if not isinstance(text, str):
            refusal = message.get("refusal")
            why = f"the model refused: {self._snippet(call, to_text(refusal))}" if refusal else f"finish_reason: {finish}"
            reason = f"{call.model}: the answer has no text ({why})"
            return Outcome(Result.FAILURE, reason, retryable=False, usage=usage)
        fields = {
            "text": text,
            "usage": {k: (usage or {}).get(k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
            "model": data.get("model") or call.model,
            "finish_reason": finish,
        }
        describe = functools.partial(self._snippet, call)
        response = Response(fields, _unfenced(text) if call.json else text, describe, what="the model's answer")
        if call.json:
            try:
                response["json"]
            except TemplateError:
                cut = " (cut short at max_tokens)" if finish == "length" else ""
                start = self._snippet(call, text)
                reason = f"{call.model}: the answer is not valid JSON{cut}: " + (start or "empty")
                # Another sample may well parse: worth a retry.
                return Outcome(Result.FAILURE, reason, retryable=True, usage=usage)
        return Outcome(Result.SUCCESS, scope={"response": response}, usage=usage)


class Call:
    """One chat completion, as an llm job describes it: rendered and checked."""

    def __init__(self, node: NodeRun):
        spec = node.job.llm
        field = lambda key: resolved("llm", spec, key, node.scope)  # noqa: E731
        secrets = node.scope.get("secrets") or {}
        self.model = field("model")
        base_url = field("base_url")
        if not base_url:
            try:
                base_url = checks.base_url(secrets.get(BASE_URL_SECRET) or DEFAULT_BASE_URL)
            except checks.FieldError as e:
                raise SpecError(f"llm: the secret {BASE_URL_SECRET}: {e}") from None
        api_key = field("api_key")
        api_key = (api_key if api_key is not None else to_text(secrets.get(API_KEY_SECRET))).strip()
        self.has_key = bool(api_key)
        self.json = field("json")
        self.cost_per_1k_tokens = field("cost_per_1k_tokens")
        messages = _messages(field("system"), field("messages"), field("prompt"))
        if not any(m["role"] != "system" for m in messages):
            where = spec.locations.get("messages", node.job.location)
            raise SpecError(f"{where}: llm: no `prompt` and no `messages`: there is nothing to ask")
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if field("temperature") is not None:
            body["temperature"] = field("temperature")
        if field("max_tokens") is not None:
            body["max_tokens"] = field("max_tokens")
        if self.json:
            body["response_format"] = {"type": "json_object"}
        headers = traced({"Accept": "application/json"}, node.traceparent)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.request = Request(
            method="POST",
            url=base_url + "/chat/completions",
            headers=headers,
            json=body,
            has_json=True,
            timeout=request_timeout(node, field("timeout"), DEFAULT_TIMEOUT),
            secrets=(api_key,) if api_key else (),
        )


def _messages(system: str | None, given: tuple | None, prompt: str | None) -> list[dict[str, str]]:
    """`system` first, then `messages`, then `prompt` as the user's turn."""
    turns = [("system", system)] if system is not None else []
    turns.extend(given or ())
    if prompt is not None:
        turns.append(("user", prompt))
    return [{"role": role, "content": content} for role, content in turns]


def _usage(usage: Any, cost_per_1k: float | None) -> dict[str, Any] | None:
    """Token counts as the endpoint reports them (and the cost, given a price); None if it reports none."""
    if not isinstance(usage, Mapping):
        return None
    counts = {
        key: int(usage[key])
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(usage.get(key), (int, float)) and not isinstance(usage.get(key), bool)
    }
    if not counts:
        return None
    if "total_tokens" not in counts:
        counts["total_tokens"] = counts.get("prompt_tokens", 0) + counts.get("completion_tokens", 0)
    if cost_per_1k is not None:
        counts["cost"] = round(counts["total_tokens"] / 1000 * cost_per_1k, 6)
    return counts


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def _unfenced(text: str) -> str:
    """A JSON answer wrapped in a Markdown code fence, as some models write it, without the fence."""
    match = _FENCE.match(text)
    return match.group(1) if match else text

