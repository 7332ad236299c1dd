"""Core speed goals, measured as ratios against baselines in the same run.

    python benchmarks/core.py [--repeat N] [--json FILE]

(`benchmarks/peers.py` measures the same kind of work against act, Prefect and
HyperNodes; the helpers both use are in `benchmarks/_measure.py`.)

Every measurement is a whole process, as a user meets it: `runner run` on a
generated workflow against the same work done with the Docker SDK directly.
Needs the Docker engine and the local test image (`scripts/test-images`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _measure import (
    RUNNER,
    compile_runner,
    Failed,
    jobs_workflow,
    matrix_workflow,
    measure,
    median as _median,
    raw_jobs,
    raw_steps,
    run_workflow,
    script,
    steps_workflow,
    value_chain_workflow,
    value_wide_workflow,
)


def median(argv: list[str], cwd: Path, repeat: int) -> tuple[float, int]:
    try:
        return _median([measure(argv, cwd) for _ in range(repeat)])
    except Failed as e:
        raise SystemExit(str(e)) from None


def scenarios(directory: Path):
    yield (
        "one job of 50 steps running `true`",
        run_workflow(directory, "steps", steps_workflow(50)),
        script(directory, "raw_steps", raw_steps(50)),
        "50 exec_run calls in one container (Docker SDK)",
        1.5,
    )
    yield (
        "20 one-step jobs at concurrency 8",
        run_workflow(directory, "jobs", jobs_workflow(20, 8)),
        script(directory, "raw_jobs", raw_jobs(20, 8)),
        "20 containers created, started, waited for, removed (Docker SDK, 8 threads)",
        1.2,
    )
    yield (
        "a 100-instance matrix at concurrency 8",
        run_workflow(directory, "matrix", matrix_workflow(100, 8)),
        script(directory, "raw_matrix", raw_jobs(100, 8)),
        "100 containers created, started, waited for, removed (Docker SDK, 8 threads)",
        1.2,
    )
    empty = script(directory, "empty", "")
    yield (
        "10,000 value jobs in a chain",
        run_workflow(directory, "chain", value_chain_workflow(10000)),
        empty,
        "python3 starting and doing nothing",
        None,
    )
    yield (
        "10,000 value jobs in one layer",
        run_workflow(directory, "wide", value_wide_workflow(10000)),
        empty,
        "python3 starting and doing nothing",
        None,
    )
    cached = run_workflow(directory, "cached", cached_jobs_workflow(20))
    subprocess.run(cached, cwd=directory, check=True, stdout=subprocess.DEVNULL)  # fills the cache
    yield (
        "20 one-step jobs, every one a cache hit",
        cached,
        empty,
        "python3 starting and doing nothing (goal: runner under 1 s)",
        None,
    )
    yield ("runner --help", [*RUNNER, "--help"], empty, "python3 starting and doing nothing", None)


def cached_jobs_workflow(jobs: int, image: str = "runner-test/busybox:latest") -> str:
    body = "".join(f"  j{i}: {{image: '{image}', run: 'echo {i}'}}\n" for i in range(jobs))
    return f"version: 1\nconcurrency: 8\ndefaults: {{cache: true}}\njobs:\n{body}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    compile_runner()
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
