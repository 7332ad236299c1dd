"""`runner serve` with 50 clients following event streams and leaving at random: nothing is left behind.

What a user can see of the server process is measured (/proc: its resident
memory, its open files and sockets, its threads), and the engine's containers:
after rounds of 50 clients that disconnect mid-stream, before the first byte,
or read to the end, the server holds no more sockets or threads than before,
its memory has not grown, no container is left and it still answers at once.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time

import httpx

from conftest import BUSYBOX, LABEL, write
from serving import Served

CLIENTS = 50
ROUNDS = 4
SLACK = 5  # sockets to the Docker engine and worker threads that come and go with the engine's calls

TALKING = f"""
    version: 1
    jobs:
      first:
        outputs: {{n: 1}}
      talk:
        needs: first
        image: {BUSYBOX}
        steps:
          - run: for i in $(seq 1 40); do echo "line $i"; sleep 0.05; done
      last:
        needs: talk
        outputs: {{n: 2}}
"""


def _proc(pid: int) -> dict[str, int]:
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines())
    return {"rss_kb": int(status["VmRSS"].split()[0]), "threads": int(status["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def _client(served: Served, run_id: str, rng: random.Random, errors: list) -> None:
    """One client: follows the run and leaves when it likes."""
    how = rng.choice(["early", "events", "seconds", "end"])
    try:
        if how == "early":  # sends the request and goes before the answer
            with socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])), timeout=10) as s:
                s.sendall(f"GET /api/v1/runs/{run_id}/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
                          .encode())
                time.sleep(rng.random() * 0.05)
            return
        headers = {"Accept": "text/event-stream"} if rng.random() < 0.5 else {}
        if rng.random() < 0.3:
            headers["Last-Event-ID"] = str(rng.randint(0, 10))
        with httpx.Client(base_url=served.api, timeout=60) as client:
            with client.stream("GET", f"/runs/{run_id}/events", headers=headers) as response:
                assert response.status_code == 200
                wanted, deadline = rng.randint(1, 30), time.monotonic() + rng.random() * 2
                for count, _ in enumerate(response.iter_lines()):
                    if how == "events" and count >= wanted or how == "seconds" and time.monotonic() > deadline:
                        break
    except Exception as e:  # noqa: BLE001 - a client's failure is the test's
        errors.append(repr(e))


def _round(served: Served, rng: random.Random) -> str:
    run_id = served.start("talking.yml")
    errors: list[str] = []
    threads = [threading.Thread(target=_client, args=(served, run_id, random.Random(rng.random()), errors))
               for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
        time.sleep(rng.random() * 0.02)
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    served.wait_for(run_id, "success")
    return run_id


def _settled(served: Served, before: dict[str, int]) -> dict[str, int]:
    """The server's figures once its closed connections are gone (a few moments after the clients left)."""
    deadline = time.monotonic() + 10
    while True:
        now = _proc(served.process.pid)
        if now["fds"] <= before["fds"] + SLACK and now["threads"] <= before["threads"] + SLACK \
                or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def test_clients_leaving_at_random_leave_no_socket_memory_or_container_behind(tmp_path, docker):
    (tmp_path / "workflows").mkdir()
    write(tmp_path / "workflows", TALKING, "talking.yml")
    served = Served("--workflows", tmp_path / "workflows", "--state-dir", tmp_path / "state", cwd=tmp_path)
    try:
        rng = random.Random(14)
        served.start("talking.yml", wait=60)  # imports, caches and pools are filled once
        idle = _proc(served.process.pid)
        _round(served, rng)  # the first round warms what streams use
        warm = _settled(served, idle)
        assert warm["fds"] <= idle["fds"] + SLACK and warm["threads"] <= idle["threads"] + SLACK, (idle, warm)
        for _ in range(ROUNDS - 1):
            run_id = _round(served, rng)
        after = _settled(served, idle)
        # A connection or thread kept for each of the 150 clients would be well past the slack.
        assert after["fds"] <= idle["fds"] + SLACK, (idle, after)
        assert after["threads"] <= idle["threads"] + SLACK, (idle, after)
        # Memory: a leak of one stream's task and buffers for each of 150 clients would show as megabytes.
        assert after["rss_kb"] - warm["rss_kb"] < 3 * 1024, (warm, after)
        assert not docker.api.containers(all=True, filters={"label": f"{LABEL}={run_id}"})
        started = time.monotonic()
        assert served.client.get("/health").json() == {"status": "ok"}
        assert time.monotonic() - started < 1
        print(f"idle {idle}, after the first round {warm}, after {ROUNDS} rounds {after}")
    finally:
        assert served.stop() == 130
    assert "Traceback" not in served.output(), served.output()[-3000:]
