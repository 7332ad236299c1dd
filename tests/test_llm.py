"""llm jobs against an OpenAI-compatible server on 127.0.0.1 (runner/executors/llm.py).

The server checks the shape of every request (a request it does not accept is
a 400 saying why, which fails the test) and answers by model name: `echo`
repeats the prompt, `bad-json` answers what does not parse, `limited` answers
429 at first, and so on.  It also serves the two http ends of the example
workflow, which runs here through the CLI.
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import ROOT, cli, write
from servers import Handler, run, serve

KEY = "sk-test-0123456789abcdef"
ISSUES = [
    {"number": 101, "title": "Crash when the input is empty"},
    {"number": 102, "title": "Add a --json flag"},
    {"number": 103, "title": "Typo in the docs of retry"},
    {"number": 104, "title": "How do I run two workflows at once?"},
]


def shape_problem(request: dict, headers) -> str:
    """Why a request is not an OpenAI chat completion request, or ''."""
    if headers.get("Content-Type") != "application/json":
        return "Content-Type must be application/json"
    if not isinstance(request.get("model"), str) or not request["model"]:
        return "model must be a non-empty string"
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    for m in messages:
        if set(m) != {"role", "content"} or m["role"] not in ("system", "user", "assistant") or not isinstance(m["content"], str):
            return f"bad message {m!r}"
    allowed = {"model", "messages", "temperature", "max_tokens", "response_format"}
    if set(request) - allowed:
        return f"unexpected keys {sorted(set(request) - allowed)}"
    if "temperature" in request and not isinstance(request["temperature"], (int, float)):
        return "temperature must be a number"
    if "max_tokens" in request and not isinstance(request["max_tokens"], int):
        return "max_tokens must be an integer"
    if "response_format" in request and request["response_format"] != {"type": "json_object"}:
        return "response_format must be {type: json_object}"
    return ""


def label(prompt: str) -> str:
    text = prompt.lower()
    return "bug" if "crash" in text else "feature" if "add" in text else "docs" if "docs" in text else "question"


class OpenAI(Handler):
    def route(self, method, path, query, body):
        state = self.server.state
        if path == "/issues":
            return self.reply(200, ISSUES)
        if path == "/report":
            state["report"] = json.loads(body)
            return self.reply(201, {"received": True})
        if path != "/v1/chat/completions" or method != "POST":
            return self.reply(404, {"error": {"message": f"no route {method} {path}"}})
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            return self.reply(401, {"error": {"message": f"Incorrect API key provided: {given or 'none'}."}})
        request = json.loads(body)
        problem = shape_problem(request, self.headers)
        if problem:
            return self.reply(400, {"error": {"message": problem}})
        model = request["model"]
        user = [m["content"] for m in request["messages"] if m["role"] == "user"][-1]
        with self.server.lock:
            calls = state.setdefault(model, [])
            calls.append(time.monotonic())
            state["in_flight"] = state.get("in_flight", 0) + 1
            state["most_in_flight"] = max(state.get("most_in_flight", 0), state["in_flight"])
        try:
            if model.startswith("slow"):
                time.sleep(0.2)
            if model == "limited" and len(calls) == 1:
                return self.reply(429, {"error": {"message": "Rate limit reached"}}, headers={"Retry-After": "1"})
            if model == "overloaded":
                return self.reply(503, {"error": {"message": "overloaded"}})
            if model == "not-a-completion":
                return self.reply(200, "<html>welcome</html>", "text/html")
            if model == "refuses":
                return self.completion(request, None, refusal="I cannot help with that")
            if model == "bad-json" or (model == "bad-json-once" and len(calls) == 1):
                return self.completion(request, '{"label": "bug", oops', finish="length")
            if model == "fenced":
                return self.completion(request, '```json\n{"label": "docs"}\n```')
            if request.get("response_format"):
                return self.completion(request, json.dumps({"label": label(user), "echo": user}))
            return self.completion(request, f"you said: {user}")
        finally:
            with self.server.lock:
                state["in_flight"] -= 1

    def completion(self, request, content, refusal=None, finish="stop"):
        prompt_tokens = sum(len(m["content"].split()) for m in request["messages"])
        completion_tokens = len((content or "").split())
        self.reply(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "model": request["model"] + "-2024",
            "choices": [{
                "index": 0, "finish_reason": finish,
                "message": {"role": "assistant", "content": content, **({"refusal": refusal} if refusal else {})},
            }],
            "usage": {
                "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        })


@pytest.fixture
def openai():
    with serve(OpenAI) as server:
        server.base = f"{server.url}/v1"
        yield server


def chat_requests(server) -> list[dict]:
    return [json.loads(r["body"]) for r in server.requests if r["path"] == "/v1/chat/completions"]


# -- one completion --------------------------------------------------------------------------


def test_a_completion_its_text_and_usage(tmp_path, openai, monkeypatch):
    r = run(tmp_path, f"""
        version: 1
        secrets: [KEY]
        jobs:
          ask:
            llm:
              model: echo
              base_url: "{openai.base}"
              api_key: ${{{{ secrets.KEY }}}}
              system: Be brief.
              messages:
                - {{role: user, content: first question}}
                - {{role: assistant, content: first answer}}
              prompt: hello there
              temperature: 0.2
              max_tokens: 50
              cost_per_1k_tokens: 2
            outputs:
              text: ${{{{ response.text }}}}
              usage: ${{{{ response.usage }}}}
              model: ${{{{ response.model }}}}
              finish: ${{{{ response.finish_reason }}}}
    """, monkeypatch, secrets={"KEY": KEY})
    job = r.job("ask")
    assert job["result"] == "success", job
    assert job["outputs"] == {
        "text": "you said: hello there",
        "usage": {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12},
        "model": "echo-2024",
        "finish": "stop",
    }
    [sent] = chat_requests(openai)
    assert sent == {
        "model": "echo",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "hello there"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,
    }
    usage = {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12, "cost": 0.024}
    assert job["usage"] == usage and r.summary["usage"] == usage
    line, tokens = r.logs("ask")
    assert line.startswith(f"POST {openai.base}/chat/completions → 200 OK in ")
    assert tokens == "echo-2024: 12 tokens (8 prompt + 4 completion), cost 0.024, finish_reason stop"
    assert KEY not in json.dumps(r.events) + json.dumps(r.summary)


def test_base_url_and_key_default_to_the_declared_secrets_and_stay_masked(tmp_path, openai, monkeypatch):
    r = run(tmp_path, """
        version: 1
        secrets: [OPENAI_BASE_URL, OPENAI_API_KEY]
        jobs:
          ask:
            llm: {model: echo, prompt: hi}
            outputs: {text: "${{ response.text }}"}
    """, monkeypatch, secrets={"OPENAI_BASE_URL": openai.base, "OPENAI_API_KEY": KEY})
    assert r.job("ask")["outputs"] == {"text": "you said: hi"}
    assert r.logs("ask")[0].startswith("POST ***/chat/completions → 200 OK")
    assert "usage" in r.job("ask") and "cost" not in r.job("ask")["usage"]


def test_a_wrong_key_is_masked_in_the_endpoints_message(tmp_path, openai, monkeypatch):
    r = run(tmp_path, f"""
        version: 1
        secrets: [BAD_KEY]
        jobs:
          ask:
            llm: {{model: echo, prompt: hi, base_url: "{openai.base}", api_key: "${{{{ secrets.BAD_KEY }}}}"}}
            retry: 3
          keyless:
            llm: {{model: echo, prompt: hi, base_url: "{openai.base}"}}
    """, monkeypatch, secrets={"BAD_KEY": "sk-wrong-key-42"})
    job = r.job("ask")
    assert job["attempts"] == 1  # a 401 is not retried
    assert job["reason"] == (
        f"echo: POST {openai.base}/chat/completions returned 401 Unauthorized: Incorrect API key provided: ***."
    )
    assert "no API key was sent: set `api_key`, or declare the secret OPENAI_API_KEY" in r.job("keyless")["reason"]


def test_a_literal_api_key_is_masked_too(tmp_path, openai):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          ask: {{llm: {{model: echo, prompt: hi, base_url: "{openai.base}", api_key: sk-literal-key-7}}}}
    """)
    assert r.job("ask")["reason"].endswith("Incorrect API key provided: ***.")


