"""The `runner` command.  Heavy modules are imported only by the subcommand that needs them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from runner import __version__
from runner.backends import BACKENDS, backend_name
from runner.errors import ExitStatus, Problem, RunnerError, Severity, UsageError, WorkflowInvalid

EPILOG = """exit status: 0 success, 1 the run failed, 2 the workflow or command line is invalid
(nothing ran), 3 the run could not be carried out, 130 interrupted (143 SIGTERM)"""
STATE_DIR_FOUND = "where runs are kept (default: the workspace's, found from here up; see `runner state-dir`)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner",
        description="Run declarative YAML workflows, each job sandboxed in a Docker container.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
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
    _run_options(run, "where runs are kept (default: the workspace's own, outside it; see `runner state-dir FILE`)")
    run.add_argument("--resume", metavar="ID", help="continue run ID of this workflow (as `runner resume ID`)")
    _resume_options(run)
    run.add_argument("--only", metavar="JOB", help="run only JOB; the outputs it uses come from --set or --from-run")
    run.add_argument(
        "--set", action="append", default=[], metavar="jobs.X.outputs.Y=VALUE",
        help="with --only: a value of another job (JSON, or text); repeatable",
    )
    run.add_argument("--from-run", metavar="ID", help="with --only: take the other jobs' outputs from run ID")

    resume = commands.add_parser(
        "resume", help="run again what did not succeed in a recorded run", epilog=EPILOG,
        description="Run again the failed, cancelled and never-started jobs of run ID (and what depends on them); "
        "jobs that succeeded keep their recorded outputs. The result is a new attempt of the same run.",
    )
    resume.add_argument("id", metavar="ID", help="the run's id (or a unique beginning or end of it)")
    _run_options(resume, STATE_DIR_FOUND)
    _resume_options(resume)

    runs = commands.add_parser("runs", help="recorded runs: list, show, gc, clean")
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="COMMAND", required=True)
    listing = runs_commands.add_parser("list", help="the recorded runs, newest first")
    listing.add_argument("--limit", "-n", type=int, default=20, metavar="N", help="at most N runs (0: all; default 20)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    show = runs_commands.add_parser("show", help="one run: its jobs, results, reasons, durations and outputs")
    show.add_argument("id", metavar="ID")
    show.add_argument("--format", choices=("text", "json"), default="text")
    gc = runs_commands.add_parser("gc", help="remove old runs, their logs, and expired cache entries")
    gc.add_argument("--keep", type=int, default=50, metavar="N", help="keep the N newest runs (default 50)")
    gc.add_argument("--older-than", metavar="DURATION", help="remove only runs started longer ago than this (7d, 12h)")
    clean = runs_commands.add_parser("clean", help="remove the containers a run kept for debugging (--keep-on-failure)")
    clean.add_argument("id", metavar="ID")
    for sub in (listing, show, gc, clean):
        sub.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_FOUND)

    logs = commands.add_parser("logs", help="a recorded run's step logs")
    logs.add_argument("id", metavar="ID")
    logs.add_argument("target", nargs="?", metavar="JOB[/STEP]", help="only this job's logs, or one step's")
    logs.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_FOUND)

    trace = commands.add_parser("trace", help="a recorded run's timeline as Chrome trace events (Perfetto)")
    trace.add_argument("id", metavar="ID")
    trace.add_argument("--format", choices=("chrome",), default="chrome")
    trace.add_argument("-o", "--output", metavar="FILE", help="write it to FILE (default: standard output)")
    trace.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_FOUND)

    state_dir = commands.add_parser(
        "state-dir", help="print where runs are kept",
        description="Print the state directory that `runner runs`, `logs` and `resume` use from here, or, "
        "given a workflow FILE, the one its runs go to.",
    )
    state_dir.add_argument("file", nargs="?", metavar="FILE")
    state_dir.add_argument("--state-dir", metavar="DIR", help="as given to `runner run`")

    graph = commands.add_parser("graph", help="print the job graph (Mermaid, or Graphviz dot)")
    graph.add_argument("file", metavar="FILE")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")

    serve = commands.add_parser("serve", help="serve an HTTP API that runs workflows (docs/server.md)", epilog=EPILOG)
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1; others need tokens)")
    serve.add_argument("--port", type=int, default=8080, help="the port (default 8080; 0: any free one)")
    serve.add_argument("--workflows", metavar="DIR", help="register every workflow file under DIR, by its path in DIR")
    serve.add_argument("--state-dir", metavar="DIR", help="where runs are kept (default: the workspace's of --workflows)")
    serve.add_argument("--concurrency", type=int, metavar="N", help="most runs at once; more wait their turn")
    serve.add_argument("--token-file", metavar="FILE", help="bearer tokens, one a line (also $RUNNER_TOKENS)")
    serve.add_argument("--allow-posted-workflows", action="store_true", help="also run workflow text posted to the API")
    serve.add_argument(
        "--backend", choices=BACKENDS, metavar="{" + ",".join(BACKENDS) + "}",
        help="what runs container jobs (default: $RUNNER_BACKEND, else docker); see `runner run --help`",
    )

    commands.add_parser("schema", help="print the workflow JSON Schema")
    commands.add_parser(
        "action", help="run as a GitHub Action: the workflow and its settings come from INPUT_* variables",
        epilog="inputs: workflow, inputs (key=value lines or JSON), image-map (FROM=TO lines), "
        "concurrency, working-directory",
    )
    return parser


def _run_options(parser: argparse.ArgumentParser, state_dir_help: str) -> None:
    """Options of every command that runs jobs (`run`, `resume`)."""
    parser.add_argument("--concurrency", type=int, metavar="N", help="most nodes running at once")
    parser.add_argument(
        "--backend", choices=BACKENDS, metavar="{" + ",".join(BACKENDS) + "}",
        help="what runs container jobs (default: $RUNNER_BACKEND, else docker); swarm places them on a Docker Swarm's "
        "nodes (docs/distributed.md); local runs them as processes on "
        "this machine, in the workspace: not sandboxed, `image` ignored, `network: none`, `resources` and `user` refused",
    )
    parser.add_argument(
        "--image-map", action="append", default=[], metavar="FROM=TO",
        help="use image TO wherever the workflow names FROM (repeatable)",
    )
    parser.add_argument("--output-json", metavar="FILE", help="write the run's result as JSON")
    parser.add_argument("--events", metavar="FILE", help="write every event as a JSON line")
    parser.add_argument("--state-dir", metavar="DIR", help=state_dir_help)
    parser.add_argument(
        "--workspace", metavar="DIR",
        help="the directory mounted at /workspace (default: the top of the git work tree holding the workflow, "
        "else its directory; `resume`: the run's)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print only failures and the final status")
    parser.add_argument("--no-cache", action="store_true", help="run cached jobs anyway (their entries are refreshed)")
    parser.add_argument(
        "--target", action="append", default=[], metavar="JOB",
        help="run JOB and the jobs it needs, transitively; the others are skipped (repeatable)",
    )
    parser.add_argument(
        "--keep-on-failure", action="store_true",
        help="leave a failed job's container running, to enter it with `docker exec`; `runner runs clean ID` removes it",
    )


def _resume_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="resume even though the workflow file has changed")
    parser.add_argument("--from", dest="from_job", metavar="JOB", help="also run JOB again, and everything downstream of it")


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
        commands = {
            "validate": _validate, "run": _run, "resume": _resume, "runs": _runs, "logs": _logs,
            "graph": _graph, "schema": _schema, "action": _action, "state-dir": _state_dir, "trace": _trace,
            "serve": _serve,
        }
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
    except BrokenPipeError:  # the reader went away (`runner runs list | head`)
        sys.stdout = open(os.devnull, "w")
        return ExitStatus.SUCCESS
    except KeyboardInterrupt as e:
        print("runner: interrupted", file=sys.stderr)
        return ExitStatus.TERMINATED if isinstance(e, Terminated) else ExitStatus.INTERRUPTED


def _print_problems(problems: list[Problem], stream=None) -> None:
    for problem in problems:
        print(problem, file=stream or sys.stderr)


def _print_annotations(problems: list[Problem]) -> None:
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
    from runner.load.workflow import load_workflow

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
    from runner.load.document import load_file

    return load_file(path, top="an inputs file must be a mapping of input names to values").data


def _run(args, given: dict | None = None) -> int:
    from runner.engine.run import RunOptions, state_directory
    from runner.load.workflow import content_hash, load_workflow

    if args.resume:
        if args.input or args.inputs_file or args.only:
            raise UsageError("--resume continues a run with its own inputs: it takes no --input, --inputs-file or --only")
        return _resume(args, file=args.file)
    for flag, name in ((args.force, "--force"), (args.from_job, "--from")):
        if flag:
            raise UsageError(f"{name} goes with --resume ID (or `runner resume ID`)")
    if args.target and args.only:
        raise UsageError("--only runs one job with given values; --target runs jobs with what they need: use one of them")
    if (args.set or args.from_run) and not args.only:
        raise UsageError("--set and --from-run give the values that --only JOB uses; add --only JOB")
    workflow, warnings = load_workflow(args.file)
    digest = content_hash(workflow)
    inputs: dict = dict(given or {})
    source = "--input"
    if args.inputs_file:
        inputs.update(_inputs_file(args.inputs_file))
        source = args.inputs_file
    inputs.update(_pairs(args.input, "--input"))
    options = RunOptions(inputs=inputs, inputs_source=source, digest=digest, **_common(args, workflow, warnings))
    store = None
    try:
        if args.only:
            from runner.history.resume import plan_only
            from runner.history.store import Store

            from_run = None
            if args.from_run:
                store = options.store = Store(state_directory(workflow, args.state_dir, _workspace(workflow, args)))
                from_run = (store, store.find_run(args.from_run))
            options.only = plan_only(workflow, args.only, args.set, from_run)
        return _execute(workflow, options, args)
    finally:
        if store is not None:
            store.close()


def _common(args, workflow, warnings) -> dict:
    """RunOptions that `run` and `resume` share, and the reporter for where runner runs."""
    if github_actions():
        from runner.engine.run import read_secrets
        from runner.report.github import GitHub, add_masks

        _print_annotations(warnings)
        add_masks(list(read_secrets(workflow).values()))
        reporter = GitHub(
            workflow,
            output_file=os.environ.get("GITHUB_OUTPUT"),
            summary_file=os.environ.get("GITHUB_STEP_SUMMARY"),
        )
    else:
        from runner.report.console import Console

        _print_problems(warnings)
        reporter = Console(quiet=args.quiet)
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    for option, path in (("--output-json", args.output_json), ("--events", args.events)):
        if path:
            _check_writable(option, path)
    if args.workspace is not None:
        from runner.engine.workspace import find_workspace

        find_workspace(workflow.directory, args.workspace)  # refuses a missing directory before anything runs
    return dict(
        workspace=args.workspace,
        concurrency=args.concurrency,
        image_map=_pairs(args.image_map, "--image-map"),
        state_dir=args.state_dir,
        events=args.events,
        output_json=args.output_json,
        reporters=[reporter],
        use_cache=not args.no_cache,
        targets=args.target,
        keep_on_failure=args.keep_on_failure,
        backend=backend_name(args.backend),
    )


def _check_writable(option: str, path: str) -> None:
    """A file the run will write can be: found out before anything runs, not after."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory, not a file")
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the directory {parent} does not exist")
    writable = os.access(target, os.W_OK) if target.exists() else os.access(parent, os.W_OK | os.X_OK)
    if not writable:
        raise UsageError(f"{option} {path}: permission denied")


