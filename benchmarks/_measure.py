"""What the benchmarks share: timing whole processes, and the workloads both scripts use.

Every measurement is one process started, waited for and timed as a user meets
it; peak memory is that process's own maximum resident set (os.wait4), so a
runner measured through `python -m runner` or the `runner` script counts the
runner and nothing around it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

IMAGE = "runner-test/busybox:latest"


def _runner_command() -> list[str]:
    # The `runner` script of the interpreter running the benchmark, as a user starts it.
    script = Path(sys.executable).with_name("runner")
    return [str(script)] if script.exists() else [sys.executable, "-m", "runner"]


RUNNER = _runner_command()


def compile_runner() -> None:
    """Write runner's bytecode, as installing it from a wheel does.

    An editable install run with PYTHONDONTWRITEBYTECODE set (as CI and
    containers often are) would otherwise compile every module of runner from
    source at each start, some 60 ms that no installed copy pays.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("runner")
    if spec is not None and spec.submodule_search_locations:
        for directory in spec.submodule_search_locations:
            compileall.compile_dir(directory, quiet=2)


class Failed(Exception):
    """A measured process exited non-zero; the message holds the end of its output."""


@dataclass
class Sample:
    seconds: float
    peak_mb: int


def measure(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 1800) -> Sample:
    """Wall time and peak memory (MB) of one process; Failed if it does not exit 0.

    Output goes to a file, never a pipe: a chatty process (Prefect logs every task
    run) would otherwise fill the pipe and stall.
    """
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - start
        process.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            what = f"was killed after {timeout:g}s" if elapsed >= timeout else f"exited {code}"
            raise Failed(f"{' '.join(argv)} {what}:\n{tail}")
    return Sample(elapsed, usage.ru_maxrss // 1024)


def median(samples: list[Sample]) -> tuple[float, int]:
    """Median seconds and the largest peak memory of the samples."""
    return statistics.median(s.seconds for s in samples), max(s.peak_mb for s in samples)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_workflow(directory: Path, name: str, text: str, *extra: str) -> list[str]:
    """`runner run` of the workflow TEXT written as NAME.yml in DIRECTORY."""
    path = write(directory, f"{name}.yml", text)
    return [*RUNNER, "run", str(path), "--quiet", "--state-dir", str(directory / "state"), *extra]


def script(directory: Path, name: str, text: str) -> list[str]:
    """A Python script run by the benchmark's own interpreter (which has the Docker SDK)."""
    path = write(directory, f"{name}.py", text)
    return [sys.executable, str(path)]


# -- runner workflows ---------------------------------------------------------------------


def steps_workflow(steps: int, image: str = IMAGE) -> str:
    body = "".join("      - run: 'true'\n" for _ in range(steps))
    return f"version: 1\njobs:\n  steps:\n    image: '{image}'\n    steps:\n{body}"


def jobs_workflow(jobs: int, concurrency: int, command: str = "true", image: str = IMAGE) -> str:
    body = "".join(f"  j{i}: {{image: '{image}', run: '{command}'}}\n" for i in range(jobs))
    return f"version: 1\nconcurrency: {concurrency}\njobs:\n{body}"


def chain_workflow(jobs: int, image: str = IMAGE) -> str:
    body = "".join(
        f"  j{i}: {{image: '{image}', run: 'true'" + (f", needs: j{i - 1}" if i else "") + "}\n" for i in range(jobs)
    )
    return f"version: 1\njobs:\n{body}"


def matrix_workflow(instances: int, concurrency: int, image: str = IMAGE) -> str:
    return (
        f"version: 1\nconcurrency: {concurrency}\njobs:\n  m:\n    image: '{image}'\n"
        f"    matrix: {{n: '${{{{ range({instances}) | list }}}}'}}\n"
        "    run: 'true'\n"
    )


def value_chain_workflow(nodes: int) -> str:
    body = "  j0: {outputs: {n: 0}}\n" + "".join(
        f"  j{i}: {{needs: j{i - 1}, outputs: {{n: '${{{{ jobs.j{i - 1}.outputs.n + 1 }}}}'}}}}\n"
        for i in range(1, nodes)
    )
    return f"version: 1\njobs:\n{body}"


def value_one_workflow() -> str:
    """One value job: what a run costs before its jobs do anything."""
    return "version: 1\njobs:\n  double: {outputs: {doubled: '${{ 21 * 2 }}'}}\n"


def value_matrix_workflow(instances: int) -> str:
    return (
        f"version: 1\njobs:\n  double:\n    matrix: {{x: '${{{{ range({instances}) | list }}}}', max_instances: {instances}}}\n"
        "    outputs: {doubled: '${{ matrix.x * 2 }}'}\n"
    )


def value_wide_workflow(nodes: int) -> str:
    body = "".join(f"  j{i}: {{outputs: {{n: '${{{{ {i} * 2 }}}}'}}}}\n" for i in range(nodes))
    return f"version: 1\njobs:\n{body}"


# -- the same container work with the Docker SDK alone: the floor runner is held to -------

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
    c = api.create_container({image!r}, command=["sh", "-c", {command!r}], host_config=api.create_host_config(init=True))["Id"]
    api.start(c)
    assert api.wait(c)["StatusCode"] == 0
    api.remove_container(c, force=True)
with ThreadPoolExecutor({concurrency}) as pool:
    list(pool.map(job, range({jobs})))
"""


def raw_steps(steps: int, image: str = IMAGE) -> str:
    return RAW_STEPS.format(image=image, steps=steps)


def raw_jobs(jobs: int, concurrency: int, command: str = "true", image: str = IMAGE) -> str:
    """JOBS containers, each created, started, waited for and removed, CONCURRENCY at a time."""
    return RAW_JOBS.format(image=image, jobs=jobs, concurrency=concurrency, command=command)
