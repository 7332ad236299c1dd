"""Hints for what GitHub Actions spells differently: keys runner names otherwise or does
not have, and the `needs` and `github` contexts in expressions.  Each hint names runner's way.
"""

from __future__ import annotations

import re
from typing import Any

_TIMEOUT = "write `timeout: {minutes}m` (a duration: 90s, 5m, 1h30m)"
_CONTINUE = "write `continue_on_error:`"

# (where, key) → the hint; where is "workflow", "defaults", "job" or "step".
_KEYS = {
    ("workflow", "on"): "runner has no triggers: a workflow runs when `runner run` runs it "
    "(under GitHub Actions, from a step of a GitHub workflow); declare `inputs:` for what a trigger would pass",
    ("workflow", "permissions"): "runner gives jobs no GitHub token; pass one in as a secret (`secrets:`)",
    ("defaults", "run"): "write `defaults: {shell: …, working_dir: …}`",
    ("job", "runs-on"): "runner picks no machine: every job runs in a container; name its `image:` (or `defaults.image`)",
    ("job", "container"): "name the job's container image with `image:`",
    ("job", "strategy"): "write `matrix:` directly in the job; `strategy.fail-fast` is `fail_fast:` "
    "and `max-parallel` is `max_parallel:`, both inside `matrix:`",
    ("job", "timeout-minutes"): _TIMEOUT,
    ("job", "continue-on-error"): _CONTINUE,
    ("job", "defaults"): "write the job's own `shell:` and `working_dir:`",
    ("job", "permissions"): "runner gives jobs no GitHub token; pass one in as a secret (`secrets:`)",
    ("step", "uses"): "runner runs no actions: write what the step does as commands in `run:` "
    "(a job's `uses:` runs another runner workflow)",
    ("step", "with"): "runner runs no actions: write what the step does as commands in `run:`",
    ("step", "working-directory"): "write `working_dir:`",
    ("step", "timeout-minutes"): _TIMEOUT,
    ("step", "continue-on-error"): _CONTINUE,
}

# `github.<key>` → what runner has instead.
_GITHUB = {
    "sha": "git.sha",
    "ref": "git.ref",
    "ref_name": "git.branch",
    "head_ref": "git.branch",
    "run_id": "run.id",
    "run_attempt": "run.attempt",
}
_NEEDS = re.compile(r"(?<![\w.])needs\.")


def _where(path: tuple) -> str | None:
    if path == ():
        return "workflow"
    if path == ("defaults",):
        return "defaults"
    if len(path) == 2 and path[0] == "jobs":
        return "job"
    if len(path) == 4 and path[0] == "jobs" and path[2] == "steps":
        return "step"
    return None


def key_hint(key: str, path: tuple, value: Any) -> str | None:
    """` (a GitHub Actions key): write …` for a GitHub Actions key in the mapping at `path`, or None."""
    hint = _KEYS.get((_where(path), key))
    if hint is None:
        return None
    minutes = value if isinstance(value, (int, float)) and not isinstance(value, bool) else "N"
    return f" (a GitHub Actions key): {hint.replace('{minutes}', str(minutes))}"


def context_hint(root: str, key: str | None, source: str) -> str | None:
    """What to write instead of GitHub Actions' `needs.…` or `github.…` in an expression."""
    if root == "needs":
        return f"`needs` is GitHub Actions' name for the jobs needed: write `{_NEEDS.sub('jobs.', source)}`"
    if root == "github":
        if key == "workspace":
            return "runner has no `github` context: the workspace is `/workspace` in every container (`$GITHUB_WORKSPACE`)"
        instead = _GITHUB.get(key or "")
        if instead:
            return f"runner has no `github` context: write `{instead}`"
        return (
            "runner has no `github` context; it has `run.id`, `run.attempt`, and the workspace's git facts "
            "`git.sha`, `git.ref`, `git.branch`: pass anything else in as `inputs`"
        )
    return None
