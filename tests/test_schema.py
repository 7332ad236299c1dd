"""runner/schema.py and the JSON Schema: every violation, located and in plain words."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from runner.load import schema
from runner.errors import Problem, WorkflowInvalid
from runner.load.document import load_bytes

ROOT = Path(__file__).resolve().parent.parent
SPEC = Path("/work/shared/spec/workflow-format.md")
FILE = "wf.yml"


def problems(text: str) -> list[Problem]:
    """What the loader and then the schema find wrong with `text`."""
    raw = textwrap.dedent(text).lstrip().encode()
    try:
        doc = load_bytes(raw, FILE)
    except WorkflowInvalid as e:
        return e.problems
    return schema.check(doc)


def only(text: str) -> Problem:
    found = problems(text)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def where(problem: Problem) -> tuple[int, int]:
    return problem.location.line, problem.location.col


def one_job(extra: str) -> str:
    """A workflow with job `a` (a one-line `run`) plus the job keys in `extra`."""
    return "version: 1\njobs:\n  a:\n    run: echo hi\n" + textwrap.indent(textwrap.dedent(extra).lstrip(), "    ")


# -- the schema itself ---------------------------------------------------------


def the_schema() -> dict:
    return json.loads(schema.schema_text())


def test_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(the_schema())


def test_packaged_schema_is_the_published_schema():
    published = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text(encoding="utf-8"))
    assert the_schema() == published


def _properties(node, path=""):
    """(path, property schema) for every entry of every `properties` in the schema."""
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{path}/properties/{name}", sub
        for key, sub in node.items():
            yield from _properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _properties(sub, f"{path}/{i}")


def _is_conditional(path: str) -> bool:
    # Properties under if/then/else, dependentSchemas, not, allOf… restate a key
    # already described where it is declared; they constrain, not declare.
    return bool(re.search(r"/(if|then|else|dependentSchemas|not|allOf|anyOf|oneOf)(/|$)", path))


def test_every_declared_property_has_a_description():
    declared = [(path, sub) for path, sub in _properties(the_schema()) if not _is_conditional(path)]
    assert len(declared) > 50
    missing = [path for path, sub in declared if not (isinstance(sub, dict) and sub.get("description"))]
    assert not missing, f"properties without a description: {missing}"


def test_every_definition_has_a_description():
    missing = [name for name, sub in the_schema()["$defs"].items() if not sub.get("description")]
    assert not missing


def spec_example() -> str:
    text = SPEC.read_text(encoding="utf-8")
    match = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert match, "the spec has no ```yaml block"
    return match.group(1)


def test_the_spec_complete_example_is_valid():
    assert problems(spec_example()) == []


def test_shipped_example_workflows_are_valid():
    for path in sorted((ROOT / "workflows").glob("*.yml")):
        assert problems(path.read_text()) == [], path


# -- unknown keys --------------------------------------------------------------


def test_misspelt_job_key_suggests_the_right_one_at_the_key():
    problem = only(
        """
        version: 1
        jobs:
          build: {run: echo}
          test:
            need: build
            run: echo
        """
    )
    assert where(problem) == (5, 5)
    assert "unknown key `need`" in problem.message
    assert "did you mean `needs`?" in problem.message
    assert str(problem).startswith(f"{FILE}:5:5: ")


def test_misspelt_top_level_key_suggests_the_right_one():
    found = problems("version: 1\njbos:\n  a: {run: echo}\n")
    hint = [p for p in found if "did you mean `jobs`?" in p.message]
    assert hint, "\n".join(map(str, found))
    assert where(hint[0]) == (2, 1)


def test_misspelt_step_key_suggests_the_right_one():
    found = problems(
        """
        version: 1
        jobs:
          a:
            steps:
              - id: one
                rnu: echo
        """
    )
    hint = [p for p in found if "unknown key `rnu`" in p.message]
    assert hint, "\n".join(map(str, found))
    assert where(hint[0]) == (6, 9)
    assert "did you mean `run`?" in hint[0].message


def test_unknown_key_without_a_close_match_is_still_named():
    problem = only(one_job("zzzzzz: 1\n"))
    assert where(problem) == (5, 5)
    assert "unknown key `zzzzzz`" in problem.message


# -- values --------------------------------------------------------------------


def test_version_2_is_refused_at_the_value():
    problem = only("version: 2\njobs:\n  a: {run: echo}\n")
    assert where(problem) == (1, 10)
    assert "must be 1" in problem.message


def test_version_3_10_says_yaml_read_it_as_3_1():
    problem = only("version: 3.10\njobs:\n  a: {run: echo}\n")
    assert where(problem) == (1, 10)
    assert "must be 1" in problem.message
    assert "3.1" in problem.message


def test_missing_version_is_reported():
    problem = only("jobs:\n  a: {run: echo}\n")
    assert "version" in problem.message


@pytest.mark.parametrize("job_id", ["1build", "-job", "build.x"])
def test_bad_job_id_is_reported_at_the_id(job_id):
    problem = only(f"version: 1\njobs:\n  ok: {{run: echo}}\n  {job_id}: {{run: echo}}\n")
    assert where(problem) == (4, 3)
    assert f"`{job_id}`" in problem.message
    assert "letters, digits, _ and -" in problem.message


@pytest.mark.parametrize("value", ["5 minutes", "1x", "-5s", "fast"])
def test_bad_duration_is_reported_at_the_value(value):
    problem = only(one_job(f"timeout: {value}\n"))
    assert where(problem) == (5, 14)
    assert "duration" in problem.message
    assert "30s" in problem.message


@pytest.mark.parametrize("value", ["90", "30s", "5m", "1h30m", "500ms", "1d", "1.5", "'${{ inputs.t }}'"])
def test_good_durations_are_accepted(value):
    assert problems(one_job(f"timeout: {value}\n")) == []


@pytest.mark.parametrize("value", ["0", "0.0", "0s", "00m", "0h0m0s", "0ms"])
def test_a_timeout_of_zero_is_refused_once_at_the_value(value):
    problem = only(one_job(f"timeout: {value}\n"))
    assert where(problem) == (5, 14)
    assert problem.message == "timeout: must be more than 0"


@pytest.mark.parametrize("value", ["0.5", "0s1ms", "10ms"])
def test_a_short_timeout_is_accepted(value):
    assert problems(one_job(f"timeout: {value}\n")) == []


def test_a_delay_of_zero_is_still_accepted():
    assert problems(one_job("retry: {attempts: 2, delay: 0s}\n")) == []


def test_job_with_http_and_steps_is_refused():
    problem = only(
        """
        version: 1
        jobs:
          a:
            http: {url: "https://example.com"}
            steps:
              - run: echo
        """
    )
    assert where(problem) == (5, 5) or where(problem) == (6, 7)
    assert "exactly one kind" in problem.message
    assert "`http`" in problem.message and "`steps`" in problem.message


def test_job_with_steps_and_run_is_refused():
    problem = only(one_job("steps:\n  - run: echo\n"))
    assert "either `steps` or a single `run`" in problem.message


def test_network_host_is_refused():
    problem = only(one_job("network: host\n"))
    assert where(problem) == (5, 14)
    assert "bridge" in problem.message and "none" in problem.message


def test_continue_on_error_no_mentions_yaml_11():
    problem = only(one_job("continue_on_error: no\n"))
    assert where(problem) == (5, 24)
    assert "YAML 1.1" in problem.message
    assert "true or false" in problem.message


def test_fail_fast_yes_mentions_yaml_11():
    problem = only("version: 1\nfail_fast: yes\njobs:\n  a: {run: echo}\n")
    assert where(problem) == (2, 12)
    assert "YAML 1.1" in problem.message


def test_every_problem_in_a_file_is_reported():
    found = problems(
        """
        version: 1
        nmae: x
        jobs:
          a:
            run: echo
            timout: 5m
            network: host
          2b: {run: echo}
        """
    )
    lines = sorted(p.location.line for p in found)
    assert lines == [2, 6, 7, 8], "\n".join(map(str, found))


def test_problems_print_as_file_line_col_message():
    for problem in problems("version: 1\nnmae: x\njobs:\n  a:\n    run: echo\n    network: host\n"):
        assert re.match(rf"{FILE}:\d+:\d+: \S", str(problem)), str(problem)


def test_long_values_are_truncated_in_messages():
    long = "x" * 500
    problem = only(f"version: 1\nfail_fast: {long}\njobs:\n  a: {{run: echo}}\n")
    assert len(str(problem)) < 200
    assert "xxxxxxxxxx" in problem.message  # the value is shown, shortened
    assert "x" * 100 not in str(problem)
    assert "true or false" in problem.message


def test_unquoted_double_braces_hint_at_dollar_expression():
    found = problems(one_job("env:\n  NAME: {{ inputs.name }}\n"))
    assert found, "an unquoted `{{ }}` must be reported"
    assert any("${{" in p.message for p in found), "\n".join(map(str, found))
    assert found[0].location.line == 6


def test_unquoted_double_braces_in_a_scalar_field_hint_at_dollar_expression():
    found = problems(one_job("continue_on_error: {{ inputs.flag }}\n"))
    assert any("${{" in p.message for p in found), "\n".join(map(str, found))


def test_quoted_dollar_expression_is_accepted():
    assert problems(one_job("continue_on_error: '${{ inputs.flag }}'\n")) == []


def test_wrong_type_says_what_was_expected_and_what_was_found():
    problem = only("version: 1\nname: [a, b]\njobs:\n  a: {run: echo}\n")
    assert where(problem) == (2, 7)
    assert "expected text" in problem.message
    assert "got a list" in problem.message


def test_empty_jobs_is_refused():
    problem = only("version: 1\njobs: {}\n")
    assert "at least one job" in problem.message


def test_input_without_a_type_is_told_only_that():
    # The rules for each type's default apply to an input of that type, not to one that names none.
    problem = only("version: 1\ninputs:\n  d: {default: soon}\njobs:\n  a: {run: echo}\n")
    assert where(problem) == (3, 6)
    assert "missing required key `type`" in problem.message


def test_a_healthcheck_wait_is_a_fixed_duration_by_the_schema_too():
    # An editor that reads the schema must not offer what `runner validate` refuses.
    problem = only(one_job("""
        image: busybox
        services:
          db: {image: busybox, healthcheck: {run: "true", interval: "${{ 1 }}"}}
    """))
    assert where(problem) == (7, 65)
    assert "fixed duration" in problem.message and "not a `${{ }}` expression" in problem.message


def test_concurrency_is_a_number_written_out():
    # It sizes the run before anything is rendered; `--concurrency` chooses it per run.
    problem = only("version: 1\nconcurrency: ${{ inputs.n }}\njobs:\n  a: {run: echo}\n")
    assert where(problem) == (2, 14)
    assert "`concurrency` is a whole number of at least 1 (`--concurrency N` sets it for one run)" in problem.message


def test_string_input_with_integer_default_is_refused():
    problem = only("version: 1\ninputs:\n  n: {type: string, default: 3}\njobs:\n  a: {run: echo}\n")
    assert "default of a string input" in problem.message


AGREEMENT_CASES = [
    "version: 1\njobs:\n  a: {outputs: {x: 1}}\n",
    "version: 2\njobs:\n  a: {outputs: {x: 1}}\n",
    "version: 1\njobs:\n  a: {need: b, outputs: {}}\n",
    "version: 1\njobs:\n  a-b: {outputs: {}}\n",
    "version: 1\njobs:\n  a: {image: x, run: echo, timeout: 5 minutes}\n",
    "version: 1\njobs:\n  a: {http: {url: 'http://x'}, steps: [{run: echo}]}\n",
    "version: 1\njobs:\n  a: {image: x, run: echo, network: host}\n",
    "version: 1\njobs:\n  a: {image: x, steps: [{name: no run}]}\n",
    "version: 1\nconcurrency: 0\njobs:\n  a: {outputs: {}}\n",
    "version: 1\njobs:\n  a: {image: x, run: echo, retry: {attempts: x}}\n",
    "version: 1\njobs:\n  a: {with: {x: 1}, outputs: {}}\n",
    "version: 1\njobs:\n  a: {shell: bash, outputs: {}}\n",
    "version: 1\njobs:\n  a: {matrix: {n: '${{ [1] }}', max_parallel: lots}, outputs: {}}\n",
]


@pytest.mark.parametrize("text", AGREEMENT_CASES)
def test_fast_and_explaining_validators_agree(text):
    # A document the fast validator passes is never examined again, so the two
    # must agree on every document, or invalid files would slip through.
    data = load_bytes(text.encode(), "w.yml").data
    fast = schema._fast_validator().is_valid(data)
    explained = not list(schema._validator().iter_errors(data))
    assert fast == explained
