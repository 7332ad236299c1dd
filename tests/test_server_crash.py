"""`runner serve` killed with SIGKILL mid-run: nothing a client saw is lost, and the run resumes.

A client that followed the run's events up to the kill finds every one of them
in the store afterwards, with the same id and the same content; the run shows
as killed; `resume`, over the API or with the CLI, continues it as a new
attempt, and a client that reconnects with its Last-Event-ID misses nothing
and sees nothing twice.
"""

from __future__ import annotations

import json
import signal

from conftest import BUSYBOX, cli, write
from serving import Served

COUNTING = f"""
    version: 1
    jobs:
      first:
        outputs: {{n: 1}}
      count:
        needs: first
        image: {BUSYBOX}
        steps:
          - run: for i in 1 2 3 4 5 6 7 8; do echo "line $i"; sleep 0.2; done
      last:
        needs: count
        outputs: {{n: "${{{{ jobs.first.outputs.n + 1 }}}}"}}
"""


def _follow_until(served: Served, run_id: str, text: str, after: int = 0) -> list[dict]:
    """The run's events (JSON lines) from `after` on, until one holds TEXT; the server is then SIGKILLed at once."""
    seen = []
    with served.client.stream("GET", f"/runs/{run_id}/events", params={"after": after}) as response:
        for line in response.iter_lines():
            if line:
                seen.append(json.loads(line))
                if text in line:
                    served.process.kill()
                    break
    assert served.stop() == -signal.SIGKILL
    assert text in json.dumps(seen[-1], separators=(",", ":")), seen
    return seen


def test_a_killed_server_loses_no_event_and_its_run_resumes_over_the_api_and_the_cli(tmp_path, docker):
    (tmp_path / "workflows").mkdir()
    write(tmp_path / "workflows", COUNTING, "counting.yml")
    state = tmp_path / "state"

    def serve() -> Served:
        return Served("--workflows", tmp_path / "workflows", "--state-dir", state, cwd=tmp_path)

    served = serve()
    run_id = served.start("counting.yml")
    seen = _follow_until(served, run_id, '"line":"line 2"')

    again = serve()
    try:
        run = again.client.get(f"/runs/{run_id}").json()
        assert run["status"] == "killed", run
        assert run["jobs"]["first"]["result"] == "success" and run["jobs"]["first"]["state"] == "succeeded"
        assert run["jobs"]["count"]["state"] == "running"
        recorded = again.events(run_id)
        assert recorded[:len(seen)] == seen, "an event a client saw is not in the store, or differs"
        assert [e["id"] for e in recorded] == list(range(1, len(recorded) + 1))
        listed = json.loads(cli("runs", "list", "--format", "json", "--state-dir", state).stdout)
        assert {r["id"]: r["status"] for r in listed}[run_id] == "killed"

        # Resumed over the API; a client picks up after the last event it saw.
        resumed = again.client.post(f"/runs/{run_id}/resume", json={})
        assert resumed.status_code == 201, resumed.text
        seen += _follow_until(again, run_id, '"line":"line 1"', after=seen[-1]["id"])
    finally:
        again.stop()

    # Killed again; this time the CLI resumes it, while a server shows it.
    shown = serve()
    try:
        assert shown.client.get(f"/runs/{run_id}").json()["status"] == "killed"
        done = cli("resume", run_id, "--state-dir", state, "--quiet", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        run = shown.client.get(f"/runs/{run_id}").json()
        assert run["status"] == "success" and run["outputs"] == {} and run["jobs"]["last"]["outputs"] == {"n": 2}
        assert [a["status"] for a in run["attempts"]] == ["killed", "killed", "success"]
        seen += shown.events(run_id, after=seen[-1]["id"])
        everything = shown.events(run_id)
    finally:
        shown.stop()
    assert everything == seen
    assert [e["id"] for e in seen] == list(range(1, len(seen) + 1))
    kinds = [e["event"] for e in seen]
    assert kinds.count("run.started") == 3 and kinds.count("run.finished") == 1 and kinds[-1] == "run.finished"
    # The job that succeeded before the first kill was not run again.
    assert [e["data"]["node"] for e in seen if e["event"] == "node.started"].count("first") == 1
