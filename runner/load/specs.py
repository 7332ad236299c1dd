"""Compile what a job does that depends on its kind: the `http:` of an http job
(an `HttpSpec`), the `llm:` of an llm job (an `LlmSpec`), the `uses:` and `with:`
of a sub-workflow job.

A literal value is checked here, with the same function (`runner.model.checks`)
that checks a templated one once the executor has rendered it, so that a
mistake written in the file fails `runner validate` where it is written.
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any

from runner.errors import WorkflowInvalid, suggest
from runner.expr.templates import templates_in
from runner.model import checks
from runner.model.inputs import InvalidInput, coerce
from runner.model.workflow import BodyKind, HttpSpec, LlmSpec, Workflow


def http_spec(compiler, value: Any, path: tuple) -> HttpSpec:
    fields = _fields(compiler, "http", value, path)
    # The schema refuses a second body; only the first counts here.
    bodies = [(kind, fields.pop(kind.value)) for kind in BodyKind if kind.value in fields]
    body, fields["body"] = bodies[0] if bodies else (None, None)
    return HttpSpec(**{"url": "", **fields}, body_kind=body, locations=_locations(compiler, value, path))


def llm_spec(compiler, value: Any, path: tuple) -> LlmSpec:
    fields = _fields(compiler, "llm", value, path)
    return LlmSpec(**{"model": "", **fields}, locations=_locations(compiler, value, path))


def _fields(compiler, kind: str, value: Any, path: tuple) -> dict[str, Any]:
    """Each key's value: checked, or with its templates parsed to be checked once rendered."""
    fields = {}
    table = checks.FIELDS[kind]
    for key, raw in (value if isinstance(value, dict) else {}).items():
        if key not in table:
            continue  # an unknown key: the schema names it
        compiled = compiler.template(raw, path + (key,))
        if not any(templates_in(compiled)):
            try:
                compiled = _frozen(table[key](compiled))
            except checks.FieldError as e:
                compiler.error(path + (key,), f"{key}: {e}")
        fields[key] = compiled
    return fields


def _locations(compiler, value: Any, path: tuple) -> MappingProxyType:
    return MappingProxyType({key: compiler.where(path + (key,)) for key in (value if isinstance(value, dict) else {})})


def _frozen(value: Any) -> Any:
    return MappingProxyType(value) if isinstance(value, dict) else value


def sub_workflow(compiler, spec: dict, path: tuple) -> Workflow | None:
    """The workflow `uses` names, compiled, with `with:` checked against its inputs."""
    uses = spec["uses"]
    if "${{" in uses:
        compiler.error(path + ("uses",), "`uses` names a file; it cannot be computed by an expression")
        return None
    where = compiler.where(path + ("uses",))
    child_path = os.path.join(os.path.dirname(compiler.doc.file), uses)
    if not os.path.isfile(child_path):
        compiler.error(path + ("uses",), f"`{uses}` does not exist (looked for {child_path})")
        return None
    try:
        child, warnings = compiler.load_child(child_path, where)
    except WorkflowInvalid as e:
        compiler.problems.extend(e.problems)
        if not any(p.location.file == compiler.doc.file for p in e.problems):
            compiler.error(path + ("uses",), f"`{uses}` is not a valid workflow; see its own problems")
        return None
    compiler.problems.extend(warnings)
    given = spec.get("with") or {}
    for name, value in given.items():
        if name not in child.inputs:
            declared = ", ".join(child.inputs) or "none"
            compiler.error(path + ("with", name), f"`{uses}` has no input `{name}`{suggest(name, child.inputs)} (declared: {declared})", key=True)
        elif not (isinstance(value, str) and "${{" in value):
            try:
                coerce(child.inputs[name], value)
            except InvalidInput as e:
                compiler.error(path + ("with", name), f"input `{name}` of `{uses}`: {e}")
    for name, declared in child.inputs.items():
        if declared.required and declared.default is None and name not in given:
            compiler.error(path + ("uses",), f"`{uses}` requires the input `{name}`: add it under `with`")
    return child
