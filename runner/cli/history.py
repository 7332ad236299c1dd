"""The commands that read recorded runs: `runs list|show|gc|clean`, `logs`, `trace`, and `state-dir`, where they are kept."""

from __future__ import annotations

from runner.errors import ExitStatus, UsageError


def _open_store(args):
    from runner.history.store import Store, find_state_dir

    return Store(find_state_dir(args.state_dir), create=False)


def runs(args) -> int:
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


def logs(args) -> int:
    from runner.history import runs as history

    store = _open_store(args)
    try:
        history.print_logs(store, store.find_run(args.id), args.target)
        return ExitStatus.SUCCESS
    finally:
        store.close()


def trace(args) -> int:
    from runner.history.trace import write_trace

    store = _open_store(args)
    try:
        write_trace(store, store.find_run(args.id), args.output)
        return ExitStatus.SUCCESS
    finally:
        store.close()


def state_dir(args) -> int:
    from runner.engine.run import state_directory
    from runner.history.store import find_state_dir
    from runner.load.workflow import load_workflow

    if args.file:
        print(state_directory(load_workflow(args.file)[0], args.state_dir))
    else:
        print(find_state_dir(args.state_dir).absolute())
    return ExitStatus.SUCCESS