# -- json ------------------------------------------------------------------------------------


def test_json_true_asks_for_an_object_and_parses_it(tmp_path, openai, monkeypatch):
    r = run(tmp_path, f"""
        version: 1
        secrets: [OPENAI_API_KEY]
        jobs:
          classify:
            llm: {{model: echo, base_url: "{openai.base}", prompt: "It crashes on start", json: true}}
            outputs: {{label: "${{{{ response.json.label }}}}", echo: "${{{{ response.json.echo }}}}"}}
          fenced:
            llm: {{model: fenced, base_url: "{openai.base}", prompt: x, json: true}}
            outputs: {{label: "${{{{ response.json.label }}}}"}}
    """, monkeypatch, secrets={"OPENAI_API_KEY": KEY})
    assert r.job("classify")["outputs"] == {"label": "bug", "echo": "It crashes on start"}
    assert r.job("fenced")["outputs"] == {"label": "docs"}
    assert all(req["response_format"] == {"type": "json_object"} for req in chat_requests(openai))


def test_an_answer_that_does_not_parse_fails_clearly_and_is_retried(tmp_path, openai, monkeypatch):
    r = run(tmp_path, f"""
        version: 1
        secrets: [OPENAI_API_KEY]
        jobs:
          never:
            llm: {{model: bad-json, base_url: "{openai.base}", prompt: x, json: true}}
            retry: 2
          second_time:
            llm: {{model: bad-json-once, base_url: "{openai.base}", prompt: x, json: true}}
            retry: 2
            outputs: {{label: "${{{{ response.json.label }}}}"}}
    """, monkeypatch, secrets={"OPENAI_API_KEY": KEY})
    never = r.job("never")
    assert never["result"] == "failure" and never["attempts"] == 2
    assert never["reason"] == (
        'bad-json: the answer is not valid JSON (cut short at max_tokens): {"label": "bug", oops (attempt 2 of 2)'
    )
    # Every attempt's tokens count.
    assert never["usage"] == {"prompt_tokens": 2, "completion_tokens": 6, "total_tokens": 8}
    assert r.job("second_time")["result"] == "success" and r.job("second_time")["attempts"] == 2
    assert r.job("second_time")["outputs"] == {"label": "question"}


