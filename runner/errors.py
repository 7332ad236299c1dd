"""What can go wrong, as seen by a user of runner.

    RunnerError                 every error runner reports; carries an exit status
    ├── WorkflowInvalid         the workflow file has problems (exit 2, nothing ran)
    ├── UsageError              the command line is wrong (exit 2, nothing ran)
    ├── RunNotPossible          the run cannot be carried out: engine unreachable,
                                image missing, state directory unwritable (exit 3)
    └── Interrupted             stopped by a signal before its first job started (exit 130, 143)

Errors from libraries (ruamel.yaml, jsonschema, jinja2, docker) are translated
into these at the boundary of the module that calls the library.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Iterable


class ExitStatus(IntEnum):
    SUCCESS = 0
    FAILURE = 1
    INVALID = 2
    NOT_POSSIBLE = 3
    INTERRUPTED = 130
    TERMINATED = 143


class Severity(IntEnum):
    WARNING = 1
    ERROR = 2


@dataclass(frozen=True, order=True, init=False)
class Location:
    """A place in a workflow file; line and column count from 1."""

    file: str
    line: int = 0
    col: int = 0

    def __init__(self, file: str, line: int = 0, col: int = 0):
        # Filled at once: a frozen dataclass's own __init__ sets each field through object.__setattr__,
        # twice the cost, paid for each job and template of a compiled workflow.
        self.__dict__.update(file=file, line=line, col=col)

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow, where it is, and under which key."""

    location: Location
    message: str
    path: tuple = ()
    severity: Severity = Severity.ERROR

    @property
    def key_path(self) -> str:
        return format_path(self.path)

    def __str__(self) -> str:
        where = f" ({self.key_path})" if self.path else ""
        prefix = "warning: " if self.severity is Severity.WARNING else ""
        return f"{self.location}: {prefix}{self.message}{where}"


def format_path(path: tuple) -> str:
    """``('jobs', 'build', 'steps', 0, 'run')`` as ``jobs.build.steps[0].run``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def suggest(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean `needs`?"`` when a close match exists, else nothing."""
    import difflib  # only a workflow with a mistake needs it

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


class RunnerError(Exception):
    exit_status = ExitStatus.FAILURE


class WorkflowInvalid(RunnerError):
    exit_status = ExitStatus.INVALID

    def __init__(self, problems: list[Problem]):
        # A sub-workflow used twice reports its problems once.
        self.problems = sorted(set(problems), key=lambda p: (p.location, p.message))
        super().__init__("\n".join(map(str, self.problems)))

    @classmethod
    def at(cls, location: Location, message: str, path: tuple = ()) -> "WorkflowInvalid":
        return cls([Problem(location, message, path)])


class UsageError(RunnerError):
    exit_status = ExitStatus.INVALID


class RunNotPossible(RunnerError):
    exit_status = ExitStatus.NOT_POSSIBLE


class Interrupted(RunnerError):
    def __init__(self, signal: int | None):
        self.exit_status = ExitStatus.TERMINATED if signal == 15 else ExitStatus.INTERRUPTED
        super().__init__("interrupted")
