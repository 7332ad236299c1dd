"""The benchmark code must not rot: every scenario of benchmarks/peers.py once, at its tiny size.

The benchmarks themselves are not tests and never run here. This runs runner's
side of each scenario and the Docker SDK baselines (which need only the engine);
the workflows and scripts for act, Prefect and HyperNodes are generated and
checked for shape but not run: CI has neither the peers nor a network to fetch them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ruamel.yaml import YAML

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import peers  # noqa: E402

TINY_IDS = {
    "steps", "jobs", "chain", "matrix", "one", "nodes-chain-20", "nodes-wide-20", "nodes-matrix-20", "sleep", "validate", "help",
}


def test_every_scenario_runs_once_at_tiny_size(docker, tmp_path):
    results, work = tmp_path / "results.json", tmp_path / "work"
    status = peers.main([
        "--size", "tiny", "--repeat", "1", "--no-install", "--peers-venv", str(tmp_path / "no-peers"),
        "--keep", str(work), "--json", str(results),
    ])
    assert status == 0
    document = json.loads(results.read_text())
    assert document["meta"]["size"] == "tiny"
    rows = document["rows"]
    assert {r["scenario"] for r in rows} == TINY_IDS
    for row in rows:
        assert row["runner_error"] is None and row["runner_s"] > 0, row
        if row["peer"] in ("Docker SDK", "python3"):  # measured: they need nothing but the engine
            assert row["peer_error"] is None and row["peer_s"] > 0 and row["ratio"] > 0, row
        elif row["peer"]:  # act, Prefect, HyperNodes: absent here, and said so
            assert row["peer_s"] is None and row["ratio"] is None and "not" in row["peer_error"], row
    assert {r["peer"] for r in rows} == {"act", "Docker SDK", "Prefect", "HyperNodes", "python3"}

    # What the absent peers would have run was written, and has the right shape.
    yaml = YAML(typ="safe", pure=True)
    for path in sorted((work / "act").rglob("*.yml")):
        workflow = yaml.load(path.read_text())
        assert workflow["defaults"] == {"run": {"shell": "sh"}}, path  # busybox has no bash
        jobs = workflow["jobs"]
        for job in jobs.values():
            assert job["runs-on"] == "ubuntu-latest" and all("run" in s for s in job["steps"]), path
            needs = job.get("needs")
            assert needs is None or needs in jobs, path
    chain = yaml.load((work / "act" / "chain.yml").read_text())["jobs"]
    assert chain["j1"]["needs"] == "j0"
    assert len(list((work / "act" / "validate").glob("*.yml"))) == peers.SIZES["tiny"].validate
    for name in ("prefect_chain_20", "prefect_wide_20", "hypernodes_chain_20", "hypernodes_wide_20", "hypernodes_map_20",
                 "hypernodes_one"):
        path = work / "python" / f"{name}.py"
        source = path.read_text()
        compile(source, str(path), "exec")
        assert f"from {name.split('_')[0]} import" in source


def test_ratios_per_node_and_targets(tmp_path):
    """The arithmetic of a row, on two trivial processes."""
    python = [sys.executable, "-c", ""]
    scenario = peers.Scenario(
        "nodes-chain-10000", "5. test", python, tmp_path,
        [
            peers.Peer("Prefect", "slow", python, tmp_path, target=1 / 30, nodes=(10000, 1000)),
            peers.Peer("HyperNodes", "absent", None, tmp_path, unavailable="hypernodes not installed"),
        ],
        seconds_target=60, memory_target=10_000,
    )
    rows = peers.run_scenario(scenario, repeat=1)
    prefect, hypernodes, seconds, memory = rows
    # Same work per process, ten times the nodes: a tenth of the time per node.
    assert 0.03 < prefect["ratio"] < 0.3 and prefect["ratio_kind"].startswith("per node")
    assert hypernodes["ratio"] is None and hypernodes["peer_error"] == "hypernodes not installed"
    assert seconds["met"] is True and memory["met"] is True and seconds["peer"] is None
    peers.print_table(rows, out=open(tmp_path / "table.txt", "w"))
    assert "(absolute)" in (tmp_path / "table.txt").read_text()


def test_every_group_selects_its_scenarios(tmp_path):
    scenarios = peers.build(tmp_path, peers.SIZES["full"], peers.Tools.absent())
    for group in peers.GROUPS:
        assert peers.selected(scenarios, [group]), group
    assert [s.id for s in peers.selected(scenarios, ["nodes"])] == [
        "nodes-chain-1000", "nodes-wide-1000", "nodes-matrix-1000",
        "nodes-chain-10000", "nodes-wide-10000", "nodes-matrix-10000",
    ]
    assert [s.id for s in peers.selected(scenarios, ["one"])] == ["one"]
    # Issue 12's targets: a run's fixed cost and a value matrix at most HyperNodes' time,
    # 10,000 nodes under 1 s and 120 MB.
    targets = {(s.id, p.tool): p.target for s in scenarios for p in s.peers if p.tool == "HyperNodes"}
    assert targets[("one", "HyperNodes")] == 1.0 and targets[("nodes-matrix-10000", "HyperNodes")] == 1.0
    wide = [s for s in scenarios if s.id == "nodes-wide-10000"][0]
    assert (wide.seconds_target, wide.memory_target) == (1.0, 120)
    # Prefect stops at 1,000 nodes by default; beyond, it is compared per node.
    prefect = [p for s in scenarios if s.id == "nodes-wide-10000" for p in s.peers if p.tool == "Prefect"][0]
    assert prefect.nodes == (10000, 1000) and "range(1000)" in prefect.files[0].read_text()
