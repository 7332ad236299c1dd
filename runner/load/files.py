"""Which files are runner workflows, told from their text without loading them (`validate --workflows-only`, `serve --workflows`)."""

from __future__ import annotations

_WORKFLOW_LINES = ("version:", "jobs:")


def looks_like_workflow(path: str) -> bool:
    """A file with top-level `version:` and `jobs:` lines; YAML files of other tools have neither."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            starts = {line.split(":", 1)[0] + ":" for line in f if line[:1].isalpha()}
    except OSError:
        return True  # let validation report why it cannot be read
    return all(key in starts for key in _WORKFLOW_LINES)
