"""runner: declarative YAML workflows, each job sandboxed in a Docker container.

The public API, re-exported from here and imported on first use so that the
command line starts fast:

    load_workflow(path) -> (Workflow, warnings)   load, check and compile a file
    await run_workflow(workflow, RunOptions) -> RunOutcome    run it to the end, in the caller's trio loop
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "load_workflow": ("runner.load.workflow", "load_workflow"),
    "run_workflow": ("runner.engine.run", "run_workflow"),
    "RunControl": ("runner.engine.control", "RunControl"),
    "RunOptions": ("runner.engine.run", "RunOptions"),
    "Workflow": ("runner.model.workflow", "Workflow"),
    "Result": ("runner.model.results", "Result"),
    "RunnerError": ("runner.errors", "RunnerError"),
    "WorkflowInvalid": ("runner.errors", "WorkflowInvalid"),
    "RunNotPossible": ("runner.errors", "RunNotPossible"),
    "UsageError": ("runner.errors", "UsageError"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    import importlib

    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)
