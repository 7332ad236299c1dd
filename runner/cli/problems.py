"""How a command prints a workflow's problems: as lines on the console, or as GitHub annotations."""

from __future__ import annotations

import os
import sys

from runner.errors import Problem, Severity


def github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def print_problems(problems: list[Problem], stream=None) -> None:
    for problem in problems:
        print(problem, file=stream or sys.stderr)


def print_annotations(problems: list[Problem]) -> None:
    """Problems as GitHub annotations, their files relative to the repository."""
    from runner.report.github import escape, escape_property

    workspace = os.environ.get("GITHUB_WORKSPACE")
    for p in problems:
        level = "error" if p.severity is Severity.ERROR else "warning"
        file = p.location.file
        if workspace and os.path.exists(file):
            file = os.path.relpath(os.path.abspath(file), workspace)
        where = f"file={escape_property(file)},line={p.location.line},col={p.location.col}"
        message = p.message + (f" ({p.key_path})" if p.path else "")
        print(f"::{level} {where}::{escape(message)}", flush=True)

