"""Check a loaded document against `schemas/workflow.schema.json`, reporting every violation.

jsonschema's messages are written for schema authors; here each error becomes a
sentence for a workflow author, placed at the offending key or value, with the
schema's own ``x-message`` where it has one and a "did you mean" for misspelt keys.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from runner.errors import Problem, suggest
from runner.load.document import Document
from runner.load.github import key_hint

MAX_VALUE_CHARS = 60
# YAML 1.1 read these as booleans; YAML 1.2 (and so runner) reads them as text.
_YAML11_BOOLEANS = {"yes", "no", "on", "off", "y", "n", "true", "false"}
_JSON_TYPES = {
    dict: "a mapping",
    list: "a list",
    str: "text",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "nothing (null)",
}


def schema_text() -> str:
    # Beside the package's modules, as installed: importlib.resources would cost a run's start more than the read
    return (Path(__file__).parent.parent / "workflow.schema.json").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_text()))


@lru_cache(maxsize=1)
def _fast_validator():
    import jsonschema_rs

    return jsonschema_rs.validator_for(json.loads(schema_text()))


def check(doc: Document) -> list[Problem]:
    return validate(doc)[0]


def validate(doc: Document) -> tuple[list[Problem], list[tuple]]:
    """Every violation, and the key paths of the values found wrong (not of keys missing or unknown)."""
    # A valid document, the common case, is confirmed a hundred times faster in
    # Rust; an invalid one is examined by jsonschema, whose errors we explain.
    if _fast_validator().is_valid(doc.data):
        return [], []
    problems: list[Problem] = []
    wrong: list[tuple] = []
    for error in _validator().iter_errors(doc.data):
        problems.extend(_problems(doc, error))
        path = _wrong_value(error)
        if path is not None:
            wrong.append(path)
    # One mistake can break several alternatives at the same place; say it once.
    unique: dict[tuple, Problem] = {}
    for problem in problems:
        unique.setdefault((problem.location, problem.message), problem)
    return list(unique.values()), wrong


def _wrong_value(error) -> tuple | None:
    path = tuple(error.absolute_path)
    if "propertyNames" in error.schema_path:
        return path + (error.instance,)
    if error.validator in ("required", "additionalProperties"):
        return None
    if error.validator in ("anyOf", "oneOf") and all(sub.validator == "required" for sub in error.context):
        return None  # a mapping that lacks one of several keys
    return path


def _problems(doc: Document, error) -> list[Problem]:
    path = tuple(error.absolute_path)
    custom = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    validator = error.validator
    if validator == "additionalProperties":
        return _unknown_keys(doc, error, path)
    if validator in ("anyOf", "oneOf") and not custom:
        return _alternatives(doc, error, path)
    if "propertyNames" in error.schema_path:
        # The bad name is the instance; point at the key itself.
        return [Problem(doc.locate(path + (error.instance,), key=True), _property_name(error), path)]
    if custom:
        message = custom
        if validator == "enum" and isinstance(error.instance, str):
            message += suggest(error.instance, [str(v) for v in error.validator_value])
        if validator == "const" and path == ("version",) and isinstance(error.instance, float):
            message += " (YAML reads an unquoted 3.10 as the number 3.1)"
    elif validator == "required":
        missing = re.match(r"'(.+?)' is a required property", error.message)
        message = f"missing required key `{missing.group(1) if missing else error.message}`"
    elif validator == "type":
        message = f"expected {_expected(error.validator_value)}, got {_describe(error.instance)}"
        message += _type_hint(error.instance, error.validator_value)
    elif validator == "const":
        message = f"must be {json.dumps(error.validator_value)}, not {_short(error.instance)}"
        if path == ("version",) and isinstance(error.instance, float):
            message += " (YAML reads an unquoted 3.10 as the number 3.1)"
    elif validator == "enum":
        choices = ", ".join(json.dumps(v) for v in error.validator_value)
        message = f"{_short(error.instance)} is not one of {choices}"
        if isinstance(error.instance, str):
            message += suggest(error.instance, [str(v) for v in error.validator_value])
    elif validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than", "exclusiveMaximum": "less than"}
        message = f"must be {word[validator]} {error.validator_value}, not {_short(error.instance)}"
    elif validator in ("minItems", "minProperties"):
        message = "must not be empty"
    elif validator == "uniqueItems":
        message = "lists the same value twice"
    elif validator == "pattern":
        message = f"{_short(error.instance)} does not have the expected form (`{error.validator_value}`)"
    else:
        message = error.message if len(error.message) < 200 else error.message[:197] + "..."
    if isinstance(error.instance, str) and error.instance.lower() in _YAML11_BOOLEANS - {"true", "false"}:
        message += f" (YAML 1.1 read `{error.instance}` as a boolean; YAML 1.2 reads it as text: write true or false)"
    return [Problem(doc.locate(path), message, path)]


def _unknown_keys(doc: Document, error, path: tuple) -> list[Problem]:
    known = list((error.schema.get("properties") or {}).keys())
    patterns = list((error.schema.get("patternProperties") or {}).keys())
    problems = []
    for key in error.instance:
        if key in known or any(re.search(p, key) for p in patterns):
            continue
        hint = key_hint(key, path, error.instance[key]) or suggest(key, known)
        if not hint and known:
            hint = f" (allowed here: {', '.join(known)})" if len(known) <= 12 else ""
        problems.append(Problem(doc.locate(path + (key,), key=True), f"unknown key `{key}`{hint}", path + (key,)))
    return problems


def _alternatives(doc: Document, error, path: tuple) -> list[Problem]:
    """An anyOf failed: a literal-or-expression field reads best as one sentence."""
    options = []
    for sub in error.context:
        if sub.validator == "type" and not sub.relative_path:
            options.append(_expected(sub.validator_value))
        elif sub.validator == "pattern" and not sub.relative_path:
            options.append(sub.schema.get("x-message") or "an expression `${{ … }}`")
        elif sub.validator in ("const", "enum") and not sub.relative_path:
            values = sub.validator_value if sub.validator == "enum" else [sub.validator_value]
            options.append(" or ".join(json.dumps(v) for v in values))
    deeper = [sub for sub in error.context if sub.relative_path]
    if deeper:
        # The value had the right type but something inside it is wrong: report that.
        from jsonschema.exceptions import best_match

        return _problems(doc, best_match(deeper))
    message = f"expected {' or '.join(dict.fromkeys(options)) or 'another value'}, got {_describe(error.instance)}"
    message += _type_hint(error.instance, ())
    if isinstance(error.instance, str) and error.instance.lower() in _YAML11_BOOLEANS - {"true", "false"}:
        message += f" (YAML 1.1 read `{error.instance}` as a boolean; YAML 1.2 reads it as text: write true or false)"
    return [Problem(doc.locate(path), message, path)]


def _property_name(error) -> str:
    name = error.instance
    if error.schema.get("x-message"):
        return f"`{name}`: {error.schema['x-message']}"
    return f"`{name}` is not a valid name: use letters, digits and `_`, not starting with a digit"


def _expected(types: Any) -> str:
    if isinstance(types, str):
        types = [types]
    words = {"object": "a mapping", "array": "a list", "string": "text", "integer": "an integer",
             "number": "a number", "boolean": "true or false", "null": "nothing"}
    return " or ".join(words.get(t, t) for t in types)


def _describe(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)) or value is None:
        return kind
    return f"{kind} {_short(value)}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "…"


def _type_hint(value: Any, expected: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        (key, inner), = value.items()
        if isinstance(key, str) and key.startswith("{") or isinstance(inner, dict) and inner is not None:
            return " (YAML read `{{ … }}` as a mapping: write `${{ … }}` and quote the whole value)"
    return ""
