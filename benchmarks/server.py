"""`runner serve`'s speed goals (issue 14), measured against a real server on 127.0.0.1.

    python benchmarks/server.py [--size tiny|full] [--json FILE]

- start: from `POST /runs` to the first job's `node.started` at a client, for a
  value job (median of 100; goal < 20 ms);
- stream: from a transition in the engine (the time the event was made, as the
  store keeps it) to its arrival at an SSE client that follows the run
  (median; goal < 20 ms);
- batch: 100 runs of 10 value jobs each, submitted at once, against the same 100
  runs carried out in one process by `run_workflow` without HTTP, in this run
  (ratio; goal ≤ 1.1);
- memory: the server's resident memory idle, and after each 500 of 2,000
  finished runs (goal: no growth over 1,000 runs once warm).

The server is a whole process, as a user starts it; the baseline of `batch` is
a process of its own too. Needs the Docker engine and the local test image for
`stream` (its run has a container job that writes a line every 50 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from httpx_sse import connect_sse

from _measure import IMAGE, RUNNER, write


@dataclass(frozen=True)
class Size:
    starts: int  # runs timed from POST to node.started
    streamed: int  # runs whose events are timed at an SSE client
    batch: int  # runs submitted at once
    jobs: int  # value jobs in each of them
    held: int  # runs finished while memory is watched
    repeat: int  # turns of the batch and its baseline (medians)


SIZES = {"full": Size(100, 5, 100, 10, 2000, 5), "tiny": Size(5, 1, 5, 3, 500, 1)}

LINES = 20


def value_workflow(jobs: int) -> str:
    body = "".join(f"  j{i}: {{outputs: {{n: '${{{{ {i} * 2 }}}}'}}}}\n" for i in range(jobs))
    return f"version: 1\njobs:\n{body}"


def talking_workflow(image: str = IMAGE) -> str:
    return (f"version: 1\njobs:\n  first: {{outputs: {{n: 1}}}}\n  talk:\n    needs: first\n    image: '{image}'\n"
            f"    run: 'for i in $(seq 1 {LINES}); do echo line $i; sleep 0.05; done'\n"
            "  last: {needs: talk, outputs: {n: 2}}\n")


class Server:
    """`runner serve --port 0` on a directory of workflows, until stopped."""

    def __init__(self, directory: Path, workflows: Path):
        self.state = directory / "state"
        self.process = subprocess.Popen(
            [*RUNNER, "serve", "--port", "0", "--workflows", str(workflows), "--state-dir", str(self.state)],
            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.process.stdout.readline()
        found = re.search(r"serving (http://[^ ,]+)", line)
        if not found:
            self.process.kill()
            raise SystemExit(f"the server did not start: {line}")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        self.api = found.group(1) + "/api/v1"
        self.client = httpx.Client(base_url=self.api, timeout=120)

    def rss_mb(self) -> float:
        for line in open(f"/proc/{self.process.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_s(self) -> float:
        """The server's CPU time so far (user and system)."""
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def start(self, workflow: str, **params) -> dict:
        response = self.client.post("/runs", json={"workflow": workflow}, params=params)
        if response.status_code not in (201, 202):
            raise SystemExit(f"POST /runs: {response.status_code} {response.text}")
        return response.json()

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(60)


def measure_start(server: Server, runs: int) -> tuple[list[float], list[float]]:
    """Seconds from sending POST /runs to the first node.started: made in the engine (the store's time of
    the event), and read by a client that opens the run's stream once answered."""
    sent: dict[str, float] = {}
    at_client = []
    for _ in range(runs):
        begun, wall = time.perf_counter(), time.time()
        run_id = server.start("one.yml")["run_id"]
        sent[run_id] = wall
        with server.client.stream("GET", f"/runs/{run_id}/events") as response:
            for line in response.iter_lines():
                if '"event":"node.started"' in line:
                    at_client.append(time.perf_counter() - begun)
                    break
    made = {run_id: min(t for _, t, kind in made_at(server, run_id) if kind == "node.started") for run_id in sent}
    return [made[run_id] - wall for run_id, wall in sent.items()], at_client


