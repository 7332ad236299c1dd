"""`runner serve`: an HTTP API that runs workflows, in the same trio process as the runs.

Starlette answers the requests and Hypercorn's trio worker serves it, so the
API's handlers and the runs (`run_workflow`) share one loop and one state store,
the one the CLI uses.  SIGINT or SIGTERM: stop accepting, cancel every run as
`runner run` does (jobs with `if: always()` get CLEANUP_GRACE seconds, a second
signal ends them at once), and exit 130 or 143 once every run has ended and
its containers are removed.  Only this command imports the server's modules.
"""

from __future__ import annotations

import signal
import sys
from functools import partial
from pathlib import Path

from runner.errors import ExitStatus, UsageError

CLEANUP_GRACE = 5.0


def serve(args) -> int:
    import trio

    from runner.backends import backend_name
    from runner.history.store import Store
    from runner.server.auth import check_bind, read_tokens
    from runner.server.registry import Registry

    tokens = read_tokens(args.token_file)
    check_bind(args.host, tokens)
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: a port is 0 to 65535")
    if args.workflows and not Path(args.workflows).is_dir():
        raise UsageError(f"--workflows {args.workflows}: not a directory")
    registry = Registry.scan(args.workflows)
    for name, problems in registry.invalid.items():
        print(f"runner: {name} is not registered:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    store = Store(_state_dir(args))
    try:
        signum = trio.run(partial(_serve, args, tokens, registry, store, backend_name(args.backend)))
    except BaseExceptionGroup as group:
        raise _alone(group) from None  # a RunnerError leaves as itself, for the CLI to report
    finally:
        store.close()
    return ExitStatus.TERMINATED if signum == signal.SIGTERM else ExitStatus.INTERRUPTED


def _state_dir(args) -> Path:
    import os

    from runner.engine.workspace import find_workspace
    from runner.history.store import project_state_dir

    chosen = args.state_dir or os.environ.get("RUNNER_STATE_DIR")
    if chosen:
        return Path(chosen).resolve()
    return project_state_dir(find_workspace(Path(args.workflows or ".").resolve())).resolve()


async def _serve(args, tokens, registry, store, backend: str) -> int:
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    from runner.server.app import Server, create_app
    from runner.server.runs import Runs

    config = Config()
    config.bind = [f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"]
    config.accesslog = None  # a request's query may hold a token
    config.loglevel = "WARNING"
    config.graceful_timeout = 2.0
    stopping = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as run_nursery:
                runs = Runs(store, run_nursery, args.concurrency, backend, args.image_map)
                app = create_app(Server(store, registry, runs, args.allow_posted_workflows), tokens)
                try:
                    binds = await nursery.start(partial(hypercorn_serve, app, config, shutdown_trigger=stopping.wait))
                except (OSError, BaseExceptionGroup) as e:
                    error = _alone(e)
                    if not isinstance(error, OSError):
                        raise
                    from runner.errors import RunNotPossible

                    raise RunNotPossible(f"cannot listen on {config.bind[0]}: {error.strerror or error}") from None
                print(f"runner: serving {', '.join(binds)} ({len(registry.workflows)} workflow"
                      f"{'s' if len(registry.workflows) != 1 else ''} registered; runs kept in {store.directory})",
                      flush=True)
                first = await signals.__anext__()
                stopping.set()
                print(f"runner: {signal.Signals(first).name}: cancelling {len(runs.live)} run"
                      f"{'s' if len(runs.live) != 1 else ''}", file=sys.stderr, flush=True)
                runs.cancel_all(f"interrupted by {signal.Signals(first).name}", first)
                with trio.move_on_after(CLEANUP_GRACE):
                    async with trio.open_nursery() as grace:
                        grace.start_soon(_second_signal, signals, runs, grace.cancel_scope)
                        await runs.wait_all()
                        grace.cancel_scope.cancel()
                runs.stop_all()
    return first


def _alone(error: BaseException) -> BaseException:
    """The one exception inside nested groups of one, or the group itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def _second_signal(signals, runs, scope) -> None:
    await signals.__anext__()
    runs.stop_all()
