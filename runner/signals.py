"""Ctrl-C and SIGTERM for `runner run` and `runner resume`; the engine itself knows no signals.

First SIGINT or SIGTERM: the run is cancelled and jobs with `if: always()` may
still run for CLEANUP_GRACE seconds; a second signal, or the end of the grace,
stops everything at once.
"""

from __future__ import annotations

import signal

import trio

from runner.engine.control import RunControl
from runner.errors import RunnerError
from runner.engine.run import RunOptions, run_workflow
from runner.model.results import RunOutcome
from runner.model.workflow import Workflow

# After Ctrl-C or SIGTERM, how long jobs with `if: always()` may still run.
CLEANUP_GRACE = 5.0


async def run_until_signalled(workflow: Workflow, options: RunOptions) -> RunOutcome:
    control = options.control = options.control or RunControl()
    error: RunnerError | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch, signals, control)
            try:
                outcome = await run_workflow(workflow, options)
            except RunnerError as e:
                error = e  # the CLI reports it as it is, not inside an exception group
            finally:
                nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    return outcome


async def _watch(signals, control: RunControl) -> None:
    async with trio.open_nursery() as grace:
        async for signum in signals:
            if not control.cancelled:
                control.cancel(f"interrupted by {signal.Signals(signum).name}", signal=signum)
                grace.start_soon(_stop_after, control, CLEANUP_GRACE)
            else:
                control.stop()


async def _stop_after(control: RunControl, seconds: float) -> None:
    await trio.sleep(seconds)
    control.stop()
