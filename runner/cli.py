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
    validate.add_argument("files", nargs="+", metavar="FILE", help="files or glob patterns (`workflows/**/*.yml`)")
    validate.add_argument("--format", choices=("text", "json", "github"), default="text")
    validate.add_argument(
        "--workflows-only", action="store_true",
        help="skip files that do not look like workflows (no top-level `version:` and `jobs:` lines)",
    )

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
    commands.add_parser(
        "action", help="run as a GitHub Action: the workflow and its settings come from INPUT_* variables",
        epilog="inputs: workflow, inputs (key=value lines or JSON), image-map (FROM=TO lines), "
        "concurrency, working-directory",
    )
    return parser


def github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def drop_privileges() -> None:
    """In runner's image, started as root: continue as the owner of the working directory.

    Files runner writes into the workspace then belong to its owner, and the
    Docker socket stays reachable through its group when that group may use it.
    A workspace owned by root, or a socket only root may use, keeps root.
    """
    if os.environ.get("RUNNER_DROP_PRIVILEGES") != "1" or os.getuid() != 0:
        return
    workspace = os.stat(os.getcwd())
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        sock = os.stat(host.removeprefix("unix://")) if host.startswith("unix://") else None
    except OSError:
        sock = None
    if workspace.st_uid == 0 or (sock is not None and sock.st_gid != workspace.st_gid and not sock.st_mode & 0o060 == 0o060):
        return
    groups = [workspace.st_gid] + ([sock.st_gid] if sock is not None else [])
    os.setgroups(sorted(set(groups)))
    os.setgid(workspace.st_gid)
    os.setuid(workspace.st_uid)
    os.environ.setdefault("HOME", "/tmp")


class Terminated(KeyboardInterrupt):
    """SIGTERM while runner is PID 1 (its own image), where the default action is to ignore it."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    if os.getpid() == 1:
        import signal

        signal.signal(signal.SIGTERM, _terminate)
    drop_privileges()
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) if e.code in (0, None) else ExitStatus.INVALID
    try:
        commands = {"validate": _validate, "run": _run, "graph": _graph, "schema": _schema, "action": _action}
        return commands[args.command](args)
    except WorkflowInvalid as e:
        if github_actions():
            _print_annotations(e.problems)
        else:
            _print_problems(e.problems)
        return e.exit_status
    except RunnerError as e:
        print(f"runner: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt as e:
        print("runner: interrupted", file=sys.stderr)
        return ExitStatus.TERMINATED if isinstance(e, Terminated) else ExitStatus.INTERRUPTED


def _print_problems(problems: list[Problem], stream=None) -> None:
    for problem in problems:
        print(problem, file=stream or sys.stderr)


def _print_annotations(problems: list[Problem]) -> None:
    """Problems as GitHub annotations, their files relative to the repository."""
    from .reporting.github import escape, escape_property

    workspace = os.environ.get("GITHUB_WORKSPACE")
    for p in problems:
        level = "error" if p.severity is Severity.ERROR else "warning"
        file = p.location.file
        if workspace and os.path.exists(file):
            file = os.path.relpath(os.path.abspath(file), workspace)
        where = f"file={escape_property(file)},line={p.location.line},col={p.location.col}"
        message = p.message + (f" ({p.key_path})" if p.path else "")
        print(f"::{level} {where}::{escape(message)}", flush=True)


def _expand(patterns: list[str]) -> list[str]:
    """Files named, and files matched by glob patterns the shell left alone."""
    import glob

    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) and not os.path.exists(pattern) else []
        files.extend(matches or [pattern])
    return list(dict.fromkeys(files))


_WORKFLOW_LINES = ("version:", "jobs:")


def _looks_like_workflow(path: str) -> bool:
    """A file with top-level `version:` and `jobs:` lines; YAML files of other tools have neither."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            starts = {line.split(":", 1)[0] + ":" for line in f if line[:1].isalpha()}
    except OSError:
        return True  # let validation report why it cannot be read
    return all(key in starts for key in _WORKFLOW_LINES)


def _validate(args) -> int:
    from .workflow import load_workflow

    problems: list[Problem] = []
    files = _expand(args.files)
    if args.workflows_only:
        files = [f for f in files if _looks_like_workflow(f)]
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
        _print_annotations(problems)
    else:
        _print_problems(problems, sys.stdout if not errors else sys.stderr)
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


def _run(args, given: dict | None = None) -> int:
    from .engine import RunOptions, execute, read_secrets
    from .reporting.console import Console
    from .workflow import load_workflow

    workflow, warnings = load_workflow(args.file)
    inputs: dict = dict(given or {})
    source = "--input"
    if args.inputs_file:
        inputs.update(_inputs_file(args.inputs_file))
        source = args.inputs_file
    inputs.update(_pairs(args.input, "--input"))
    if github_actions():
        from .reporting.github import GitHub, add_masks

        _print_annotations(warnings)
        add_masks(list(read_secrets(workflow).values()))
        reporter = GitHub(
            workflow,
            output_file=os.environ.get("GITHUB_OUTPUT"),
            summary_file=os.environ.get("GITHUB_STEP_SUMMARY"),
        )
    else:
        _print_problems(warnings)
        reporter = Console(quiet=args.quiet)
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
        reporters=[reporter],
    )
    outcome = execute(workflow, options)
    if outcome.signal is not None:
        return ExitStatus.TERMINATED if outcome.signal == 15 else ExitStatus.INTERRUPTED
    from .model import Result

    return ExitStatus.SUCCESS if outcome.status is Result.SUCCESS else ExitStatus.FAILURE


def _action(args) -> int:
    """`runner run`, configured the way GitHub passes a container action its inputs."""

    def get(name: str) -> str:
        return os.environ.get(f"INPUT_{name.upper()}", "").strip()

    workflow = get("workflow")
    if not workflow:
        raise UsageError("the action's `workflow` input names the workflow file to run")
    directory = os.path.join(os.environ.get("GITHUB_WORKSPACE", "."), get("working-directory") or ".")
    try:
        os.chdir(directory)
    except OSError as e:
        raise UsageError(f"working-directory {directory}: {e.strerror}") from None
    text = get("inputs")
    if text.startswith("{"):
        try:
            given = json.loads(text)
        except ValueError as e:
            raise UsageError(f"the `inputs` input is not valid JSON: {e}") from None
    else:
        given = _pairs([line.strip() for line in text.splitlines() if line.strip()], "inputs")
    argv = ["run", workflow]
    for pair in get("image-map").replace(",", "\n").split():
        argv += ["--image-map", pair]
    if get("concurrency"):
        argv += ["--concurrency", get("concurrency")]
    return _run(_parser().parse_args(argv), given)


def _graph(args) -> int:
    from .graph import dot, mermaid
    from .workflow import load_workflow

    workflow, _ = load_workflow(args.file)
    sys.stdout.write(dot(workflow) if args.format == "dot" else mermaid(workflow))
    return ExitStatus.SUCCESS


def _schema(args) -> int:
    from .schema import schema_text

    sys.stdout.write(schema_text())
    return ExitStatus.SUCCESS


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
