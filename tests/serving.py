"""A `runner serve` process for tests, on 127.0.0.1 and a free port, as a user starts it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


class Served:
    def __init__(self, *args: str, cwd: Path, env: dict | None = None, token: str | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runner", "serve", "--port", "0", *map(str, args)],
            cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        line = self.process.stdout.readline()
        self.stdout.append(line)
        found = re.search(r"serving (http://[^ ,]+)", line)
        if not found:
            self.process.wait(10)
            raise AssertionError(f"the server did not start: {line}{self.process.stderr.read()}")
        self.url = found.group(1)
        self.api = self.url + "/api/v1"
        for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr)):
            threading.Thread(target=lambda s=stream, l=lines: l.extend(s), daemon=True).start()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=self.api, headers=headers, timeout=60)

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def start(self, workflow: str, inputs: dict | None = None, **params) -> str:
        response = self.client.post("/runs", json={"workflow": workflow, "inputs": inputs or {}}, params=params)
        assert response.status_code in (201, 202), response.text
        return response.json()["run_id"]

    def events(self, run_id: str, after: int | None = None, sse: bool = False) -> list[dict]:
        """Every event of the run after `after`, to the end of the stream."""
        headers = {"Accept": "text/event-stream"} if sse else {}
        params = {"after": after} if after is not None else {}
        with self.client.stream("GET", f"/runs/{run_id}/events", headers=headers, params=params) as response:
            assert response.status_code == 200, response.read()
            text = "".join(response.iter_text())
        return parse_sse(text) if sse else [json.loads(line) for line in text.splitlines() if line]

    def wait_for(self, run_id: str, *statuses: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.client.get(f"/runs/{run_id}").json()
            if run["status"] in statuses:
                return run
            assert time.monotonic() < deadline, f"run {run_id} is {run['status']}, not {statuses}"
            time.sleep(0.1)

    def stop(self, signum: int = signal.SIGINT, timeout: float = 60) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)


def parse_sse(text: str) -> list[dict]:
    """SSE messages as {"id", "event", "data"}; comments (heartbeats) are left out."""
    events = []
    for block in text.split("\n\n"):
        fields: dict = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if fields:
            events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return events
