"""runner: declarative YAML workflows, each job sandboxed in a Docker container.

The public API, re-exported from here and imported on first use so that the
command line starts fast:

    load_workflow(path) -> (Workflow, warnings)        load, check and compile a file
    await run_workflow(workflow, RunOptions) -> RunOutcome
                                                       run it to the end inside the caller's trio loop;
                                                       RunOptions.control (a RunControl) cancels or stops it
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each on first use
    from runner.engine.control import RunControl
    from runner.engine.run import RunOptions, run_workflow
    from runner.errors import Interrupted, RunnerError, RunNotPossible, UsageError, WorkflowInvalid
    from runner.load.workflow import load_workflow
    from runner.model.results import NodeRecord, NodeState, Result, RunOutcome
    from runner.model.workflow import Workflow

_EXPORTS = {
    "load_workflow": "runner.load.workflow",
    "run_workflow": "runner.engine.run",
    "RunOptions": "runner.engine.run",
    "RunControl": "runner.engine.control",
    "RunOutcome": "runner.model.results",
    "NodeRecord": "runner.model.results",
    "NodeState": "runner.model.results",
    "Result": "runner.model.results",
    "Workflow": "runner.model.workflow",
    "RunnerError": "runner.errors",
    "WorkflowInvalid": "runner.errors",
    "RunNotPossible": "runner.errors",
    "UsageError": "runner.errors",
    "Interrupted": "runner.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
