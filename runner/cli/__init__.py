"""The `runner` command: `main` parses the command line and hands it to its command's module.

The commands live by concept, each module imported only when its command runs, and heavy
modules only by the subcommand that needs them: `running.py` (run, resume, action),
`history.py` (runs, logs, trace, state-dir), `tools.py` (validate, graph, schema), `serve.py`;
`parser.py` is the grammar of them all, `problems.py` how a workflow's problems are printed.
"""

from __future__ import annotations

import gc
import os
import sys

from runner.cli.parser import build_parser
from runner.cli.problems import github_actions, print_annotations, print_problems
from runner.errors import ExitStatus, RunnerError, WorkflowInvalid

COMMANDS = {
    "run": ("running", "run"), "resume": ("running", "resume"), "action": ("running", "action"),
    "runs": ("history", "runs"), "logs": ("history", "logs"), "trace": ("history", "trace"),
    "state-dir": ("history", "state_dir"),
    "validate": ("tools", "validate"), "graph": ("tools", "graph"), "schema": ("tools", "schema"),
    "serve": ("serve", "serve"),
}


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
    # What start-up makes (modules, the grammar, the loaded workflow) lives on: collecting
    # cycles meanwhile would walk it all again and again for nothing. The commands that
    # keep running (`run`, `resume`, `serve`) turn the collector on when they begin to.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _command(argv)
    finally:
        if enabled:
            gc.enable()


def _command(argv: list[str] | None) -> int:
    if os.getpid() == 1:
        import signal

        signal.signal(signal.SIGTERM, _terminate)
    drop_privileges()
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) if e.code in (0, None) else ExitStatus.INVALID
    try:
        module, name = COMMANDS[args.command]
        # __import__ rather than importlib: an import `python -X importtime` reports, as startup is measured
        return getattr(__import__(f"runner.cli.{module}", fromlist=[name]), name)(args)
    except WorkflowInvalid as e:
        if github_actions():
            print_annotations(e.problems)
        else:
            print_problems(e.problems)
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


def run() -> None:
    sys.exit(main())

