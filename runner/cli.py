"""The `runner` command.  Heavy modules are imported only by the subcommand that needs them."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import ExitStatus, Problem, RunnerError, Severity, UsageError, WorkflowInvalid

EPILOG = """exit status: 0 success, 1 the run failed, 2 the workflow or command line is invalid
(nothing ran), 3 the run could not be carried out, 130 interrupted (143 SIGTERM)"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner",
        description="Run declarative YAML workflows, each job sandboxed in a Docker container.",
        epilog=EPILOG,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser("validate", help="check workflow files without running them", epilog=EPILOG)
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--format", choices=("text", "json", "github"), default="text")

    run = commands.add_parser("run", help="run a workflow", epilog=EPILOG)
    run.add_argument("file", metavar="FILE")
    run.add_argument("--input", action="append", default=[], metavar="NAME=VALUE", help="an input value (repeatable)")
    run.add_argument("--inputs-file", metavar="FILE", help="inputs from a JSON or YAML mapping")
    run.add_argument("--concurrency", type=int, metavar="N", help="most nodes running at once")
    run.add_argument(
        "--image-map", action="append", default=[], metavar="FROM=TO",
        help="use image TO wherever the workflow names FROM (repeatable)",
    )
    run.add_argument("--output-json", metavar="FILE", help="write the run's result as JSON")
    run.add_argument("--events", metavar="FILE", help="write every event as a JSON line")
    run.add_argument("--state-dir", metavar="DIR", help="where runs are kept (default: .runner beside the workflow)")
    run.add_argument("--quiet", "-q", action="store_true", help="print only failures and the final status")

    graph = commands.add_parser("graph", help="print the job graph (Mermaid, or Graphviz dot)")
    graph.add_argument("file", metavar="FILE")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")

    commands.add_parser("schema", help="print the workflow JSON Schema")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) if e.code in (0, None) else ExitStatus.INVALID
    try:
        return {"validate": _validate, "run": _run, "graph": _graph, "schema": _schema}[args.command](args)
    except WorkflowInvalid as e:
        _print_problems(e.problems)
        return e.exit_status
    except RunnerError as e:
        print(f"runner: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("runner: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED


def _print_problems(problems: list[Problem], stream=None) -> None:
    for problem in problems:
        print(problem, file=stream or sys.stderr)


def _validate(args) -> int:
    from .workflow import load_workflow

    problems: list[Problem] = []
    for path in args.files:
        try:
            _, warnings = load_workflow(path)
            problems.extend(warnings)
        except WorkflowInvalid as e:
            problems.extend(e.problems)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if args.format == "json":
        print(json.dumps([_problem_json(p) for p in problems], indent=2))
    elif args.format == "github":
        for p in problems:
            level = "error" if p.severity is Severity.ERROR else "warning"
            print(f"::{level} file={p.location.file},line={p.location.line},col={p.location.col}::{_escape(str(p.message))}")
    else:
        _print_problems(problems, sys.stdout if not errors else sys.stderr)
        if not errors:
            print(f"{len(args.files)} file{'s' if len(args.files) != 1 else ''} valid")
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


def _escape(text: str) -> str:
    # GitHub's workflow-command encoding for the message part.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _pairs(items: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{option} takes NAME=VALUE, got {item!r}")
        pairs[name] = value
    return pairs


def _inputs_file(path: str) -> dict:
    from .loader import load_file

    doc = load_file(path)
    return doc.data


def _run(args) -> int:
    from .engine import RunOptions, execute
    from .reporting.console import Console
    from .workflow import load_workflow

    workflow, warnings = load_workflow(args.file)
    _print_problems(warnings)
    inputs: dict = {}
    source = "--input"
    if args.inputs_file:
        inputs.update(_inputs_file(args.inputs_file))
        source = args.inputs_file
    inputs.update(_pairs(args.input, "--input"))
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    options = RunOptions(
        inputs=inputs,
        inputs_source=source,
        concurrency=args.concurrency,
        image_map=_pairs(args.image_map, "--image-map"),
        state_dir=args.state_dir,
        events=args.events,
        output_json=args.output_json,
        reporters=[Console(quiet=args.quiet)],
    )
    outcome = execute(workflow, options)
    if outcome.signal is not None:
        return ExitStatus.TERMINATED if outcome.signal == 15 else ExitStatus.INTERRUPTED
    from .model import Result

    return ExitStatus.SUCCESS if outcome.status is Result.SUCCESS else ExitStatus.FAILURE


def _graph(args) -> int:
    from .workflow import load_workflow

    workflow, _ = load_workflow(args.file)
    if args.format == "dot":
        print("digraph workflow {")
        print("  rankdir=LR;")
        for job in workflow.jobs.values():
            print(f'  {job.id} [label="{job.name}"];')
            for need in job.needs:
                print(f"  {need} -> {job.id};")
        print("}")
    else:
        print("flowchart LR")
        for job in workflow.jobs.values():
            print(f'  {job.id}["{job.name}"]')
        for job in workflow.jobs.values():
            for need in job.needs:
                print(f"  {need} --> {job.id}")
    return ExitStatus.SUCCESS


def _schema(args) -> int:
    from .schema import schema_text

    sys.stdout.write(schema_text())
    return ExitStatus.SUCCESS


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
