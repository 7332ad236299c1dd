"""The commands that run jobs: `run` (with `--resume` and `--only`), `resume`, and `action`, `run` as a GitHub Action."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from runner.backends import backend_name
from runner.cli.parser import build_parser
from runner.cli.problems import github_actions, print_annotations, print_problems
from runner.errors import ExitStatus, RunnerError, UsageError


def pairs(items: list[str], option: str) -> dict[str, str]:
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


def run(args, given: dict | None = None) -> int:
    from runner.engine.run import RunOptions, state_directory
    from runner.load.workflow import content_hash, load_workflow

    if args.resume:
        if args.input or args.inputs_file or args.only:
            raise UsageError("--resume continues a run with its own inputs: it takes no --input, --inputs-file or --only")
        return resume(args, file=args.file)
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
    inputs.update(pairs(args.input, "--input"))
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

        print_annotations(warnings)
        add_masks(list(read_secrets(workflow).values()))
        reporter = GitHub(
            workflow,
            output_file=os.environ.get("GITHUB_OUTPUT"),
            summary_file=os.environ.get("GITHUB_STEP_SUMMARY"),
        )
    else:
        from runner.report.console import Console

        print_problems(warnings)
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
        image_map=pairs(args.image_map, "--image-map"),
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
    # need not walk it again at every collection of the run, which it then watches.
    gc.freeze()
    gc.enable()
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


def resume(args, file: str | None = None) -> int:
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


def _workspace(workflow, args):
    """The run's workspace as `--workspace` names it, else the repository holding the workflow."""
    from runner.engine.workspace import find_workspace

    return find_workspace(workflow.directory, getattr(args, "workspace", None))


def action(args) -> int:
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
        given = pairs([line.strip() for line in text.splitlines() if line.strip()], "inputs")
    argv = ["run", workflow]
    for pair in get("image-map").replace(",", "\n").split():
        argv += ["--image-map", pair]
    if get("concurrency"):
        argv += ["--concurrency", get("concurrency")]
    return run(build_parser(argv).parse_args(argv), given)