def test_response_json_without_json_true_is_an_error_only_when_used(tmp_path, openai, monkeypatch):
    r = run(tmp_path, f"""
        version: 1
        secrets: [OPENAI_API_KEY]
        jobs:
          ask:
            llm: {{model: echo, base_url: "{openai.base}", prompt: hi}}
            outputs: {{value: "${{{{ response.json.value }}}}"}}
    """, monkeypatch, secrets={"OPENAI_API_KEY": KEY})
    assert r.job("ask")["reason"].startswith(
        f"{tmp_path / 'workflow.yml'}:6:22: outputs.value: `response.json`: the model's answer is not JSON (Expecting value"
    )
    assert r.job("ask")["reason"].endswith("it begins: you said: hi")


# -- failures and retries --------------------------------------------------------------------


def test_429_is_retried_after_retry_after(tmp_path, openai, monkeypatch):
    r = run(tmp_path, f"""
        version: 1
        secrets: [OPENAI_API_KEY]
        jobs:
          ask:
            llm: {{model: limited, base_url: "{openai.base}", prompt: hi}}
            retry: {{attempts: 3, delay: 100ms}}
            outputs: {{text: "${{{{ response.text }}}}"}}
          overloaded:
            llm: {{model: overloaded, base_url: "{openai.base}", prompt: hi}}
            retry: {{attempts: 2, delay: 100ms}}
    """, monkeypatch, secrets={"OPENAI_API_KEY": KEY})
    job = r.job("ask")
    assert job["result"] == "success" and job["attempts"] == 2
    first, second = openai.state["limited"]
    assert second - first >= 0.95
    assert r.logs("ask")[0].endswith("429 Too Many Requests in " + r.logs("ask")[0].split(" in ")[1])
    assert "Retry-After 1s" in r.logs("ask")[0]
    assert r.job("overloaded")["attempts"] == 2
    assert r.job("overloaded")["reason"].endswith("503 Service Unavailable: overloaded (attempt 2 of 2)")


