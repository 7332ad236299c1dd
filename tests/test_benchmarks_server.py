"""The server benchmark must not rot: benchmarks/server.py once, at its tiny size (figures are not checked)."""

from __future__ import annotations

import json
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import server as benchmark  # noqa: E402


def test_every_measurement_runs_once_at_tiny_size(docker, tmp_path, capsys):
    results = tmp_path / "results.json"
    assert benchmark.main(["--size", "tiny", "--json", str(results)]) == 0
    figures = json.loads(results.read_text())
    tiny = benchmark.SIZES["tiny"]
    assert figures["size"]["starts"] == tiny.starts
    for name in ("start_engine_ms", "start_ms", "stream_ms", "batch_server_s", "batch_in_process_s", "batch_ratio",
                 "idle_mb"):
        assert figures[name] > 0, name
    assert figures["stream_events"] >= benchmark.LINES  # each line of the job was timed on its way
    assert [n for n, _ in figures["memory_mb"]] == [0, 500]
    printed = capsys.readouterr().out
    assert "POST /runs → first node.started" in printed and "one process without HTTP" in printed