def _execute(workflow, options, args) -> int:
    import gc

    import trio

    from runner.model.results import Result
    from runner.signals import run_until_signalled

    # The compiled workflow lives as long as this process: the cyclic collector
    # need not walk it again at every collection of the run.
    gc.freeze()
    outcome = trio.run(run_until_signalled, workflow, options)
    kept = [r for r in outcome.nodes.values() if r.container]
    if kept:
        print(f"runner: {len(kept)} container{'s' if len(kept) != 1 else ''} kept for debugging; "
              f"remove {'them' if len(kept) != 1 else 'it'} with: runner runs clean {outcome.run_id}"
              f"{_state_dir_flag(workflow, options)}",
              file=sys.stderr)
    if outcome.status in (Result.FAILURE, Result.CANCELLED) and options.only is None:
        backend = f" --backend {options.backend}" if options.backend != backend_name(None) else ""
        print(f"runner: to run again what did not succeed: runner resume {outcome.run_id}"
              f"{_state_dir_flag(workflow, options)}{backend}",
              file=sys.stderr)
    if outcome.signal is not None:
        return ExitStatus.TERMINATED if outcome.signal == 15 else ExitStatus.INTERRUPTED
    return ExitStatus.SUCCESS if outcome.status is Result.SUCCESS else ExitStatus.FAILURE