def test_an_endpoint_that_is_not_openai_compatible_is_said_so(tmp_path, openai, monkeypatch):
    r = run(tmp_path, f"""
        version: 1
        secrets: [OPENAI_API_KEY]
        jobs:
          wrong:
            llm: {{model: not-a-completion, base_url: "{openai.base}", prompt: hi}}
            retry: 3
          refused:
            llm: {{model: refuses, base_url: "{openai.base}", prompt: hi}}
    """, monkeypatch, secrets={"OPENAI_API_KEY": KEY})
    wrong = r.job("wrong")
    assert wrong["attempts"] == 1
    assert wrong["reason"] == (
        "not-a-completion: the endpoint's answer is not a chat completion (is base_url right? it usually ends in /v1): "
        "<html>welcome</html>"
    )
    assert r.job("refused")["reason"] == "refuses: the answer has no text (the model refused: I cannot help with that)"


def test_llm_timeout(tmp_path, openai, monkeypatch):
    r = run(tmp_path, f"""
        version: 1
        secrets: [OPENAI_API_KEY]
        jobs:
          slow:
            llm: {{model: slow, base_url: "{openai.base}", prompt: hi, timeout: 100ms}}
    """, monkeypatch, secrets={"OPENAI_API_KEY": KEY})
    assert r.job("slow")["result"] == "failure"
    assert "timed out" in r.job("slow")["reason"] or "(timeout)" in r.job("slow")["reason"]


def test_mistakes_in_a_computed_call_fail_the_job_where_the_field_is(tmp_path, openai):
    r = run(tmp_path, f"""
        version: 1
        jobs:
          hot: {{llm: {{temperature: "${{{{ 5 }}}}", model: echo, prompt: hi, base_url: "{openai.base}"}}}}
          odd: {{llm: {{messages: "${{{{ [{{'role': 'robot'}}] }}}}", model: echo, base_url: "{openai.base}"}}}}
          empty: {{llm: {{messages: "${{{{ [] }}}}", model: echo, base_url: "{openai.base}"}}}}
    """)
    file = tmp_path / "workflow.yml"
    assert r.job("hot")["reason"] == f"{file}:3:28: llm.temperature: expected a number from 0 to 2, got '5'"
    assert r.job("odd")["reason"] == (
        f"{file}:4:25: llm.messages: message 1 is not {{role, content}} with role system, user or assistant"
    )
    assert r.job("empty")["reason"] == f"{file}:5:27: llm: no `prompt` and no `messages`: there is nothing to ask"
    assert chat_requests(openai) == []


# -- batches ---------------------------------------------------------------------------------


