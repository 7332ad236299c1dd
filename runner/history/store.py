"""The state store: every run, its nodes' transitions, step logs, locks and cache entries, in SQLite.

One database, `state.db`, in the state directory (`project_state_dir`, outside
the workspace, or `--state-dir` / `RUNNER_STATE_DIR`).  It is opened in WAL mode,
once per process; every write is one transaction, so a runner killed at any
instant (SIGKILL included) leaves the last committed, consistent state, and
several runners can share the directory: each run is its own rows, and a
writer waits for another's short transaction to end.

What may be exclusive — continuing a run — takes a row in `locks` naming the
process (`locks.py`).  Where the state directory is, and how a command finds
it, is `statedir.py`.

Nothing secret is written here: callers pass values through the Masker first.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, Iterable, Iterator

from runner.errors import RunNotPossible, UsageError
from runner.history.locks import Lock, LockHeld, alive, me
from runner.history.statedir import DB_NAME, find_state_dir, project_state_dir  # noqa: F401 (imported from here too)
from runner.model.results import RunStatus

SCHEMA_VERSION = 5  # 2: cache.digest; 3: steps; 4: events; 5: transitions a row per batch
BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,          -- absolute path of the workflow file
    name TEXT NOT NULL,
    hash TEXT NOT NULL,              -- sha256 of the workflow file and the files it uses
    inputs TEXT NOT NULL,            -- JSON, secret values masked
    secret_inputs TEXT NOT NULL,     -- JSON list: inputs whose value held a secret (masked above)
    options TEXT NOT NULL,           -- JSON: image_map, concurrency, only
    status TEXT NOT NULL,            -- RunStatus
    reason TEXT NOT NULL DEFAULT '',
    outputs TEXT,
    started REAL NOT NULL,           -- Unix time of the first attempt's start
    finished REAL,
    duration REAL NOT NULL DEFAULT 0,  -- every attempt's, summed
    attempt INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    command TEXT NOT NULL,           -- run, resume, only
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    PRIMARY KEY (run_id, attempt)
);
CREATE TABLE IF NOT EXISTS nodes (
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    job TEXT NOT NULL,
    matrix TEXT,
    state TEXT NOT NULL,             -- NodeState
    outputs TEXT,
    secret INTEGER NOT NULL DEFAULT 0,  -- the outputs held a secret's value, recorded masked
    reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    duration REAL NOT NULL DEFAULT 0,
    continue_on_error INTEGER NOT NULL DEFAULT 0,
    cached_from TEXT,
    kept_from INTEGER,
    container TEXT,                  -- a container kept for debugging (--keep-on-failure)
    usage TEXT,
    children TEXT,
    run_attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,            -- how many transitions the node has had
    PRIMARY KEY (run_id, node)
);
CREATE TABLE IF NOT EXISTS transitions (  -- a batch of a run's node transitions: a row costs far more than an item
    run_id TEXT NOT NULL,
    run_attempt INTEGER NOT NULL,
    time REAL NOT NULL,              -- the batch's last transition's
    items TEXT NOT NULL              -- JSON, oldest first: [node, seq, state, Unix time in µs, reason] for each
);
CREATE INDEX IF NOT EXISTS transitions_run ON transitions (run_id, run_attempt);
CREATE TABLE IF NOT EXISTS logs (
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    step TEXT NOT NULL,
    run_attempt INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (run_id, node, step, run_attempt, attempt)
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    run_attempt INTEGER NOT NULL,
    attempt INTEGER NOT NULL,        -- the node's
    step TEXT NOT NULL,              -- its label: its id, else its number
    started REAL NOT NULL,
    finished REAL,
    result TEXT,                     -- Result, NULL if stopped with its node
    exit_code INTEGER,
    PRIMARY KEY (run_id, node, run_attempt, attempt, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS locks (
    run_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start INTEGER NOT NULL,
    since REAL NOT NULL,
    command TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    outputs TEXT NOT NULL,
    archive TEXT,                    -- files of `cache_outputs`, relative to the state directory
    digest TEXT,                     -- the archive's sha256, checked before it is restored
    created REAL NOT NULL,
    expires REAL
);
CREATE TABLE IF NOT EXISTS events (  -- what a run told, numbered across its attempts (report/events.py)
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,            -- the first event's number: a row holds a batch of events, numbered on
    last INTEGER NOT NULL,           -- the last event's
    run_attempt INTEGER NOT NULL,
    lines TEXT NOT NULL,             -- an event a line: seq, Unix time in ms, type (run.started, node.log, …), JSON data, tab-separated and masked
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
"""


