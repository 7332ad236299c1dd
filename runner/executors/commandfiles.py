"""The files a step writes to pass values on: `$RUNNER_OUTPUT`, `$RUNNER_ENV` and `$RUNNER_PATH`.

The first two hold ``key=value`` lines, or multi-line values as::

    key<<DELIMITER
    line one
    line two
    DELIMITER
"""

from __future__ import annotations

import re

from runner.executors import NodeFailed

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


class CommandFileError(NodeFailed):
    pass


def parse(text: str, name: str) -> dict[str, str]:
    values: dict[str, str] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if not line.strip():
            continue
        heredoc = line.find("<<")
        equals = line.find("=")
        if heredoc > 0 and (equals < 0 or heredoc < equals):
            key, delimiter = line[:heredoc], line[heredoc + 2 :]
            if not delimiter:
                raise CommandFileError(f"{name} line {i}: `<<` needs a delimiter after it")
            body = []
            while i < len(lines) and lines[i].rstrip("\r") != delimiter:
                body.append(lines[i].rstrip("\r"))
                i += 1
            if i >= len(lines):
                raise CommandFileError(f"{name} line {i}: the closing delimiter never comes")
            i += 1
            value = "\n".join(body)
        elif equals > 0:
            key, value = line[:equals], line[equals + 1 :]
        else:
            # The line's text is not quoted: it may hold a secret, cut where no mask would match.
            raise CommandFileError(f"{name} line {i} is neither `key=value` nor `key<<DELIMITER`")
        if not _KEY.fullmatch(key):
            raise CommandFileError(f"{name} line {i}: the name before `=` must be letters, digits, `_`, `.` or `-`")
        values[key] = value
    return values


def paths(text: str) -> list[str]:
    """`$RUNNER_PATH`: a directory a line, in the order written."""
    return [line.strip() for line in text.splitlines() if line.strip()]