def test_a_matrix_is_a_batch_bounded_by_max_parallel_with_usage_summed(tmp_path, openai, monkeypatch):
    r = run(tmp_path, f"""
        version: 1
        concurrency: 8
        secrets: [OPENAI_API_KEY]
        jobs:
          batch:
            matrix:
              word: [one, two, three, four, five, six]
              max_parallel: 2
            llm:
              model: slow-echo
              base_url: "{openai.base}"
              prompt: "${{{{ matrix.word }}}}"
              cost_per_1k_tokens: 1
            outputs: {{text: "${{{{ response.text }}}}"}}
          after:
            needs: batch
            llm:
              model: echo
              base_url: "{openai.base}"
              prompt: "${{{{ jobs.batch.outputs | map(attribute='text') | join(', ') }}}}"
            outputs: {{text: "${{{{ response.text }}}}"}}
        outputs:
          answer: ${{{{ jobs.after.outputs.text }}}}
    """, monkeypatch, secrets={"OPENAI_API_KEY": KEY})
    assert r.summary["status"] == "success"
    assert openai.state["most_in_flight"] == 2
    batch = r.job("batch")
    assert [o["text"] for o in batch["outputs"]] == [f"you said: {w}" for w in ["one", "two", "three", "four", "five", "six"]]
    assert batch["usage"] == {"prompt_tokens": 6, "completion_tokens": 18, "total_tokens": 24, "cost": 0.024}
    instance = batch["instances"]["batch (word=one)"]
    assert instance["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4, "cost": 0.004}
    assert r.summary["usage"]["total_tokens"] == 24 + r.job("after")["usage"]["total_tokens"]
    assert r.summary["usage"]["cost"] == 0.024
    assert r.summary["outputs"]["answer"].startswith("you said: you said: one, you said: two")
    # The recorded run carries the same usage as --output-json.
    shown = cli("runs", "show", r.summary["run_id"], "--state-dir", tmp_path / "state", "--format", "json")
    assert json.loads(shown.stdout)["usage"] == r.summary["usage"], shown.stdout + shown.stderr
    text = cli("runs", "show", r.summary["run_id"], "--state-dir", tmp_path / "state").stdout
    assert f"usage     {r.summary['usage']['total_tokens']} tokens" in text and "cost 0.024" in text, text


def test_usage_of_a_sub_workflow_counts_for_the_run(tmp_path, openai, monkeypatch):
    (tmp_path / "lib").mkdir()
    write(tmp_path / "lib", f"""
        version: 1
        secrets: [OPENAI_API_KEY]
        jobs:
          ask:
            llm: {{model: echo, base_url: "{openai.base}", prompt: hello}}
    """, name="child.yml")
    r = run(tmp_path, """
        version: 1
        jobs:
          child: {uses: lib/child.yml}
    """, monkeypatch, secrets={"OPENAI_API_KEY": KEY})
    assert r.summary["status"] == "success", r.summary
    assert r.job("child")["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    assert r.summary["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}


def test_the_console_prints_the_runs_tokens_and_cost(tmp_path, openai):
    path = write(tmp_path, f"""
        version: 1
        secrets: [OPENAI_API_KEY]
        jobs:
          ask: {{llm: {{model: echo, base_url: "{openai.base}", prompt: hi there, cost_per_1k_tokens: 0.5}}}}
    """)
    done = cli("run", path, "--state-dir", tmp_path / "state", env={"OPENAI_API_KEY": KEY})
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.endswith(" (6 tokens: 2 prompt + 4 completion, cost 0.003)"), last


# -- the example workflow --------------------------------------------------------------------


def test_the_example_workflow_chains_http_llm_and_http(tmp_path, openai):
    out = tmp_path / "out.json"
    done = cli(
        "run", ROOT / "workflows" / "triage-issues.yml",
        "--input", f"issues_url={openai.url}/issues", "--input", f"report_url={openai.url}/report",
        "--input", "limit=4", "--state-dir", tmp_path / "state", "--output-json", out,
        env={"OPENAI_BASE_URL": openai.base, "OPENAI_API_KEY": KEY},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(out.read_text())
    assert summary["outputs"]["labels"] == ["bug", "feature", "docs", "question"]
    assert summary["outputs"]["posted"] == 201
    assert summary["outputs"]["tokens"] == summary["jobs"]["classify"]["usage"]["total_tokens"]
    assert summary["usage"]["cost"] > 0
    report = openai.state["report"]
    assert report["source"] == f"{openai.url}/issues"
    assert [entry["number"] for entry in report["labels"]] == [101, 102, 103, 104]
    assert openai.state["most_in_flight"] <= 2
    assert KEY not in done.stdout and openai.base not in done.stdout
