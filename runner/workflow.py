"""From a file to a compiled workflow: load, check against the schema, compile."""

from __future__ import annotations

from pathlib import Path

from . import loader, schema
from .compiler import compile_document
from .errors import Problem, WorkflowInvalid
from .model import Workflow


def load_workflow(path: str | Path) -> tuple[Workflow, list[Problem]]:
    """The compiled workflow and its warnings; WorkflowInvalid with every problem found."""
    doc = loader.load_file(path)
    problems = schema.check(doc)
    if problems:
        raise WorkflowInvalid(problems)
    return compile_document(doc)
