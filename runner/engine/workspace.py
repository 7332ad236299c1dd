"""The run's workspace, as on GitHub: the repository that holds the workflow file,
and the git facts of it that expressions read as `git.sha`, `git.ref` and `git.branch`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from runner.errors import UsageError
from runner.expr.templates import ever_read, names_in
from runner.model.workflow import GIT_FACTS, Workflow

GIT_TIMEOUT = 10  # seconds; a git that hangs (a lock, a network filesystem) gives no facts rather than no run


def find_workspace(workflow_directory: str, option: str | None = None) -> Path:
    """`--workspace DIR`, else the top of the git work tree holding the workflow, else its directory.

    `.git` is looked for rather than asking git, which may be missing (runner's
    image) or refuse a repository owned by another user.
    """
    if option is not None:
        chosen = Path(option).absolute()
        if not chosen.is_dir():
            raise UsageError(f"the workspace {option} is not a directory")
        return chosen
    here = Path(workflow_directory).absolute()
    for directory in (here, *here.parents):
        if (directory / ".git").exists():
            return directory
    return here


def uses_git(workflow: Workflow) -> bool:
    """Whether any expression of the workflow (or of one it uses) reads `git`: asking git takes
    tens of milliseconds, which a run that does not need its answer should not wait for."""
    if not ever_read("git"):  # walking 10,000 jobs' templates takes longer than asking this
        return False
    for w in workflow.workflows():
        templates = [w.env, w.outputs, *(t for job in w.jobs.values() for t in job.templates())]
        if any(root == "git" for root, _ in names_in(templates)):
            return True
    return False


def git_facts(workspace: Path) -> dict[str, str | None]:
    """`sha`, `ref` (refs/heads/main) and `branch` (main) of the workspace's checkout; each None
    where it is not known: not a git repository, no git, nothing committed, a detached HEAD."""
    facts: dict[str, str | None] = dict.fromkeys(GIT_FACTS)
    sha = _git(workspace, "rev-parse", "--verify", "--quiet", "HEAD")
    if not sha:
        return facts
    ref = _git(workspace, "symbolic-ref", "--quiet", "HEAD")
    if not ref and os.environ.get("GITHUB_SHA") == sha:
        ref = os.environ.get("GITHUB_REF") or None  # GitHub checks out a detached HEAD
    facts.update(sha=sha, ref=ref, branch=ref.removeprefix("refs/heads/") if ref and ref.startswith("refs/heads/") else None)
    return facts


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(directory), *args],
            capture_output=True, text=True, timeout=GIT_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
