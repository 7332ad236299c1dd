"""What a container job's processes may do: their capabilities and the user they run as."""

from __future__ import annotations

import os
from pathlib import Path

from runner.backends.base import DEFAULT_CAPABILITIES
from runner.model.workflow import Capabilities

HOST_USER = "host"  # `user: host`: the workspace's owner
# The home of a user the image may have no account for: somewhere it can write.
HOME = "/tmp"


def capabilities(wanted: Capabilities) -> frozenset[str]:
    """The job's capabilities: the defaults, less `drop` (ALL: every one), plus `add`."""
    kept = frozenset() if "ALL" in wanted.drop else DEFAULT_CAPABILITIES - set(wanted.drop)
    return kept | set(wanted.add)


def job_user(user: str | None, workspace: Path) -> str | None:
    """The user the job's processes run as (None: the image's).

    Files a job writes in the workspace belong to the user it runs as: when runner
    itself is not root, the image's root would leave files its user cannot remove,
    so the job runs as runner's user unless it names one.
    """
    if user == HOST_USER:
        owner = workspace.stat()
        return f"{owner.st_uid}:{owner.st_gid}"
    if user is None and os.geteuid() != 0:
        return f"{os.geteuid()}:{os.getegid()}"
    return user
