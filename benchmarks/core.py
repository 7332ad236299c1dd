"""Core speed goals, measured as ratios against baselines in the same run.

    python benchmarks/core.py [--repeat N] [--json FILE]

Every measurement is a whole process, as a user meets it: `runner run` on a
generated workflow against the same work done with the Docker SDK directly.
Needs the Docker engine and the local test image (`scripts/test-images`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGE = "runner-test/busybox:latest"
RUNNER = [sys.executable, "-m", "runner"]

# The same container work done with the Docker SDK alone: the floor runner is held to.
RAW_STEPS = """
import docker
api = docker.from_env().api
c = api.create_container({image!r}, entrypoint=["tail"], command=["-f", "/dev/null"], host_config=api.create_host_config(init=True))["Id"]
api.start(c)
for _ in range({steps}):
    e = api.exec_create(c, ["sh", "-c", "true"])["Id"]
    api.exec_start(e)
    assert api.exec_inspect(e)["ExitCode"] == 0
api.remove_container(c, force=True)
"""

RAW_JOBS = """
import docker
from concurrent.futures import ThreadPoolExecutor
client = docker.from_env(max_pool_size={concurrency})
api = client.api
def job(_):
    c = api.create_container({image!r}, command=["sh", "-c", "true"], host_config=api.create_host_config(init=True))["Id"]
    api.start(c)
    assert api.wait(c)["StatusCode"] == 0
    api.remove_container(c, force=True)
with ThreadPoolExecutor({concurrency}) as pool:
    list(pool.map(job, range({jobs})))
"""


def measure(argv: list[str], cwd: Path) -> tuple[float, int]:
    """Wall time in seconds and peak memory in MB of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{process.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss // 1024


def median(argv: list[str], cwd: Path, repeat: int) -> tuple[float, int]:
    runs = [measure(argv, cwd) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def run_workflow(directory: Path, name: str, text: str, *extra: str) -> list[str]:
    path = directory / f"{name}.yml"
    path.write_text(text)
    return [*RUNNER, "run", str(path), "--quiet", "--state-dir", str(directory / "state"), *extra]


def script(directory: Path, name: str, text: str) -> list[str]:
    path = directory / f"{name}.py"
    path.write_text(text)
    return [sys.executable, str(path)]


def scenarios(directory: Path):
    steps = "".join("      - run: 'true'\n" for _ in range(50))
    yield (
        "one job of 50 steps running `true`",
        run_workflow(directory, "steps", f"version: 1\njobs:\n  steps:\n    image: {IMAGE}\n    steps:\n{steps}"),
        script(directory, "raw_steps", RAW_STEPS.format(image=IMAGE, steps=50)),
        "50 exec_run calls in one container (Docker SDK)",
        1.5,
    )
    jobs = "".join(f"  j{i}: {{image: '{IMAGE}', run: 'true'}}\n" for i in range(20))
    yield (
        "20 one-step jobs at concurrency 8",
        run_workflow(directory, "jobs", f"version: 1\nconcurrency: 8\njobs:\n{jobs}"),
        script(directory, "raw_jobs", RAW_JOBS.format(image=IMAGE, jobs=20, concurrency=8)),
        "20 containers created, started, waited for, removed (Docker SDK, 8 threads)",
        1.2,
    )
    yield (
        "a 100-instance matrix at concurrency 8",
        run_workflow(
            directory, "matrix",
            f"version: 1\nconcurrency: 8\njobs:\n  m:\n    image: '{IMAGE}'\n"
            "    matrix: {n: '${{ range(100) | list }}'}\n    run: 'true'\n",
        ),
        script(directory, "raw_matrix", RAW_JOBS.format(image=IMAGE, jobs=100, concurrency=8)),
        "100 containers created, started, waited for, removed (Docker SDK, 8 threads)",
        1.2,
    )
    empty = script(directory, "empty", "")
    chain = "  j0: {outputs: {n: 0}}\n" + "".join(
        f"  j{i}: {{needs: j{i - 1}, outputs: {{n: '${{{{ jobs.j{i - 1}.outputs.n + 1 }}}}'}}}}\n" for i in range(1, 10000)
    )
    yield (
        "10,000 value jobs in a chain",
        run_workflow(directory, "chain", f"version: 1\njobs:\n{chain}"),
        empty,
        "python3 starting and doing nothing",
        None,
    )
    wide = "".join(f"  j{i}: {{outputs: {{n: '${{{{ {i} * 2 }}}}'}}}}\n" for i in range(10000))
    yield (
        "10,000 value jobs in one layer",
        run_workflow(directory, "wide", f"version: 1\njobs:\n{wide}"),
        empty,
        "python3 starting and doing nothing",
        None,
    )
    yield ("runner --help", [*RUNNER, "--help"], empty, "python3 starting and doing nothing", None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name, runner_argv, baseline_argv, baseline, target in scenarios(directory):
            runner_s, runner_mb = median(runner_argv, directory, args.repeat)
            baseline_s, _ = median(baseline_argv, directory, args.repeat)
            row = {
                "scenario": name,
                "runner_s": round(runner_s, 3),
                "runner_peak_mb": runner_mb,
                "baseline": baseline,
                "baseline_s": round(baseline_s, 3),
                "ratio": round(runner_s / baseline_s, 2),
                "target_ratio": target,
            }
            rows.append(row)
            verdict = "" if target is None else ("  ok" if row["ratio"] <= target else f"  over {target}")
            print(
                f"{name:38} runner {runner_s:6.2f}s {runner_mb:4d} MB | {baseline_s:6.2f}s {baseline}"
                f" | ratio {row['ratio']:.2f}{verdict}",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
