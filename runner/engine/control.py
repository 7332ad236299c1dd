"""How whoever runs a workflow stops it from outside: the CLI on SIGINT or SIGTERM, a server on request.

`cancel(reason)` cancels the run as a failure with fail_fast does: what runs
is stopped and jobs with `if: always()` still get their turn.  `stop()` ends
everything at once.  `pause()` lets no job start until `unpause()`; jobs that
run go on to their end.  A control given before the run starts takes effect when
it does.
"""

from __future__ import annotations

from typing import Callable

import trio


class RunControl:
    def __init__(self) -> None:
        self.reason = ""  # why the run was cancelled from outside; empty while it was not
        self.signal: int | None = None  # the signal that cancelled it, if one did
        self.stopped = False
        self.paused = False
        self._pauses: list[Callable[[bool], None]] = []
        self._cancels: list[Callable[[str], None]] = []
        self._scopes: list[trio.CancelScope] = []

    @property
    def cancelled(self) -> bool:
        return bool(self.reason)

    def cancel(self, reason: str, signal: int | None = None) -> None:
        if self.cancelled:
            return
        self.reason, self.signal = reason, signal
        self.paused = False  # a cancelled run decides its waiting jobs at once
        for cancel in self._cancels:
            cancel(reason)

    def stop(self) -> None:
        self.stopped = True
        for scope in self._scopes:
            scope.cancel()

    def on_cancel(self, cancel: Callable[[str], None]) -> None:
        """`cancel(reason)` is called when the run is cancelled, at once if it already is."""
        self._cancels.append(cancel)
        if self.cancelled:
            cancel(self.reason)

    def stops(self, scope: trio.CancelScope) -> None:
        """`stop()` cancels `scope`, at once if the run is already stopped."""
        self._scopes.append(scope)
        if self.stopped:
            scope.cancel()

    def pause(self) -> None:
        self._set_paused(True)

    def unpause(self) -> None:
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        if self.paused == paused or self.cancelled:
            return
        self.paused = paused
        for pause in self._pauses:
            pause(paused)

    def on_pause(self, pause: Callable[[bool], None]) -> None:
        """`pause(True)` is called when the run is paused (at once if it is), `pause(False)` when it is unpaused."""
        self._pauses.append(pause)
        if self.paused:
            pause(True)


class Gate:
    """Open unless the run is paused: what a node that would start waits at (a matrix's instances,
    a sub-workflow's jobs), since the plan holds only the jobs of the run's own workflow."""

    def __init__(self) -> None:
        self._open = trio.Event()
        self._open.set()

    def close(self) -> None:
        if self._open.is_set():
            self._open = trio.Event()

    def open(self) -> None:
        self._open.set()

    async def wait(self) -> None:
        if not self._open.is_set():
            await self._open.wait()
