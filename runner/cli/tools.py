"""The commands about workflow files that run nothing: `validate`, `graph` and `schema`."""

from __future__ import annotations

import json
import os
import sys

from runner.cli.problems import print_annotations, print_problems
from runner.errors import ExitStatus, Problem, Severity, WorkflowInvalid
from runner.load.files import looks_like_workflow


def _expand(patterns: list[str]) -> list[str]:
    """Files named, and files matched by glob patterns the shell left alone."""
    import glob

    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) and not os.path.exists(pattern) else []
        files.extend(matches or [pattern])
    return list(dict.fromkeys(files))


def validate(args) -> int:
    from runner.load.workflow import load_workflow

    problems: list[Problem] = []
    files = _expand(args.files)
    if args.workflows_only:
        files = [f for f in files if looks_like_workflow(f)]
    for path in files:
        try:
            _, warnings = load_workflow(path)
            problems.extend(warnings)
        except WorkflowInvalid as e:
            problems.extend(e.problems)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if args.format == "json":
        print(json.dumps([_problem_json(p) for p in problems], indent=2))
    elif args.format == "github":
        print_annotations(problems)
    else:
        print_problems(problems, sys.stdout if not errors else sys.stderr)
        if not errors:
            print(f"{len(files)} file{'s' if len(files) != 1 else ''} valid")
    return ExitStatus.INVALID if errors else ExitStatus.SUCCESS


def _problem_json(p: Problem) -> dict:
    return {
        "file": p.location.file,
        "line": p.location.line,
        "col": p.location.col,
        "severity": p.severity.name.lower(),
        "path": p.key_path,
        "message": p.message,
    }


def graph(args) -> int:
    from runner.report.graph import dot, mermaid
    from runner.load.workflow import load_workflow

    workflow, _ = load_workflow(args.file)
    sys.stdout.write(dot(workflow) if args.format == "dot" else mermaid(workflow))
    return ExitStatus.SUCCESS


def schema(args) -> int:
    from runner.load.schema import schema_text

    sys.stdout.write(schema_text())
    return ExitStatus.SUCCESS

