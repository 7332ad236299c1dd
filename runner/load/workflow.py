"""From a file to a compiled workflow: load, check against the schema, compile.

Sub-workflows named by `uses:` are compiled with their parent, each file once.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
from pathlib import Path
from typing import Any

from runner.load import document as loader, schema
from runner.load.compiler import compile_document
from runner.errors import Location, Problem, WorkflowInvalid
from runner.model.workflow import Workflow

MAX_NESTING = 16


def load_workflow(path: str | Path) -> tuple[Workflow, list[Problem]]:
    """The compiled workflow and its warnings; WorkflowInvalid with every problem found."""
    # Loading makes a great many small objects and frees nearly all of them by
    # reference counting; the cyclic collector would walk the growing tree again
    # and again, a third of the time it takes to load 10,000 jobs.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(str(path), (), {})
    finally:
        if enabled:
            gc.enable()


def _load(path: str, chain: tuple[str, ...], done: dict) -> tuple[Workflow, list[Problem]]:
    real = os.path.realpath(path)
    if real in done:
        return done[real]
    doc = loader.load_file(path)
    problems, wrong = schema.validate(doc)
    if problems:
        doc, wrong = _without(doc, wrong)

    def load_child(child: str, where: Location) -> tuple[Workflow, list[Problem]]:
        child_real = os.path.realpath(child)
        if child_real in (*chain, real):
            loop = [os.path.relpath(p) for p in (*chain, real)[(*chain, real).index(child_real):]]
            raise WorkflowInvalid.at(where, "`uses` makes a loop: " + " → ".join([*loop, os.path.relpath(child_real)]))
        if len(chain) + 1 >= MAX_NESTING:
            raise WorkflowInvalid.at(where, f"sub-workflows nest deeper than {MAX_NESTING} levels")
        return _load(child, (*chain, real), done)

    try:
        result = compile_document(doc, load_child)
    except WorkflowInvalid as e:
        if not problems:
            raise
        compiled = e.problems
    else:
        if not problems:
            done[real] = result
            return result
        compiled = result[1]
    # The schema's problems and the compiler's, but not those that would only
    # repeat the schema's or follow from a value it found wrong.
    compiled = [p for p in compiled if p.location.file != doc.file or not _follows(p.path, wrong)]
    raise WorkflowInvalid(problems + compiled)


# A wrong value under these keys changes what a job is or what it may refer to.
_SHAPE = {"needs", "matrix", "repeat", "steps", "run", "image", "http", "llm", "uses", "with"}
# A wrong value here changes what every job may refer to.
_SCOPE = {("jobs",), ("inputs",), ("secrets",)}


def _without(doc: loader.Document, wrong: list[tuple]) -> tuple[loader.Document, list[tuple]]:
    """The document without the values the schema found wrong, so that the rest can be compiled.

    A wrong item of a list takes its list along (the items after it keep their
    places); a job or an input that is not a mapping becomes an empty one.  Only
    the mappings and lists on the way to a removed value are copied.
    """
    data = doc.data
    removed = []
    for path in wrong:
        while path and isinstance(_at(data, path[:-1]), list):
            path = path[:-1]
        removed.append(path)
        parent = _at(data, path[:-1])
        if path and isinstance(parent, dict) and path[-1] in parent:
            data = _replaced(data, path, {} if len(path) == 2 and path[0] in ("jobs", "inputs") else _GONE)
    return dataclasses.replace(doc, data=data), removed


_GONE = object()


def _replaced(data: Any, path: tuple, value: Any) -> Any:
    """A copy of `data` with the value at `path` replaced (or removed, for _GONE); the rest shared."""
    copied = dict(data) if isinstance(data, dict) else list(data)
    if len(path) > 1:
        copied[path[0]] = _replaced(data[path[0]], path[1:], value)
    elif value is _GONE:
        del copied[path[0]]
    elif not isinstance(copied[path[0]], dict):
        copied[path[0]] = value
    return copied


def _at(data: Any, path: tuple) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _follows(path: tuple, wrong: list[tuple]) -> bool:
    for bad in wrong:
        if path[: len(bad)] == bad or bad in _SCOPE:
            return True
        shaping = len(bad) == 3 or bad[2:3] in (("matrix",), ("steps",))  # axes, step ids
        if len(bad) > 2 and bad[0] == "jobs" and bad[2] in _SHAPE and shaping and path[:2] == bad[:2]:
            return True
    return False


def content_hash(workflow: Workflow) -> str:
    """SHA-256 of the workflow's file and every file it uses (`uses:`), each named relative to the first."""
    digest = hashlib.sha256()
    seen: set[str] = set()
    for w in workflow.workflows():
        real = os.path.realpath(w.path)
        if real in seen:
            continue
        seen.add(real)
        digest.update(os.path.relpath(real, workflow.directory).encode() + b"\0")
        try:
            digest.update(Path(real).read_bytes())
        except OSError:
            digest.update(b"\0missing")
        digest.update(b"\0")
    return digest.hexdigest()
