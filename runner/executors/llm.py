"""LLM jobs: one chat completion against an OpenAI-compatible endpoint.

The request is an http request like any other (`http.Session.request`: the
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
from runner.executors.http import (
    DEFAULT_MAX_BYTES,
    Reply,
    Request,
    RequestFailed,
    Response,
    SessionExecutor,
    SpecError,
    boolean,
    check_url,
    positive_int,
    render_field,
    request_timeout,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 600.0  # models can take minutes over a long answer
BASE_URL_SECRET = "OPENAI_BASE_URL"
API_KEY_SECRET = "OPENAI_API_KEY"
ROLES = ("system", "user", "assistant")


class LlmExecutor(SessionExecutor):

    async def run(self, node: NodeRun) -> Outcome:
        try:
            call = Call(node)
        except (TemplateError, SpecError) as e:
            return Outcome(Result.FAILURE, self.session.mask(f"llm: {e}"), retryable=False)
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
        spec = node.job.spec["llm"]
        values = {key: render_field(key, value, node.scope) for key, value in spec.items()}
        secrets = node.scope.get("secrets") or {}
        self.model = to_text(values.get("model")).strip()
        if not self.model:
            raise SpecError("model: empty")
        base_url = to_text(values.get("base_url") or secrets.get(BASE_URL_SECRET) or DEFAULT_BASE_URL).strip()
        api_key = to_text(values.get("api_key") if "api_key" in values else secrets.get(API_KEY_SECRET) or "").strip()
        self.has_key = bool(api_key)
        self.json = boolean(values.get("json", False), "json")
        cost = values.get("cost_per_1k_tokens")
        if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost < 0):
            raise SpecError("cost_per_1k_tokens: expected a number of at least 0")
        self.cost_per_1k_tokens = cost
        body: dict[str, Any] = {"model": self.model, "messages": _messages(values)}
        if values.get("temperature") is not None:
            temperature = values["temperature"]
            if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
                raise SpecError(f"temperature: expected a number from 0 to 2, got {to_text(temperature)!r}")
            body["temperature"] = temperature
        if values.get("max_tokens") is not None:
            body["max_tokens"] = positive_int(values["max_tokens"], "max_tokens")
        if self.json:
            body["response_format"] = {"type": "json_object"}
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.request = Request(
            method="POST",
            url=check_url(base_url.rstrip("/") + "/chat/completions"),
            headers=headers,
            json=body,
            has_json=True,
            timeout=request_timeout(node, values.get("timeout"), DEFAULT_TIMEOUT),
            max_bytes=DEFAULT_MAX_BYTES,
            secrets=(api_key,) if api_key else (),
        )


def _messages(values: Mapping[str, Any]) -> list[dict[str, str]]:
    """`system` first, then `messages`, then `prompt` as the user's turn."""
    messages: list[dict[str, str]] = []
    if values.get("system") is not None:
        messages.append({"role": "system", "content": to_text(values["system"])})
    given = values.get("messages")
    if given is not None:
        if not isinstance(given, list):
            raise SpecError("messages: expected a list of {role, content}")
        for i, message in enumerate(given):
            if not isinstance(message, Mapping) or message.get("role") not in ROLES or "content" not in message:
                raise SpecError(f"messages[{i}]: expected {{role, content}} with role system, user or assistant")
            messages.append({"role": message["role"], "content": to_text(message["content"])})
    if values.get("prompt") is not None:
        messages.append({"role": "user", "content": to_text(values["prompt"])})
    if not any(m["role"] != "system" for m in messages):
        raise SpecError("no `prompt` and no `messages`: there is nothing to ask")
    return messages


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

