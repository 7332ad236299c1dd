"""From a file to a compiled workflow: load, check against the schema, compile.

Sub-workflows named by `uses:` are compiled with their parent, each file once.
"""

from __future__ import annotations

import gc
import hashlib
import os
from pathlib import Path

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
    problems = schema.check(doc)
    if problems:
        raise WorkflowInvalid(problems)

    def load_child(child: str, where: Location) -> tuple[Workflow, list[Problem]]:
        child_real = os.path.realpath(child)
        if child_real in (*chain, real):
            loop = [os.path.relpath(p) for p in (*chain, real)[(*chain, real).index(child_real):]]
            raise WorkflowInvalid.at(where, "`uses` makes a loop: " + " → ".join([*loop, os.path.relpath(child_real)]))
        if len(chain) + 1 >= MAX_NESTING:
            raise WorkflowInvalid.at(where, f"sub-workflows nest deeper than {MAX_NESTING} levels")
        return _load(child, (*chain, real), done)

    done[real] = compile_document(doc, load_child)
    return done[real]


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
