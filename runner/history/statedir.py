"""Where a project's runs are kept: its state directory, outside the workspace, and how a command finds it."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from runner.errors import UsageError

DB_NAME = "state.db"


def project_state_dir(workspace: Path | str) -> Path:
    """Where the runs of a workspace are kept by default: outside it, so that no job can reach them.

    `$XDG_STATE_HOME/runner/<name>-<hash>` (`~/.local/state` when unset), the name being the
    workspace's and the hash that of its real path: one directory per project, however reached.
    """
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG specification ignores a relative path
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    real = os.path.realpath(workspace)
    return Path(base) / "runner" / f"{os.path.basename(real) or 'root'}-{hashlib.sha256(real.encode()).hexdigest()[:12]}"


LEGACY = ".runner"  # where runs were kept before: beside the workflow, inside its workspace


def find_state_dir(option: str | None, start: Path | None = None, quiet: bool = False) -> Path:
    """--state-dir, RUNNER_STATE_DIR, else the state directory of the nearest directory, from
    here up, whose runs are recorded (or an old `.runner` there)."""
    if option or os.environ.get("RUNNER_STATE_DIR"):
        return Path(option or os.environ["RUNNER_STATE_DIR"]).absolute()
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        current, legacy = project_state_dir(directory), directory / LEGACY
        found = current if (current / DB_NAME).is_file() else legacy if (legacy / DB_NAME).is_file() else None
        if found is None:
            continue
        if not quiet and (legacy / DB_NAME).is_file():
            print(
                f"runner: note: {legacy} holds runs kept where runner kept them before, inside the workspace; "
                + (f"reading them, since none are recorded in {current}, where new runs go, yet "
                   f"(unless given --state-dir {legacy})"
                   if found == legacy else f"see them with --state-dir {legacy}, and remove it when done"),
                file=sys.stderr,
            )
        return found
    raise UsageError(
        f"no runs are recorded for {here} or a directory above it (those of workflows in {here} would be in "
        f"{project_state_dir(here)}); run this in the workflow's directory, or name the state directory "
        "with --state-dir DIR or RUNNER_STATE_DIR"
    )
