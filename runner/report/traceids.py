"""The ids of a run's trace and spans, derived from what they stand for.

The trace id comes from the run id alone, so that every attempt of a run
(`runner resume`) adds to the same trace; a span id from the run's attempt, the
node, the node's attempt and the step.  The engine hands a job the traceparent
of its span (`TRACEPARENT`) without asking the exporter (`otel.py`), which
gives the span the same id when it reports it.  Nothing here imports OpenTelemetry.
"""

from __future__ import annotations

import hashlib
import os


def enabled(environ=os.environ) -> bool:
    """Whether runs export traces: an OTLP endpoint is configured and the SDK is not disabled."""
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(endpoint) and environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


def _digest(*parts: object, size: int) -> int:
    text = "\x1f".join(str(p) for p in parts)
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:size], "big")
    return value or 1  # zero is the invalid id


def trace_id(run_id: str) -> int:
    return _digest("runner-trace", run_id, size=16)


def run_span_id(run_id: str, run_attempt: int) -> int:
    return _digest("run", run_id, run_attempt, size=8)


def span_id(run_id: str, run_attempt: int, node_id: str, attempt: int, step: str | None = None) -> int:
    """A node attempt's span, or a step's in it."""
    if step is None:
        return _digest("node", run_id, run_attempt, node_id, attempt, size=8)
    return _digest("step", run_id, run_attempt, node_id, attempt, step, size=8)


def traceparent(run_id: str, run_attempt: int, node_id: str, attempt: int, step: str | None = None) -> str:
    """The W3C traceparent naming that span (sampled)."""
    return f"00-{trace_id(run_id):032x}-{span_id(run_id, run_attempt, node_id, attempt, step):016x}-01"
