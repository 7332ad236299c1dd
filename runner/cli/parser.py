"""The command line's grammar: every command, its arguments and their help."""

from __future__ import annotations

import argparse
import sys

from runner import __version__
from runner.backends import BACKENDS

EPILOG = """exit status: 0 success, 1 the run failed, 2 the workflow or command line is invalid
(nothing ran), 3 the run could not be carried out, 130 interrupted (143 SIGTERM)"""
STATE_DIR_FOUND = "where runs are kept (default: the workspace's, found from here up; see `runner state-dir`)"


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The grammar of the command `argv` names: only its own part, the others' arguments cost a run's start.

    Without a known command first (`runner`, `runner --help`, a mistyped one) every command is
    there, for the help that lists them and the error that names them.
    """
    from runner.cli import COMMANDS

    given = sys.argv[1:] if argv is None else argv
    named = given[0] if given else None  # after an option (`runner -h run`) too, the whole grammar

    def wanted(command: str) -> bool:
        return named not in COMMANDS or named == command

    parser = argparse.ArgumentParser(
        prog="runner",
        description="Run declarative YAML workflows, each job sandboxed in a Docker container.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    if wanted("validate"):
        validate = commands.add_parser("validate", help="check workflow files without running them", epilog=EPILOG)
        validate.add_argument("files", nargs="+", metavar="FILE", help="files or glob patterns (`workflows/**/*.yml`)")
        validate.add_argument("--format", choices=("text", "json", "github"), default="text")
        validate.add_argument(
            "--workflows-only", action="store_true",
            help="skip files that do not look like workflows (no top-level `version:` and `jobs:` lines)",
        )

    if wanted("run"):
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

    if wanted("resume"):
        resume = commands.add_parser(
            "resume", help="run again what did not succeed in a recorded run", epilog=EPILOG,
            description="Run again the failed, cancelled and never-started jobs of run ID (and what depends on them); "
            "jobs that succeeded keep their recorded outputs. The result is a new attempt of the same run.",
        )
        resume.add_argument("id", metavar="ID", help="the run's id (or a unique beginning or end of it)")
        _run_options(resume, STATE_DIR_FOUND)
        _resume_options(resume)

    if wanted("runs"):
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

    if wanted("logs"):
        logs = commands.add_parser("logs", help="a recorded run's step logs")
        logs.add_argument("id", metavar="ID")
        logs.add_argument("target", nargs="?", metavar="JOB[/STEP]", help="only this job's logs, or one step's")
        logs.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_FOUND)

    if wanted("trace"):
        trace = commands.add_parser("trace", help="a recorded run's timeline as Chrome trace events (Perfetto)")
        trace.add_argument("id", metavar="ID")
        trace.add_argument("--format", choices=("chrome",), default="chrome")
        trace.add_argument("-o", "--output", metavar="FILE", help="write it to FILE (default: standard output)")
        trace.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_FOUND)

    if wanted("state-dir"):
        state_dir = commands.add_parser(
            "state-dir", help="print where runs are kept",
            description="Print the state directory that `runner runs`, `logs` and `resume` use from here, or, "
            "given a workflow FILE, the one its runs go to.",
        )
        state_dir.add_argument("file", nargs="?", metavar="FILE")
        state_dir.add_argument("--state-dir", metavar="DIR", help="as given to `runner run`")

    if wanted("graph"):
        graph = commands.add_parser("graph", help="print the job graph (Mermaid, or Graphviz dot)")
        graph.add_argument("file", metavar="FILE")
        graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")

    if wanted("serve"):
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
        serve.add_argument(
            "--image-map", action="append", default=[], metavar="FROM=TO",
            help="in every run, use image TO wherever a workflow names FROM (repeatable)",
        )

    if wanted("schema"):
        commands.add_parser("schema", help="print the workflow JSON Schema")

    if wanted("action"):
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

