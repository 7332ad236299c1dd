"""A step's streamed output as lines: decoded across chunk borders, long lines cut, the whole bounded."""

from __future__ import annotations

import codecs
from collections import deque
from typing import Any, Callable

from runner.masking import Masker

MAX_LINE = 64 * 1024  # characters of a line without a newline before it is cut
MAX_OUTPUT = 64 * 2**20  # characters of one step's output kept and shown
LAST_LINES = 5  # quoted when a step fails to start its command


class Lines:
    """Splits streamed bytes into lines per stream, decoding UTF-8 across chunk borders.

    Memory stays bounded whatever a step prints: a line without a newline is cut
    every MAX_LINE characters, and after MAX_OUTPUT characters of a step's output
    the rest is counted but no longer passed on.
    """

    def __init__(self, emit: Callable[[str, str], None], masker: Masker | None = None):
        self.emit = emit
        self.masker = masker
        self.pending: dict[str, str] = {}
        self.decoders: dict[str, Any] = {}
        self.passed = 0
        self.dropped = 0
        self.last: deque[str] = deque(maxlen=LAST_LINES)

    def feed(self, stream: str, data: bytes) -> None:
        if self.passed >= MAX_OUTPUT:
            self.dropped += len(data)
            return
        decoder = self.decoders.setdefault(stream, codecs.getincrementaldecoder("utf-8")("replace"))
        text = self.pending.get(stream, "") + decoder.decode(data)
        *complete, rest = text.split("\n")
        # A cut is made only once every secret that may stand across it has arrived whole.
        while len(rest) > MAX_LINE + (self.masker.longest if self.masker else 0):
            cut = self._cut(rest)
            complete.append(rest[:cut])
            rest = rest[cut:]
        for line in complete:
            self._line(stream, line.rstrip("\r"))
        self.pending[stream] = rest

    def _cut(self, text: str) -> int:
        """MAX_LINE, or where a secret that stands across it begins (ends, for one longer than a line)."""
        for start, end in self.masker.spans(text[:MAX_LINE + self.masker.longest]) if self.masker else ():
            if start < MAX_LINE < end:
                return start or end
        return MAX_LINE

    def _line(self, stream: str, line: str) -> None:
        if self.passed >= MAX_OUTPUT:
            self.dropped += len(line) + 1
            return
        self.passed += len(line) + 1
        self.last.append(line)
        self.emit(stream, line)

    def flush(self) -> None:
        for stream, rest in self.pending.items():
            rest += self.decoders[stream].decode(b"", final=True)
            if rest:
                self._line(stream, rest)
        self.pending.clear()
        if self.dropped:
            self.emit("stderr", f"[runner: output cut after {MAX_OUTPUT // 2**20} MiB; {self.dropped:,} more bytes not kept]")
