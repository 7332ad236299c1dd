"""The run's inputs: from `--input k=v` and `--inputs-file`, coerced to their declared types.

Every problem is found before anything runs and named with the input's
declaration (file and line) and where the value came from.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from runner.errors import Location, Problem, WorkflowInvalid, suggest
from runner.model.workflow import InputSpec, Workflow

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


class InvalidInput(ValueError):
    pass


def coerce(spec: InputSpec, value: Any) -> Any:
    """`value` as the declared type; text from the command line is parsed as that type."""
    if isinstance(value, str) and spec.type != "string":
        text = value.strip()
        try:
            if spec.type == "integer":
                value = int(text)
            elif spec.type == "number":
                value = float(text) if any(c in text for c in ".eE") else int(text)
            elif spec.type == "boolean":
                if text.lower() not in _TRUE | _FALSE:
                    raise InvalidInput(f"expected true or false, got {value!r}")
                value = text.lower() in _TRUE
            else:
                value = json.loads(text, parse_constant=_not_a_number)
        except ValueError as e:
            if isinstance(e, InvalidInput):
                raise
            raise InvalidInput(f"expected {_article(spec.type)}, got {value!r}") from None
    if isinstance(value, float) and not math.isfinite(value):  # 1e999, or .inf in an inputs file
        raise InvalidInput(f"expected a finite number, got {value!r}")
    expected = _TYPES[spec.type]
    if not isinstance(value, expected) or (isinstance(value, bool) and spec.type in ("integer", "number")):
        raise InvalidInput(f"expected {_article(spec.type)}, got {_describe(value)}")
    if spec.enum is not None and value not in spec.enum:
        raise InvalidInput(f"{value!r} is not one of {', '.join(map(repr, spec.enum))}")
    if spec.minimum is not None and value < spec.minimum:
        raise InvalidInput(f"{value!r} is less than the minimum {spec.minimum}")
    if spec.maximum is not None and value > spec.maximum:
        raise InvalidInput(f"{value!r} is more than the maximum {spec.maximum}")
    return value


def _not_a_number(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def resolve(workflow: Workflow, given: Mapping[str, Any], source: str = "--input") -> dict[str, Any]:
    """Declared inputs with their values; WorkflowInvalid listing every problem."""
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for name in given:
        if name not in workflow.inputs:
            declared = ", ".join(workflow.inputs) or "none"
            problems.append(Problem(
                Location(source),
                f"`{name}` is not an input of {workflow.path}{suggest(name, workflow.inputs)} (declared: {declared})",
            ))
    for name, spec in workflow.inputs.items():
        where = spec.location or Location(workflow.path)
        if name in given:
            try:
                values[name] = coerce(spec, given[name])
            except InvalidInput as e:
                problems.append(Problem(where, f"input `{name}`: {e}", ("inputs", name)))
        elif spec.default is not None:
            values[name] = spec.default
        elif spec.required:
            problems.append(Problem(where, f"input `{name}` is required: pass --input {name}=…", ("inputs", name)))
        else:
            values[name] = None
    if problems:
        raise WorkflowInvalid(problems)
    return values


def _article(type_name: str) -> str:
    return {"integer": "an integer", "array": "an array (JSON)", "object": "an object (JSON)"}.get(type_name, f"a {type_name}")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {json.dumps(value, default=str)[:40]}"