# Binding None or a bool sends the sqlite3 module looking for an adapter through two failed
# attribute lookups, an exception each (three times the cost of binding a str); with these
# registered it finds one at once.  A node's row binds half a dozen of them.
sqlite3.register_adapter(type(None), lambda value: None)
sqlite3.register_adapter(bool, int)

if c_make_encoder is not None:
    # What JSONEncoder.encode makes at every call, made once: it halves the cost of a node's
    # outputs.  Without the check for circular values: the values recorded are JSON-like data.
    _chunks = c_make_encoder(None, str, encode_basestring, None, ":", ",", False, False, True)

    def dumps(value: Any) -> str:
        return "".join(_chunks(value, 0))
else:
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """The state directory's database; one connection per process."""

    def __init__(self, directory: Path, create: bool = True):
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        if not create and not self.path.is_file():
            raise UsageError(f"no runs are recorded in {self.directory} (no {DB_NAME} there)")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            ignore = self.directory / ".gitignore"
            if not ignore.exists():
                ignore.write_text("*\n")
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: consistent after any crash, durable after a process crash
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RunNotPossible(f"{self.path} was written by a newer runner (schema {version}); upgrade runner")
            if version < SCHEMA_VERSION:
                with self.transaction() as db:
                    if version == 1:  # entries of before have no digest: their archives are never restored
                        db.execute("ALTER TABLE cache ADD COLUMN digest TEXT")
                    a_row_each = any(c[1] == "seq" for c in db.execute("PRAGMA table_info(transitions)"))
                    if a_row_each:
                        db.execute("ALTER TABLE transitions RENAME TO transitions_4")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    if a_row_each:
                        _batch_transitions(db)
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as e:
            raise RunNotPossible(f"cannot write the state directory {self.directory}: {_why(e)}") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write; other processes' writers wait for it (up to BUSY_TIMEOUT)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Several reads that see one consistent state."""
        self.db.execute("BEGIN")
        try:
            yield self.db
        finally:
            self.db.execute("COMMIT")

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        cursor = self.db.execute(sql, args)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def value(self, sql: str, *args: Any) -> Any:
        return self.db.execute(sql, args).fetchone()

    # -- runs ---------------------------------------------------------------

    def begin_run(
        self, run_id: str, *, workflow: str, name: str, hash: str, inputs: dict, secret_inputs: list[str],
        options: dict, command: str,
    ) -> int:
        """Record a new run, or a new attempt of a recorded one; return the attempt's number.

        Takes the run's lock: nobody else may continue it while this process does.
        """
        now = time.time()
        host, pid, _ = me()
        with self.transaction() as db:
            self._lock(db, run_id, command)
            row = db.execute("SELECT attempt FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                attempt = 1
                db.execute(
                    "INSERT INTO runs (id, workflow, name, hash, inputs, secret_inputs, options, status, started, attempt)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    (run_id, workflow, name, hash, dumps(inputs), dumps(secret_inputs), dumps(options),
                     RunStatus.RUNNING.value, now),
                )
            else:
                attempt = row[0] + 1
                # An attempt still `running` had its runner killed (the lock is ours): it ended
                # at its last recorded transition.
                for number, began in db.execute(
                    "SELECT attempt, started FROM attempts WHERE run_id = ? AND status = ?", (run_id, RunStatus.RUNNING.value)
                ).fetchall():
                    last = db.execute(
                        "SELECT max(time) FROM transitions WHERE run_id = ? AND run_attempt = ?", (run_id, number)
                    ).fetchone()[0] or began
                    db.execute(
                        "UPDATE attempts SET status = ?, finished = ?, reason = ? WHERE run_id = ? AND attempt = ?",
                        (RunStatus.KILLED.value, last, "the runner was killed", run_id, number),
                    )
                    db.execute("UPDATE runs SET duration = duration + ? WHERE id = ?", (last - began, run_id))
                db.execute(
                    "UPDATE runs SET attempt = ?, status = ?, reason = '', finished = NULL, hash = ? WHERE id = ?",
                    (attempt, RunStatus.RUNNING.value, hash, run_id),
                )
            db.execute(
                "INSERT INTO attempts (run_id, attempt, command, started, status, host, pid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, attempt, command, now, RunStatus.RUNNING.value, host, pid),
            )
        return attempt

    def finish_run(self, run_id: str, attempt: int, status: RunStatus, reason: str, outputs: Any, duration: float) -> None:
        """The attempt's end: the run's status, outputs and time, and its lock released."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "UPDATE attempts SET finished = ?, status = ?, reason = ? WHERE run_id = ? AND attempt = ?",
                (now, status.value, reason, run_id, attempt),
            )
            db.execute(
                "UPDATE runs SET status = ?, reason = ?, outputs = ?, finished = ?, duration = duration + ? WHERE id = ?",
                (status.value, reason, dumps(outputs), now, duration, run_id),
            )
            self._unlock(db, run_id)

    def record(self, nodes: Iterable[tuple], transitions: Iterable[tuple], logs: Iterable[tuple],
               steps: Iterable[tuple] = (), events: Iterable[tuple] = ()) -> None:
        """A batch of node states, their transitions, log files, steps' times and events, in one transaction.

        `transitions` is the batch's row of them, if any: (run_id, run_attempt, time, items).
        """
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO nodes (run_id, node, job, matrix, state, outputs, secret, reason, attempts, started,"
                " finished, duration, continue_on_error, cached_from, kept_from, container, usage, children,"
                " run_attempt, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, node) DO UPDATE SET job = excluded.job, matrix = excluded.matrix,"
                " state = excluded.state, outputs = excluded.outputs, secret = excluded.secret,"
                " reason = excluded.reason, attempts = excluded.attempts, started = excluded.started,"
                " finished = excluded.finished, duration = excluded.duration,"
                " continue_on_error = excluded.continue_on_error, cached_from = excluded.cached_from,"
                " kept_from = excluded.kept_from, container = excluded.container, usage = excluded.usage,"
                " children = excluded.children, run_attempt = excluded.run_attempt, seq = excluded.seq",
                nodes,
            )
            db.executemany("INSERT INTO transitions (run_id, run_attempt, time, items) VALUES (?, ?, ?, ?)", transitions)
            db.executemany("INSERT OR REPLACE INTO logs VALUES (?, ?, ?, ?, ?, ?)", logs)
            db.executemany("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", steps)
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", events)

    def set_status(self, run_id: str, status: RunStatus) -> None:
        """A running run paused, or unpaused."""
        with self.transaction() as db:
            db.execute("UPDATE runs SET status = ? WHERE id = ?", (status.value, run_id))

    def last_event(self, run_id: str) -> int:
        """The sequence number of the run's last recorded event (0: none)."""
        return self.value("SELECT max(last) FROM events WHERE run_id = ?", run_id)[0] or 0

    def events(self, run_id: str, after: int, limit: int = 1000) -> list[tuple[int, str, str]]:
        """The run's events after sequence number `after`, oldest first: (seq, type, data as JSON text)."""
        found: list[tuple[int, str, str]] = []
        rows = self.db.execute(
            "SELECT lines FROM events WHERE run_id = ? AND last > ? ORDER BY seq", (run_id, after)
        )
        for (lines,) in rows:
            for line in lines.split("\n"):
                seq, _, kind, data = line.split("\t", 3)
                if int(seq) > after:
                    found.append((int(seq), kind, data))
            if len(found) >= limit:
                break
        return found

    def find_run(self, given: str) -> dict[str, Any]:
        """The run named by its id, or by a unique beginning or end of it."""
        exact = self.rows("SELECT * FROM runs WHERE id = ?", given)
        if exact:
            return exact[0]
        found = self.rows(
            "SELECT * FROM runs WHERE substr(id, 1, ?) = ? OR substr(id, -?) = ? ORDER BY started",
            len(given), given, len(given), given,
        ) if given else []
        if len(found) == 1:
            return found[0]
        if not found:
            raise UsageError(f"no run `{given}` is recorded in {self.directory}; `runner runs list` shows the runs")
        names = ", ".join(r["id"] for r in found[:5])
        raise UsageError(f"`{given}` names {len(found)} runs ({names}{', …' if len(found) > 5 else ''}); give more of the id")

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs ORDER BY started DESC, id DESC"
        return self.rows(sql + " LIMIT ?", limit) if limit else self.rows(sql)

    def status(self, run: dict[str, Any]) -> RunStatus:
        """The run's status as users should see it: a running run whose runner died was killed."""
        status = RunStatus(run["status"])
        if status in (RunStatus.RUNNING, RunStatus.PAUSED) and self.lock_holder(run["id"]) is None:
            return RunStatus.KILLED
        return status

    def nodes(self, run_id: str) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM nodes WHERE run_id = ? ORDER BY rowid", run_id)

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM attempts WHERE run_id = ? ORDER BY attempt", run_id)

    def logs(self, run_id: str) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM logs WHERE run_id = ? ORDER BY rowid", run_id)

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM steps WHERE run_id = ? ORDER BY started", run_id)

    def transitions(self, run_id: str) -> list[dict[str, Any]]:
        """Every node transition of the run, oldest first: node, run_attempt, seq, state, time, reason."""
        found = [
            {"node": node, "run_attempt": run_attempt, "seq": seq, "state": state, "time": micros / 1e6, "reason": reason}
            for run_attempt, items in self.db.execute(
                "SELECT run_attempt, items FROM transitions WHERE run_id = ? ORDER BY rowid", (run_id,)
            )
            for node, seq, state, micros, reason in json.loads(items)
        ]
        found.sort(key=lambda t: (t["time"], t["seq"]))
        return found

    def node_seqs(self, run_id: str) -> dict[str, int]:
        return {r["node"]: r["seq"] for r in self.rows("SELECT node, seq FROM nodes WHERE run_id = ?", run_id)}

    def set_container(self, run_id: str, node: str, container: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE nodes SET container = ? WHERE run_id = ? AND node = ?", (container, run_id, node))

    def delete_runs(self, run_ids: list[str]) -> None:
        with self.transaction() as db:
            for table, column in (("runs", "id"), ("attempts", "run_id"), ("nodes", "run_id"),
                                  ("transitions", "run_id"), ("logs", "run_id"), ("locks", "run_id"),
                                  ("steps", "run_id"), ("events", "run_id")):
                db.executemany(f"DELETE FROM {table} WHERE {column} = ?", [(r,) for r in run_ids])

    # -- locks --------------------------------------------------------------

    def lock(self, run_id: str, command: str) -> None:
        """Hold the run for this process; LockHeld naming the holder if a live process has it."""
        with self.transaction() as db:
            self._lock(db, run_id, command)

    def unlock(self, run_id: str) -> None:
        with self.transaction() as db:
            self._unlock(db, run_id)

    def lock_holder(self, run_id: str) -> Lock | None:
        """Who holds the run, if that process is alive."""
        row = self.value("SELECT host, pid, pid_start, since, command FROM locks WHERE run_id = ?", run_id)
        if row is None or not alive(row[0], row[1], row[2]):
            return None
        return Lock(run_id, row[0], row[1], row[3], row[4])

    def _lock(self, db: sqlite3.Connection, run_id: str, command: str) -> None:
        host, pid, start = me()
        row = db.execute("SELECT host, pid, pid_start, since, command FROM locks WHERE run_id = ?", (run_id,)).fetchone()
        if row is not None and (row[0], row[1]) != (host, pid) and alive(row[0], row[1], row[2]):
            holder = Lock(run_id, row[0], row[1], row[3], row[4])
            raise LockHeld(f"run {run_id} is in use by {holder}; wait for it to end, or stop it first")
        db.execute(
            "INSERT OR REPLACE INTO locks (run_id, host, pid, pid_start, since, command) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, host, pid, start, time.time(), command),
        )

    def _unlock(self, db: sqlite3.Connection, run_id: str) -> None:
        host, pid, _ = me()
        db.execute("DELETE FROM locks WHERE run_id = ? AND host = ? AND pid = ?", (run_id, host, pid))

    # -- cache entries ------------------------------------------------------

    def cache_get(self, key: str, now: float) -> dict[str, Any] | None:
        found = self.rows("SELECT * FROM cache WHERE key = ? AND (expires IS NULL OR expires > ?)", key, now)
        return found[0] if found else None

    def cache_put(
        self, key: str, run_id: str, node: str, outputs: Any, archive: str | None, digest: str | None, expires: float | None,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO cache (key, run_id, node, outputs, archive, digest, created, expires)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, run_id, node, dumps(outputs), archive, digest, time.time(), expires),
            )

    def cache_expired(self, now: float) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM cache WHERE expires IS NOT NULL AND expires <= ?", now)

    def cache_delete(self, keys: list[str]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM cache WHERE key = ?", [(k,) for k in keys])

    def cache_archives(self) -> set[str]:
        return {r["archive"] for r in self.rows("SELECT archive FROM cache WHERE archive IS NOT NULL")}

    def checkpoint(self) -> None:
        """Fold the write-ahead log back into the database file (after removing much)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _batch_transitions(db: sqlite3.Connection) -> None:
    """Transitions of schema 4 and before, a row each, as a batch per run attempt."""
    batches: dict[tuple[str, int], list] = {}
    for run_id, run_attempt, node, seq, state, when, reason in db.execute(
        "SELECT run_id, run_attempt, node, seq, state, time, reason FROM transitions_4 ORDER BY time, seq"
    ):
        batches.setdefault((run_id, run_attempt), []).append((node, seq, state, round(when * 1e6), reason))
    db.executemany(
        "INSERT INTO transitions (run_id, run_attempt, time, items) VALUES (?, ?, ?, ?)",
        [(run_id, run_attempt, items[-1][3] / 1e6, dumps(items)) for (run_id, run_attempt), items in batches.items()],
    )
    db.execute("DROP TABLE transitions_4")


def _why(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)
