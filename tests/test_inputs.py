"""Inputs: given values coerced to their declared types; every problem named with its declaration."""

from __future__ import annotations

import pytest

from conftest import write
from runner.errors import WorkflowInvalid
from runner.load.workflow import load_workflow
from runner.model.inputs import resolve

WORKFLOW = """
    version: 1
    inputs:
      n: {type: integer, minimum: 1, maximum: 10, default: 2}
      ratio: {type: number}
      flag: {type: boolean, default: false}
      mode: {type: string, enum: [fast, slow], default: fast}
      tags: {type: array, default: []}
      who: {type: string, required: true}
    jobs:
      a: {outputs: {x: 1}}
"""


def inputs(tmp_path, given, source="--input"):
    workflow, _ = load_workflow(write(tmp_path, WORKFLOW))
    return resolve(workflow, given, source)


def problems(tmp_path, given, source="--input") -> list[str]:
    with pytest.raises(WorkflowInvalid) as e:
        inputs(tmp_path, given, source)
    return [str(p) for p in e.value.problems]


def test_text_from_the_command_line_is_read_as_the_declared_type_and_defaults_fill_in(tmp_path):
    assert inputs(tmp_path, {"n": "7", "ratio": "0.5", "flag": "yes", "tags": '["a", "b"]', "who": "me"}) == {
        "n": 7, "ratio": 0.5, "flag": True, "mode": "fast", "tags": ["a", "b"], "who": "me",
    }
    assert inputs(tmp_path, {"who": "me"})["ratio"] is None  # optional, no default


def test_every_problem_is_reported_at_once_naming_the_declaration(tmp_path):
    path = tmp_path / "workflow.yml"
    found = problems(tmp_path, {"n": "11", "flag": "maybe", "mode": "medium", "tgas": "[]"}, source="inputs.yml")
    assert f"{path}:3:3: input `n`: 11 is more than the maximum 10 (inputs.n)" in found
    assert f"{path}:5:3: input `flag`: expected true or false, got 'maybe' (inputs.flag)" in found
    assert f"{path}:6:3: input `mode`: 'medium' is not one of 'fast', 'slow' (inputs.mode)" in found
    assert f"{path}:8:3: input `who` is required: pass --input who=… (inputs.who)" in found
    assert any(p.startswith("inputs.yml: `tgas` is not an input of") and "did you mean `tags`?" in p for p in found)


def test_a_value_of_the_wrong_type_from_a_file_is_named(tmp_path):
    found = problems(tmp_path, {"who": "me", "n": True})
    assert any("input `n`: expected an integer, got bool true" in p for p in found)


@pytest.mark.parametrize("given, problem", [
    ({"ratio": "1e999"}, "input `ratio`: expected a finite number, got inf"),
    ({"ratio": float("-inf")}, "input `ratio`: expected a finite number, got -inf"),  # `.inf` in an inputs file
    ({"tags": "[NaN]"}, "input `tags`: expected an array (JSON), got '[NaN]'"),
])
def test_a_number_that_is_not_finite_is_refused(tmp_path, given, problem):
    # JSON has no such numbers: the run's outputs and records would not be JSON.
    assert any(problem in p for p in problems(tmp_path, {"who": "me", **given}))
