"""`--backend swarm` speed goals, measured in one run on the test cluster (`sudo scripts/swarm-cluster up`).

    python benchmarks/swarm.py [--repeat N] [--json FILE]

1. Per-job overhead of a one-step job on a one-node swarm (the jobs constrained
   to the manager) against the docker backend on the same engine: the time of a
   chain of 11 one-step jobs less that of a chain of 1, over 10, so that what a
   run costs once (the swarm's storage probe, the store) is left out.
   Goal: at most 1.5 times the docker backend's.
2. 12 jobs of `sleep 2`, each reserving all of one node's CPUs, on the three
   nodes against one node (constrained to the manager).  The jobs do not use the
   CPUs they reserve: what is measured is the placement.  Goal: 3 nodes at least
   2.5 times faster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from _measure import RUNNER, Failed, measure, median, write

REGISTRY = os.environ.get("RUNNER_REGISTRY", "10.213.7.1:5000")
LOCAL = "runner-test/busybox:latest"
PINNED = f"{REGISTRY}/{LOCAL}"
ON_MANAGER = "    placement: {constraints: [node.role == manager]}\n"


def chain(jobs: int, image: str, placement: str = "") -> str:
    body = "".join(
        f"  j{i}:\n    image: '{image}'\n    run: 'true'\n{placement}" + (f"    needs: j{i - 1}\n" if i else "")
        for i in range(jobs)
    )
    return f"version: 1\njobs:\n{body}"


def sleepers(cpus: float, placement: str = "") -> str:
    return (
        f"version: 1\nconcurrency: 12\njobs:\n  sleep:\n    image: '{PINNED}'\n"
        f"    matrix: {{n: '${{{{ range(12) | list }}}}'}}\n    resources: {{cpus: {cpus:g}}}\n{placement}"
        "    run: sleep 2\n"
    )


def node_cpus() -> float:
    import docker

    nodes = docker.from_env().api.nodes()
    if len(nodes) < 3:
        raise SystemExit("needs the three-node test cluster: run `sudo scripts/swarm-cluster up`")
    return min(n["Description"]["Resources"]["NanoCPUs"] for n in nodes) / 1e9


def timed(directory: Path, name: str, text: str, backend: str, repeat: int) -> float:
    path = write(directory, f"{name}.yml", text)
    argv = [*RUNNER, "run", str(path), "--quiet", "--backend", backend, "--state-dir", str(directory / "state")]
    try:
        return median([measure(argv, directory) for _ in range(repeat)])[0]
    except Failed as e:
        raise SystemExit(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    cpus = node_cpus()
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        per_job = {}
        for backend, image, placement in (("docker", LOCAL, ""), ("swarm", PINNED, ON_MANAGER)):
            eleven = timed(directory, f"{backend}-11", chain(11, image, placement), backend, args.repeat)
            one = timed(directory, f"{backend}-1", chain(1, image, placement), backend, args.repeat)
            per_job[backend] = (eleven - one) / 10
        ratio = per_job["swarm"] / per_job["docker"]
        rows.append({
            "scenario": "per-job overhead of a one-step job, one-node swarm vs docker backend",
            "swarm_s": round(per_job["swarm"], 3), "docker_s": round(per_job["docker"], 3),
            "ratio": round(ratio, 2), "goal": "<= 1.5", "met": ratio <= 1.5,
        })
        one_node = timed(directory, "one-node", sleepers(cpus, ON_MANAGER), "swarm", args.repeat)
        three_nodes = timed(directory, "three-nodes", sleepers(cpus), "swarm", args.repeat)
        speedup = one_node / three_nodes
        rows.append({
            "scenario": f"12 jobs of `sleep 2` reserving {cpus:g} CPUs each, 3 nodes vs 1",
            "one_node_s": round(one_node, 2), "three_nodes_s": round(three_nodes, 2),
            "speedup": round(speedup, 2), "goal": ">= 2.5", "met": speedup >= 2.5,
        })
    for row in rows:
        print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps({"repeat": args.repeat, "rows": rows}, indent=2) + "\n")
    return 0 if all(row["met"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