def _state_dir_flag(workflow, options) -> str:
    """` --state-dir DIR` when `runner resume` run from here would not find the run's state directory."""
    import shlex

    from runner.engine.run import state_directory
    from runner.history.store import find_state_dir

    if options.store is not None:
        directory = options.store.directory
    else:
        from runner.engine.workspace import find_workspace

        directory = state_directory(workflow, options.state_dir, find_workspace(workflow.directory, options.workspace))
    try:
        if os.path.samefile(find_state_dir(None, quiet=True), directory):
            return ""
    except (RunnerError, OSError):
        pass
    return f" --state-dir {shlex.quote(os.path.abspath(directory))}"


def _resume(args, file: str | None = None) -> int:
    """`runner resume ID`, and `runner run FILE --resume ID`."""
    run_given = args.resume if file is not None else args.id
    from runner.engine.run import RunOptions, state_directory
    from runner.history.resume import plan_resume, same_file
    from runner.history.store import Store, find_state_dir
    from runner.load.workflow import content_hash, load_workflow

    if file is not None:
        workflow = load_workflow(file)[0]
        state_dir = state_directory(workflow, args.state_dir, _workspace(workflow, args))
    else:
        state_dir = find_state_dir(args.state_dir)
    store = Store(state_dir, create=False)
    try:
        run = store.find_run(run_given)
        store.lock(run["id"], "resume")  # exit 3 naming the holder if a live runner has the run
        try:
            path = run["workflow"]
            if file is not None and not same_file(file, path):
                raise UsageError(f"run {run['id']} is a run of {path}, not of {file}")
            if not os.path.isfile(path):
                raise UsageError(f"run {run['id']} ran {path}, which no longer exists")
            workflow, warnings = load_workflow(path)
            digest = content_hash(workflow)
            plan = plan_resume(store, run, workflow, digest, force=args.force, from_job=args.from_job)
            if not plan.rerun:
                print(f"run {run['id']} succeeded: nothing to resume (--from JOB runs JOB and what follows it again)")
                return ExitStatus.SUCCESS
            common = _common(args, workflow, warnings)
            common["image_map"] = common["image_map"] or plan.options.get("image_map") or {}
            common["concurrency"] = common["concurrency"] or plan.options.get("concurrency")
            options = RunOptions(store=store, resume=plan, digest=digest, **common)
            kept = [j for j in workflow.order if j in plan.restore]
            print(f"resuming run {run['id']}: running {_names(plan.rerun)} again"
                  + (f"; keeping {_names(kept)}" if kept else ""), flush=True)
            return _execute(workflow, options, args)
        finally:
            store.unlock(run["id"])
    finally:
        store.close()


