"""The state store: every run recorded in SQLite, consistent after any crash, shared by concurrent runners.

Also `runner runs list|show|gc` and `runner logs`, which read it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import IMAGE_MAP, ROOT, cli, state_of, write
from runner.errors import RunNotPossible
from runner.masking import Masker
from runner.report.recorder import Recorder
from runner.engine.state import RunState
from runner.model.results import NodeRecord, NodeState
from runner.history.store import LockHeld, Store

BUSYBOX_IMAGE = '"alpine:3.20"'


def db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(state_of(tmp_path) / "state.db")


def transitions(connection: sqlite3.Connection) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """(run, node) → its transitions as recorded, in order: (seq, state)."""
    found: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for run_id, items in connection.execute("SELECT run_id, items FROM transitions ORDER BY rowid"):
        for node, seq, state, _, _ in json.loads(items):
            found.setdefault((run_id, node), []).append((seq, state))
    return found


def consistent(connection: sqlite3.Connection) -> None:
    """The invariants every committed state keeps: the file is sound, each node's row is its
    last transition, and it has exactly as many transitions as its row says, numbered in order."""
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    nodes = {(r, n): (seq, state) for r, n, seq, state in connection.execute("SELECT run_id, node, seq, state FROM nodes")}
    recorded = transitions(connection)
    assert set(recorded) == set(nodes)  # no node without transitions, no transitions without their node
    bad = [key for key, (seq, state) in nodes.items()
           if recorded[key][-1] != (seq, state) or [s for s, _ in recorded[key]] != list(range(1, seq + 1))]
    assert bad == []


def chain(n: int) -> str:
    body = "  j0: {outputs: {n: 0}}\n" + "".join(
        f"  j{i}: {{needs: j{i - 1}, outputs: {{n: '${{{{ jobs.j{i - 1}.outputs.n + 1 }}}}'}}}}\n" for i in range(1, n)
    )
    return f"version: 1\njobs:\n{body}"


# -- what a run records ------------------------------------------------------------------


def test_a_run_is_recorded_with_every_transition_inputs_outputs_and_hash(tmp_path):
    path = write(tmp_path, """
        version: 1
        inputs:
          n: {type: integer, default: 2}
        jobs:
          a: {outputs: {x: '${{ inputs.n * 3 }}'}}
          b: {needs: a, outputs: {y: '${{ jobs.a.outputs.x + 1 }}'}}
          c: {needs: b, if: 'false', outputs: {z: 1}}
        outputs: {y: '${{ jobs.b.outputs.y }}'}
    """)
    done = cli("run", path, "--input", "n=5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    connection = db(tmp_path)
    connection.row_factory = sqlite3.Row
    run = connection.execute("SELECT * FROM runs").fetchone()
    assert run["workflow"] == str(path) and run["status"] == "success" and run["attempt"] == 1
    assert json.loads(run["inputs"]) == {"n": 5} and json.loads(run["outputs"]) == {"y": 16}
    import hashlib

    assert run["hash"] == hashlib.sha256(b"workflow.yml\0" + path.read_bytes() + b"\0").hexdigest()
    nodes = {r["node"]: r for r in connection.execute("SELECT * FROM nodes")}
    assert {k: (r["state"], json.loads(r["outputs"])) for k, r in nodes.items()} == {
        "a": ("succeeded", {"x": 15}), "b": ("succeeded", {"y": 16}), "c": ("skipped", {}),
    }
    assert nodes["c"]["reason"] == "if was false"
    recorded = Store(state_of(tmp_path)).transitions(run["id"])
    assert [(t["node"], t["state"]) for t in recorded] == [
        ("a", "running"), ("a", "succeeded"), ("b", "running"), ("b", "succeeded"), ("c", "skipped"),
    ]
    consistent(connection)
    assert connection.execute("SELECT count(*) FROM locks").fetchone()[0] == 0  # released at the end


def test_secrets_never_enter_the_store(tmp_path):
    secret = "s3cr3t-value-xyz"
    path = write(tmp_path, """
        version: 1
        secrets: [TOKEN]
        inputs:
          given: {type: string}
        jobs:
          a: {outputs: {leak: '${{ secrets.TOKEN }}', fine: ok}}
          b: {needs: a, outputs: {again: '${{ jobs.a.outputs.leak }}'}}
          c: {outputs: {bad: '${{ {"k": 1}[secrets.TOKEN] }}'}}
    """)
    done = cli("run", path, "--input", f"given=prefix-{secret}", cwd=tmp_path, env={"TOKEN": secret})
    assert done.returncode == 1, done.stderr
    for file in state_of(tmp_path).rglob("*"):
        if file.is_file():
            assert secret.encode() not in file.read_bytes(), file
    connection = db(tmp_path)
    outputs, secret_flag = connection.execute("SELECT outputs, secret FROM nodes WHERE node = 'a'").fetchone()
    assert json.loads(outputs) == {"leak": "***", "fine": "ok"} and secret_flag == 1
    reason = connection.execute("SELECT reason FROM nodes WHERE node = 'c'").fetchone()[0]
    assert "***" in reason
    run = connection.execute("SELECT inputs, secret_inputs FROM runs").fetchone()
    assert json.loads(run[0]) == {"given": "prefix-***"} and json.loads(run[1]) == ["given"]


def test_a_store_of_schema_4_is_upgraded_with_its_transitions(tmp_path):
    """Schema 4 kept a row per transition; opened now, they become one batch per run attempt and read the same."""
    path = write(tmp_path, """
        version: 1
        jobs:
          a: {outputs: {x: 1}}
          b: {needs: a, outputs: {y: '${{ jobs.a.outputs.x / 0 }}'}}
          c: {needs: b, outputs: {z: 1}}
    """)
    assert cli("run", path, cwd=tmp_path).returncode == 1
    store = Store(state_of(tmp_path))
    run_id = store.runs()[0]["id"]
    recorded = store.transitions(run_id)
    store.close()
    trace = cli("trace", run_id, cwd=tmp_path).stdout
    connection = db(tmp_path)
    connection.executescript("""
        DROP TABLE transitions;
        CREATE TABLE transitions (
            run_id TEXT NOT NULL, node TEXT NOT NULL, seq INTEGER NOT NULL, run_attempt INTEGER NOT NULL,
            state TEXT NOT NULL, time REAL NOT NULL, reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (run_id, node, seq)
        ) WITHOUT ROWID;
        PRAGMA user_version = 4;
    """)
    connection.executemany("INSERT INTO transitions VALUES (?, ?, ?, ?, ?, ?, ?)", [
        (run_id, t["node"], t["seq"], t["run_attempt"], t["state"], t["time"], t["reason"]) for t in recorded])
    connection.commit()
    connection.close()
    assert [t["state"] for t in recorded] == ["running", "succeeded", "running", "failed", "skipped"]

    assert cli("trace", run_id, cwd=tmp_path).stdout == trace  # upgraded on opening
    upgraded = Store(state_of(tmp_path))
    assert upgraded.transitions(run_id) == recorded
    assert upgraded.value("PRAGMA user_version")[0] == 5
    resumed = cli("resume", run_id, "--force", cwd=tmp_path)
    assert resumed.returncode == 1 and "kept from attempt 1" in resumed.stdout, resumed.stdout + resumed.stderr
    assert [(t["run_attempt"], t["node"], t["state"]) for t in upgraded.transitions(run_id)][5:] == [
        (2, "a", "succeeded"), (2, "b", "running"), (2, "b", "failed"), (2, "c", "skipped")]  # the new attempt's, after
    consistent(db(tmp_path))


def test_an_unwritable_state_directory_exits_3(tmp_path):
    path = write(tmp_path, "version: 1\njobs:\n  a: {outputs: {x: 1}}\n")
    blocker = tmp_path / "state-file"
    blocker.write_text("not a directory")
    done = cli("run", path, "--state-dir", blocker, cwd=tmp_path)
    assert done.returncode == 3
    assert "cannot write the state directory" in done.stderr and "Traceback" not in done.stderr


# -- crash consistency and concurrency -------------------------------------------------

HARNESS = """
import sys, itertools
from pathlib import Path
from runner.masking import Masker
from runner.report.recorder import Recorder
from runner.engine.state import RunState
from runner.model.results import NodeRecord, NodeState
from runner.history.store import Store