def made_at(server: Server, run_id: str) -> list[tuple[int, float, str]]:
    """(seq, Unix time it was made to the millisecond, type) of each of the run's events, as the store keeps them."""
    with sqlite3.connect(server.state / "state.db") as db:
        rows = db.execute("SELECT lines FROM events WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
    events = []
    for (lines,) in rows:
        for line in lines.split("\n"):
            seq, ms, kind, _ = line.split("\t", 3)
            events.append((int(seq), int(ms) / 1000, kind))
    return events


def measure_stream(server: Server, runs: int) -> list[float]:
    """Seconds from each event's making in the engine to its arrival at an SSE client that was already following."""
    seconds = []
    for _ in range(runs):
        run_id = server.start("talking.yml")["run_id"]
        arrived: dict[int, float] = {}
        with connect_sse(server.client, "GET", f"/runs/{run_id}/events") as source:
            connected = time.time()
            for event in source.iter_sse():
                arrived[int(event.id)] = time.time()
        made = {seq: made for seq, made, _ in made_at(server, run_id)}
        # Only what was made while the client followed: older events are read from the store at once.
        seconds += [arrived[s] - made[s] for s in arrived if made[s] > connected + 0.01]
    return seconds


def measure_batch_server(server: Server, runs: int) -> tuple[float, float]:
    """Seconds from sending RUNS POSTs at once (each waits for its run's end) to the last of their answers,
    and the server's CPU seconds meanwhile.

    The requests are written on connections opened beforehand and read with plain sockets, so that
    the client takes next to none of the machine's time from the server.
    """
    host, port = server.api.split("//")[1].split("/")[0].rsplit(":", 1)
    body = json.dumps({"workflow": "batch.yml"}).encode()
    request = (f"POST /api/v1/runs?wait=600 HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    connections = [socket.create_connection((host, int(port))) for _ in range(runs)]
    cpu = server.cpu_s()
    begun = time.perf_counter()
    for connection in connections:
        connection.sendall(request)
    answers = []
    for connection in connections:
        with connection:
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
            answers.append(answer)
    seconds = time.perf_counter() - begun
    cpu = server.cpu_s() - cpu
    for answer in answers:
        if not answer.startswith(b"HTTP/1.1 201") or b'"status":"success"' not in answer:
            raise SystemExit(f"a run of the batch did not succeed: {answer[:300]!r}")
    return seconds, cpu


IN_PROCESS = """
import resource, sys, time, trio
from runner.engine.run import RunOptions, run_workflow
from runner.history.store import Store
from runner.load.workflow import content_hash, load_workflow

workflow, _ = load_workflow(sys.argv[1])
digest = content_hash(workflow)
store = Store(sys.argv[2])

outcomes = []

async def one():
    outcomes.append(await run_workflow(workflow, RunOptions(store=store, digest=digest)))

async def main(runs):
    async with trio.open_nursery() as nursery:
        for _ in range(runs):
            nursery.start_soon(one)

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

trio.run(main, 1)  # imports and caches filled once, as the server's are
outcomes.clear()
begun, cpu_begun = time.perf_counter(), cpu()
trio.run(main, int(sys.argv[3]))
seconds, cpu_seconds = time.perf_counter() - begun, cpu() - cpu_begun
assert all(o.status.value == "success" for o in outcomes), [o.status for o in outcomes]
print(seconds, cpu_seconds)
"""


def measure_batch_in_process(directory: Path, workflow: Path, runs: int) -> tuple[float, float]:
    """The same runs by `run_workflow` in one trio loop of one process, on a store of its own: seconds, CPU seconds."""
    script = write(directory, "in_process.py", IN_PROCESS)
    done = subprocess.run([sys.executable, str(script), str(workflow), str(directory / "state-in-process"), str(runs)],
                          cwd=directory, capture_output=True, text=True, check=True)
    seconds, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(seconds), float(cpu)


def measure_memory(server: Server, runs: int) -> list[tuple[int, float]]:
    """(runs finished, resident MB) idle and after each 500 of RUNS runs of one value job."""
    points = [(0, server.rss_mb())]
    with ThreadPoolExecutor(4) as pool:
        for done in range(500, runs + 1, 500):
            list(pool.map(lambda _: server.start("one.yml", wait=60), range(500)))
            points.append((done, server.rss_mb()))
    return points


def run(size: Size, directory: Path) -> dict:
    workflows = directory / "workflows"
    workflows.mkdir(parents=True)
    write(workflows, "one.yml", value_workflow(1))
    write(workflows, "batch.yml", value_workflow(size.jobs))
    write(workflows, "talking.yml", talking_workflow())
    results: dict = {"size": size.__dict__}

    (directory / "serve-1").mkdir()
    server = Server(directory / "serve-1", workflows)
    try:
        server.start("one.yml", wait=60)  # imports and caches filled once, as on a server that has run before
        in_engine, at_client = measure_start(server, size.starts)
        results["start_engine_ms"] = round(statistics.median(in_engine) * 1000, 2)
        results["start_ms"] = round(statistics.median(at_client) * 1000, 2)
        stream = measure_stream(server, size.streamed)
        results["stream_ms"] = round(statistics.median(stream) * 1000, 2)
        results["stream_events"] = len(stream)
    finally:
        server.stop()

    (directory / "serve-2").mkdir()
    server = Server(directory / "serve-2", workflows)
    served, alone = [], []
    try:
        server.start("batch.yml", wait=60)
        for _ in range(size.repeat):  # taking turns, so that the machine's other load falls on both alike
            served.append(measure_batch_server(server, size.batch))
            alone.append(measure_batch_in_process(directory, workflows / "batch.yml", size.batch))
    finally:
        server.stop()
    batch, baseline = statistics.median(s for s, _ in served), statistics.median(s for s, _ in alone)
    batch_cpu, baseline_cpu = statistics.median(c for _, c in served), statistics.median(c for _, c in alone)
    results.update(batch_server_s=round(batch, 3), batch_in_process_s=round(baseline, 3),
                   batch_ratio=round(batch / baseline, 2), batch_server_cpu_s=round(batch_cpu, 3),
                   batch_in_process_cpu_s=round(baseline_cpu, 3), batch_cpu_ratio=round(batch_cpu / baseline_cpu, 2))

    (directory / "serve-3").mkdir()
    server = Server(directory / "serve-3", workflows)
    try:
        server.start("one.yml", wait=60)
        points = measure_memory(server, size.held)
    finally:
        server.stop()
    results["memory_mb"] = [[n, round(mb, 1)] for n, mb in points]
    results["idle_mb"] = round(points[0][1], 1)
    half = len(points) // 2
    for name, (first, last) in (("first", (points[0], points[half])), ("then", (points[half], points[-1]))):
        results[f"per_run_kb_{name}"] = round((last[1] - first[1]) * 1024 / max(last[0] - first[0], 1), 2)
    return results


def report(results: dict, out=None) -> None:
    out = out or sys.stdout
    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"

    print(f"POST /runs → first node.started (median of {results['size']['starts']}): in the engine "
          f"{results['start_engine_ms']:.1f} ms, goal < 20 ms {verdict(results['start_engine_ms'] < 20)}; "
          f"at a client that then opens the stream {results['start_ms']:.1f} ms", file=out)
    print(f"engine transition → SSE client (median of {results['stream_events']} events): "
          f"{results['stream_ms']:.1f} ms, goal < 20 ms {verdict(results['stream_ms'] < 20)}", file=out)
    print(f"{results['size']['batch']} runs of {results['size']['jobs']} value jobs at once "
          f"(medians of {results['size']['repeat']}): server "
          f"{results['batch_server_s']:.2f} s, one process without HTTP {results['batch_in_process_s']:.2f} s, "
          f"ratio {results['batch_ratio']:.2f}, goal ≤ 1.1 {verdict(results['batch_ratio'] <= 1.1)}; CPU time "
          f"{results['batch_server_cpu_s']:.2f} s against {results['batch_in_process_cpu_s']:.2f} s, "
          f"ratio {results['batch_cpu_ratio']:.2f}", file=out)
    points = ", ".join(f"{n}: {mb} MB" for n, mb in results["memory_mb"])
    print(f"server memory by runs finished: {points}; a run adds {results['per_run_kb_first']} KB over the first "
          f"half, {results['per_run_kb_then']} KB over the second", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = run(SIZES[args.size], Path(tmp))
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
