"""`runner serve` fuzzed from its own OpenAPI document: no 5xx, and no answer that breaks the document.

schemathesis makes requests from /api/v1/openapi.json, as served, against a
real server on 127.0.0.1 that holds a token, and checks every answer against
the document (status, content type, headers, schema), for valid requests and
for requests the document says are wrong. Path parameters are sometimes those
of real runs and workflows, so that the handlers behind the 404s are reached.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import positive_data_acceptance

from conftest import write
from serving import Served

TOKEN = "fuzz-token-7d1e"
EXAMPLES = 55  # per operation and mode: 13 operations, positive and negative, some twice with real names
LEAST_REQUESTS = 1000

HELLO = """
    version: 1
    inputs:
      who: {type: string, default: world}
      times: {type: integer, default: 1}
    jobs:
      greet:
        outputs: {text: "hello ${{ inputs.who }}"}
      shout:
        needs: greet
        outputs: {text: "${{ jobs.greet.outputs.text | upper }}"}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "workflows").mkdir()
    write(tmp / "workflows", HELLO, "hello.yml")
    (tmp / "tokens").write_text(TOKEN + "\n")
    server = Served("--workflows", tmp / "workflows", "--state-dir", tmp / "state", "--token-file", tmp / "tokens",
                    cwd=tmp, token=TOKEN)
    yield server
    assert server.stop() == 130
    output = server.output()
    assert "Traceback" not in output and "internal error" not in output, output[-3000:]
    assert TOKEN not in output


def _real(served) -> dict[str, list[str]]:
    """Names the server knows: a finished run, the registered workflow and its jobs."""
    done = served.start("hello.yml", wait=30)
    return {"run_id": [done], "name": ["hello.yml"], "job": ["greet", "shout"], "target": ["greet", "shout"]}


def test_every_operation_answers_as_its_document_says(served):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    schema = schemathesis.openapi.from_url(served.api + "/openapi.json", headers=headers)
    schema.config.update(base_url=served.url)
    # Unknown query parameters are ignored, as HTTP APIs do; the token is sent with every request
    # (what happens without one is test_server_guard.py's).
    schema.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
    known = _real(served)
    session = requests.Session()
    sent = 0

    def check(strategy) -> None:
        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate], derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            nonlocal sent
            sent += 1
            # A request the schema allows may still be refused for what it means (422 for an input
            # the workflow does not take): the document lists that answer, so only its shape is checked.
            case.call_and_validate(session=session, headers=headers, timeout=60,
                                   excluded_checks=[positive_data_acceptance])

        run()

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    for operation in operations:
        check(operation.as_strategy(schemathesis.GenerationMode.POSITIVE))
        try:
            check(operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))
        except Unsatisfiable:  # every request its document allows is valid (any string in the path, …)
            print(f"no invalid request for {operation.label}")
        names = [p.name for p in operation.path_parameters]
        if names:
            fixed = st.fixed_dictionaries({name: st.sampled_from(known[name]) for name in names})
            check(fixed.flatmap(lambda given: operation.as_strategy(path_parameters=given)))
    print(f"{sent} requests")
    assert sent >= LEAST_REQUESTS
    assert served.client.get("/health").json() == {"status": "ok"}