store = Store(Path(sys.argv[1]))
run_id = sys.argv[2]
store.begin_run(run_id, workflow="w.yml", name="w", hash="h", inputs={}, secret_inputs=[], options={}, command="run")
recorder = Recorder(store, run_id, 1, Masker([]))
state = RunState(run_id, recorder)
print("ready", flush=True)
for i in itertools.count():  # forever: many small batches, as a busy run writes them
    record = state.add(NodeRecord(f"n{i}", f"n{i}"))
    state.transition(record, NodeState.RUNNING)
    state.transition(record, NodeState.SUCCEEDED, outputs={"i": i, "text": "x" * (i % 50)}, attempts=1)
"""


def test_sigkill_in_the_middle_of_many_writes_leaves_a_consistent_store(tmp_path):
    """The recorder, writing batch after batch, is killed at random instants; every time the
    database opens sound, each node's row agrees with its transitions, and earlier runs are intact."""
    state = tmp_path / "state"
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS)
    rng = random.Random(1234)
    counts = []
    for round_ in range(12):
        proc = subprocess.Popen(
            [sys.executable, str(harness), str(state), f"run{round_}"], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        connection = sqlite3.connect(state / "state.db")
        consistent(connection)
        per_run = dict(connection.execute("SELECT run_id, count(*) FROM nodes GROUP BY run_id").fetchall())
        for earlier, count in counts:
            assert per_run.get(earlier, 0) == count  # what was committed before stays
        counts.append((f"run{round_}", per_run.get(f"run{round_}", 0)))
        connection.close()
    assert sum(c for _, c in counts) > 200  # the runs did write a lot before being killed
    # The killed runs read as killed.
    done = cli("runs", "list", "--state-dir", state, "--limit", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(" killed ") == 12


def test_concurrent_runs_on_one_state_directory(tmp_path):
    path = write(tmp_path, chain(1500))
    procs = [
        subprocess.Popen([sys.executable, "-m", "runner", "run", str(path), "--quiet"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    connection = db(tmp_path)
    consistent(connection)
    assert connection.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall() == [("success", 4)]
    per_run: dict[str, int] = {}
    for (run_id, _), recorded in transitions(connection).items():
        per_run[run_id] = per_run.get(run_id, 0) + len(recorded)
    assert list(per_run.values()) == [3000] * 4
    listing = cli("runs", "list", cwd=tmp_path)
    assert listing.stdout.count(" success ") == 4


def test_concurrent_container_runs_on_one_state_directory(docker, tmp_path):
    path = write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          a: {{run: 'echo one; sleep 0.3'}}
          b: {{needs: a, run: echo two}}
          c: {{needs: a, run: exit 4}}
    """)
    procs = [
        subprocess.Popen([sys.executable, "-m", "runner", "run", str(path), *IMAGE_MAP, "--quiet"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for p in procs:
        p.communicate(timeout=120)
    assert [p.returncode for p in procs] == [1, 1, 1]
    connection = db(tmp_path)
    consistent(connection)
    rows = connection.execute("SELECT run_id, node, state FROM nodes ORDER BY run_id, node").fetchall()
    assert len(rows) == 9 and {r[2] for r in rows if r[1] == "c"} == {"failed"}
    assert len(connection.execute("SELECT * FROM logs WHERE node = 'a'").fetchall()) == 3


def test_a_lock_held_by_a_live_process_refuses_and_one_held_by_a_dead_process_is_reclaimed(tmp_path):
    store = Store(tmp_path / "state")
    store.begin_run("r1", workflow="w", name="w", hash="h", inputs={}, secret_inputs=[], options={}, command="run")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from runner.history.store import Store
            s = Store({str(tmp_path / 'state')!r})
            s.lock("r2", "resume")
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld) as caught:
            store.lock("r2", "resume")
        assert f"pid {holder.pid}" in str(caught.value) and "`runner resume`" in str(caught.value)
        assert isinstance(caught.value, RunNotPossible)  # exit 3
    finally:
        holder.kill()
        holder.wait()
    store.lock("r2", "resume")  # its holder is dead: reclaimed
    assert store.lock_holder("r2").pid == os.getpid()
    store.close()


# -- the commands that read it ------------------------------------------------------------


def test_runs_list_show_and_gc(tmp_path):
    good = write(tmp_path, """
        version: 1
        jobs:
          a: {outputs: {x: 42}}
          m: {matrix: {n: [1, 2]}, outputs: {sq: '${{ matrix.n * matrix.n }}'}}
        outputs: {x: '${{ jobs.a.outputs.x }}'}
    """, name="good.yml")
    bad = write(tmp_path, "version: 1\njobs:\n  a: {outputs: {x: '${{ 1 // 0 }}'}}\n", name="bad.yml")
    for path in (good, bad, good):
        cli("run", path, cwd=tmp_path)
    listing = cli("runs", "list", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["id", "workflow", "status", "started", "duration"]
    assert [line.split()[1:3] for line in lines[1:]] == [["good.yml", "success"], ["bad.yml", "failure"], ["good.yml", "success"]]
    newest = lines[1].split()[0]
    as_json = json.loads(cli("runs", "list", "--format", "json", cwd=tmp_path).stdout)
    assert [r["id"] for r in as_json][0] == newest and as_json[1]["status"] == "failure"

    show = cli("runs", "show", newest[-6:], cwd=tmp_path)  # the end of the id is enough
    assert show.returncode == 0, show.stderr
    assert f"run {newest}: good" in show.stdout and "status    success" in show.stdout
    assert "m (n=1)" in show.stdout
    assert 'a: {"x": 42}' in show.stdout and "x: 42" in show.stdout
    document = json.loads(cli("runs", "show", newest, "--format", "json", cwd=tmp_path).stdout)
    assert document["jobs"]["m"]["outputs"] == [{"sq": 1}, {"sq": 4}]
    assert document["jobs"]["m"]["instances"]["m (n=2)"]["outputs"] == {"sq": 4}
    failed = json.loads(cli("runs", "show", as_json[1]["id"], "--format", "json", cwd=tmp_path).stdout)
    assert failed["jobs"]["a"]["result"] == "failure" and "outputs" in failed["jobs"]["a"]["reason"]

    unknown = cli("runs", "show", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "no run `nope`" in unknown.stderr

    run_dirs = sorted(p.name for p in (state_of(tmp_path) / "runs").iterdir())
    gc = cli("runs", "gc", "--keep", "1", cwd=tmp_path)
    assert gc.returncode == 0 and "removed 2 runs" in gc.stdout, gc.stdout + gc.stderr
    assert sorted(p.name for p in (state_of(tmp_path) / "runs").iterdir()) == [newest]
    assert len(run_dirs) == 3
    assert len(json.loads(cli("runs", "list", "--format", "json", cwd=tmp_path).stdout)) == 1
    consistent(db(tmp_path))


def test_runs_commands_find_the_state_directory_or_say_how(tmp_path):
    nowhere = cli("runs", "list", cwd=tmp_path)
    assert nowhere.returncode == 2 and "--state-dir" in nowhere.stderr
    path = write(tmp_path, "version: 1\njobs:\n  a: {outputs: {x: 1}}\n")
    cli("run", path, cwd=tmp_path)
    below = tmp_path / "sub" / "dir"
    below.mkdir(parents=True)
    assert cli("runs", "list", cwd=below).stdout.count(" success ") == 1  # found from a directory below
    moved = tmp_path / "elsewhere"
    cli("run", path, "--state-dir", moved, cwd=tmp_path)
    assert cli("runs", "list", "--state-dir", moved, cwd=tmp_path).stdout.count(" success ") == 1
    assert cli("runs", "list", cwd=tmp_path, env={"RUNNER_STATE_DIR": str(moved)}).stdout.count(" success ") == 1


def test_logs_are_kept_after_the_containers_are_gone(docker, tmp_path):
    path = write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          build:
            steps:
              - id: compile
                run: echo compiling; echo done
              - id: link
                run: echo linking
          test:
            needs: build
            matrix: {{n: [1, 2]}}
            run: echo "testing ${{{{ matrix.n }}}}"
    """)
    done = cli("run", path, *IMAGE_MAP, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = done.stdout.split()[1].rstrip(":")
    one = cli("logs", run_id, "build/compile", cwd=tmp_path)
    assert one.returncode == 0 and one.stdout == "compiling\ndone\n"
    job = cli("logs", run_id, "build", cwd=tmp_path).stdout
    assert job == "== build/compile ==\ncompiling\ndone\n== build/link ==\nlinking\n"
    everything = cli("logs", run_id, cwd=tmp_path).stdout
    assert "== test (n=1)/1 ==\ntesting 1\n" in everything and "== test (n=2)/1 ==\ntesting 2\n" in everything
    assert cli("logs", run_id, "test", cwd=tmp_path).stdout.count("testing") == 2
    missing = cli("logs", run_id, "build/nope", cwd=tmp_path)
    assert missing.returncode == 2 and "build/compile" in missing.stderr


def test_recorder_batches_writes(tmp_path):
    """Ten thousand transitions are a handful of transactions, not ten thousand."""
    store = Store(tmp_path / "state")
    store.begin_run("r", workflow="w", name="w", hash="h", inputs={}, secret_inputs=[], options={}, command="run")
    commits = []
    original = store.record
    store.record = lambda *a: (commits.append(1), original(*a))
    recorder = Recorder(store, "r", 1, Masker([]))
    state = RunState("r", recorder)
    for i in range(5000):
        record = state.add(NodeRecord(f"n{i}", f"n{i}"))
        state.transition(record, NodeState.RUNNING)
        state.transition(record, NodeState.SUCCEEDED, outputs={"i": i})
    recorder.close()
    assert len(commits) < 50
    assert len(store.transitions("r")) == 10000
    consistent(sqlite3.connect(tmp_path / "state" / "state.db"))
