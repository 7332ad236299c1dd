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
from httpx_sse import connect_sse


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

    def events(self, run_id: str, after: int | None = None, sse: bool = False, **headers: str) -> list[dict]:
        """Every event of the run after `after`, to the end of the stream, as {"id", "event", "data"}."""
        params = {"after": after} if after is not None else {}
        url = f"/runs/{run_id}/events"
        if sse:
            with connect_sse(self.client, "GET", url, params=params, headers=headers) as source:
                source.response.raise_for_status()
                return [{"id": int(e.id), "event": e.event, "data": e.json()} for e in source.iter_sse()]
        with self.client.stream("GET", url, params=params, headers=headers) as response:
            assert response.status_code == 200, response.read()
            return [json.loads(line) for line in response.iter_lines() if line]

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

