"""A run's event stream: Server-Sent Events, or JSON lines.

The events come from the store (every event a run ever recorded, whichever
process ran it) and, for a run this server is running, from its `Feed` as they
happen, so that a client sees a transition within milliseconds and the store
is not polled.  Either way each event carries its sequence number in the
store, so a client that reconnects with `Last-Event-ID` (or `?after=`)
continues exactly where it was.
"""

from __future__ import annotations

import bisect
from typing import AsyncIterator

import trio

from runner.model.results import RunStatus
from runner.report.events import RUN_FINISHED

HEARTBEAT_SECONDS = 15.0
POLL_SECONDS = 0.2  # how often a run of another process is looked at in the store
FEED_WINDOW = 10_000  # events of a live run kept in memory; older ones are read from the store

Event = tuple[int, str, str]  # (seq, type, data as JSON text)


class Feed:
    """The events of a run this server runs, as they happen (the newest FEED_WINDOW of them)."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.events: list[Event] = []
        self.ended = False
        self._changed = trio.Event()

    def add(self, seq: int, kind: str, data: str) -> None:
        self.seqs.append(seq)
        self.events.append((seq, kind, data))
        if len(self.events) > 2 * FEED_WINDOW:
            del self.seqs[:FEED_WINDOW], self.events[:FEED_WINDOW]
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def covers(self, after: int) -> bool:
        """Whether every event after `after` that the store may not have yet is here."""
        return bool(self.seqs) and after + 1 >= self.seqs[0]

    def after(self, after: int) -> list[Event]:
        return self.events[bisect.bisect_right(self.seqs, after):]

    async def changed(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self._changed.wait()


async def follow(store, feeds: dict[str, Feed], run_id: str, after: int) -> AsyncIterator[Event | None]:
    """The run's events after `after`, ending with its `run.finished`; None when a heartbeat is due."""
    last = trio.current_time()
    while True:
        feed = feeds.get(run_id)
        batch = feed.after(after) if feed is not None and feed.covers(after) else store.events(run_id, after)
        if batch:
            last = trio.current_time()
            for event in batch:
                yield event
                after = event[0]
                if event[1] == RUN_FINISHED:
                    return
            continue
        if feed is None and _over(store, run_id) or feed is not None and feed.ended and not feed.seqs:
            return  # it ended without a run.finished: its runner was killed, or it never began
        due = last + HEARTBEAT_SECONDS - trio.current_time()
        if due <= 0:
            last = trio.current_time()
            yield None
        elif feed is not None and feed.seqs:
            await feed.changed(due)
        else:
            await trio.sleep(min(POLL_SECONDS, due))


def _over(store, run_id: str) -> bool:
    rows = store.rows("SELECT * FROM runs WHERE id = ?", run_id)
    return not rows or store.status(rows[0]) not in (RunStatus.RUNNING, RunStatus.PAUSED)


def sse(event: Event | None) -> str:
    if event is None:
        return ": heartbeat\n\n"
    seq, kind, data = event
    return f"id: {seq}\nevent: {kind}\ndata: {data}\n\n"


def json_line(event: Event | None) -> str:
    if event is None:
        return "\n"  # a heartbeat: an empty line
    seq, kind, data = event
    return f'{{"id":{seq},"event":"{kind}","data":{data}}}\n'
