"""Turning a step's `run:` template into a script file, a command line and its environment.

No value ever becomes script text: each ``${{ … }}`` is evaluated, handed to
the step in an environment variable, and replaced by a reference to that
variable in the script's own language.  ``| raw`` is the one way to paste text.
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping

from runner.executors import NodeFailed
from runner.expr.templates import Template, to_text

# shell → (command, file suffix, how the script refers to an environment variable)
SHELLS: dict[str, tuple[list[str], str, str]] = {
    "sh": (["sh", "-e", "{0}"], ".sh", "${{{name}}}"),
    "bash": (["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"], ".sh", "${{{name}}}"),
    "python": (["python3", "-u", "{0}"], ".py", "__import__('os').environ['{name}']"),
    "node": (["node", "{0}"], ".js", "process.env.{name}"),
}
_CUSTOM = ([], "", "${{{name}}}")
VARIABLE_PREFIX = "RUNNER_EXPR_"


class ScriptError(NodeFailed):
    pass


def command(shell: str, script_path: str) -> list[str]:
    """The command line that runs `script_path` with `shell` (a name, or a command with `{0}`)."""
    argv = SHELLS[shell][0] if shell in SHELLS else shlex.split(shell)
    if "{0}" not in " ".join(argv):
        argv = [*argv, "{0}"]
    return [part.replace("{0}", script_path) for part in argv]


def suffix(shell: str) -> str:
    return SHELLS.get(shell, _CUSTOM)[1]


def render(template: Template, shell: str, scope: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The script text and the variables it refers to."""
    reference = SHELLS.get(shell, _CUSTOM)[2]
    text: list[str] = []
    variables: dict[str, str] = {}
    for part in template.parts:
        if isinstance(part, str):
            text.append(part)
            continue
        value = to_text(part.evaluate(scope))
        if part.raw:
            text.append(value)
            continue
        if "\0" in value:
            raise ScriptError(f"the value of `{part.source}` contains a NUL byte, which cannot be passed to a step")
        name = f"{VARIABLE_PREFIX}{len(variables) + 1}"
        variables[name] = value
        text.append(reference.format(name=name))
    return "".join(text), variables