def _names(ids: list[str], most: int = 8) -> str:
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def _open_store(args):
    from runner.history.store import Store, find_state_dir

    return Store(find_state_dir(args.state_dir), create=False)


def _runs(args) -> int:
    from runner.history import runs as history

    store = _open_store(args)
    try:
        if args.runs_command == "list":
            if args.limit < 0:
                raise UsageError("--limit is a number of runs, 0 for all")
            history.list_runs(store, args.limit or None, args.format)
        elif args.runs_command == "show":
            history.show_run(store, store.find_run(args.id), args.format)
        elif args.runs_command == "gc":
            from runner.model.durations import parse_duration

            if args.keep < 0:
                raise UsageError("--keep is a number of runs")
            try:
                older = parse_duration(args.older_than) if args.older_than else None
            except ValueError:
                raise UsageError(f"--older-than takes a duration like 7d or 12h, not {args.older_than!r}") from None
            history.gc(store, args.keep, older)
        else:
            history.clean(store, store.find_run(args.id))
        return ExitStatus.SUCCESS
    finally:
        store.close()


def _workspace(workflow, args):
    """The run's workspace as `--workspace` names it, else the repository holding the workflow."""
    from runner.engine.workspace import find_workspace

    return find_workspace(workflow.directory, getattr(args, "workspace", None))


def _state_dir(args) -> int:
    from runner.engine.run import state_directory
    from runner.history.store import find_state_dir
    from runner.load.workflow import load_workflow

    if args.file:
        print(state_directory(load_workflow(args.file)[0], args.state_dir))
    else:
        print(find_state_dir(args.state_dir).absolute())
    return ExitStatus.SUCCESS


def _logs(args) -> int:
    from runner.history import runs as history

    store = _open_store(args)
    try:
        history.print_logs(store, store.find_run(args.id), args.target)
        return ExitStatus.SUCCESS
    finally:
        store.close()


def _trace(args) -> int:
    from runner.history.trace import write_trace

    store = _open_store(args)
    try:
        write_trace(store, store.find_run(args.id), args.output)
        return ExitStatus.SUCCESS
    finally:
        store.close()


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
    from runner.report.graph import dot, mermaid
    from runner.load.workflow import load_workflow

    workflow, _ = load_workflow(args.file)
    sys.stdout.write(dot(workflow) if args.format == "dot" else mermaid(workflow))
    return ExitStatus.SUCCESS


def _serve(args) -> int:
    from runner.server import serve

    return serve(args)


def _schema(args) -> int:
    from runner.load.schema import schema_text

    sys.stdout.write(schema_text())
    return ExitStatus.SUCCESS


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
