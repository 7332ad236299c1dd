"""Watching which containers the engine creates for a test's runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conftest import LABEL


class Creations:
    """Containers the engine creates for runs in one workspace, watched live (the engine keeps only
    a short history of events, which other users of a busy engine soon push out)."""

    def __init__(self, docker, workspace: Path):
        self.events: list[dict] = []
        self.stream = docker.api.events(
            decode=True, filters={"type": "container", "event": "create", "label": f"dev.runner.workspace={workspace}"}
        )
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self) -> None:
        try:
            for event in self.stream:
                self.events.append(event)
        except Exception:  # closed
            pass

    def __call__(self, run_id: str, since: float) -> list[str]:
        """The nodes whose containers were created for the run since `since` (Unix seconds)."""
        time.sleep(0.5)  # let the last events arrive
        return sorted(
            e["Actor"]["Attributes"]["dev.runner.node"] for e in self.events
            if e["Actor"]["Attributes"].get(LABEL) == run_id and e["timeNano"] >= since * 1e9
        )

    def close(self) -> None:
        self.stream.close()


@pytest.fixture
def created(docker, tmp_path):
    watch = Creations(docker, tmp_path)
    time.sleep(0.2)
    yield watch
    watch.close()
