"""A run as an OpenTelemetry trace, sent over OTLP/HTTP while it goes on.

One span for the run's attempt, one for each node attempt (a matrix instance
under its job's span, a sub-workflow's nodes under the span of the node that
runs it) and one for each step of a container job.  Ids come from
`traceids.py`: the trace is the run's (a resumed run continues it), and a job's
`TRACEPARENT` names the span reported here.  Attributes follow the CI/CD
semantic conventions (`cicd.pipeline.*`), runner's own are `runner.*`; every
text is masked.  Only `run.py` imports this module, and only when
`traceids.enabled()`: OpenTelemetry costs nothing to runs that are not traced.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags, set_span_in_context

from runner import __version__
from runner.model.results import NodeState, Result
from runner.model.workflow import JobKind
from runner.report import Reporter
from runner.report.traceids import run_span_id, span_id, trace_id

if TYPE_CHECKING:
    from runner.masking import Masker
    from runner.model.results import NodeRecord
    from runner.model.workflow import Job, Workflow

# The CI/CD conventions' result values.
_RESULTS = {
    Result.SUCCESS: "success", Result.FAILURE: "failure", Result.SKIPPED: "skip", Result.CANCELLED: "cancellation",
    "success": "success", "failure": "failure", "cancelled": "cancellation",
}


class _Ids(IdGenerator):
    """Hands the SDK the id chosen for the span about to start."""

    def __init__(self, trace: int):
        self.trace = trace
        self.next = 0

    def generate_trace_id(self) -> int:
        return self.trace

    def generate_span_id(self) -> int:
        return self.next


class _Sender(SpanExporter):
    """The OTLP exporter, counting what it could not send; its own complaints are kept for one warning.

    The SDK logs why an export failed on the thread that exports (each run's processor has its own),
    so a complaint belongs to the sender exporting on that thread.  While any sender is open the
    SDK's log lines are kept from the console: several runs may be traced at once in one server.
    """

    def __init__(self):
        self.inner = OTLPSpanExporter()
        self.lost = 0
        self.why = ""
        with _senders.lock:
            if not _senders.open:
                logger = logging.getLogger("opentelemetry")
                logger.addHandler(_COMPLAINTS)
                logger.propagate = False
            _senders.open += 1

    def export(self, spans):
        _senders.exporting.sender = self
        try:
            result = self.inner.export(spans)
        finally:
            _senders.exporting.sender = None
        if result is not SpanExportResult.SUCCESS:
            self.lost += len(spans)
        return result

    def shutdown(self):
        try:
            self.inner.shutdown()
        finally:
            with _senders.lock:
                _senders.open -= 1
                if not _senders.open:
                    logger = logging.getLogger("opentelemetry")
                    logger.removeHandler(_COMPLAINTS)
                    logger.propagate = True
        if self.lost:
            where = getattr(self.inner, "_endpoint", "the collector")
            print(f"runner: warning: {self.lost} spans of the run's trace could not be sent to {where}"
                  + (f": {self.why}" if self.why else ""), file=sys.stderr)


class _Senders:
    def __init__(self):
        self.lock = threading.Lock()
        self.open = 0
        self.exporting = threading.local()  # .sender: the sender exporting on this thread


class _Complaints(logging.Handler):
    def emit(self, record):
        sender = getattr(_senders.exporting, "sender", None)
        if sender is not None and not sender.why:  # the first says why; those after it, that it went on failing
            sender.why = record.getMessage().split(" encountered while exporting")[0]


_senders = _Senders()
_COMPLAINTS = _Complaints(logging.WARNING)


class Tracing(Reporter):
    def __init__(self, workflow: "Workflow", run_id: str, run_attempt: int, masker: "Masker",
                 image_for: Callable[[str], str] | None = None):
        self.workflow = workflow
        self.run_id = run_id
        self.run_attempt = run_attempt
        self.masker = masker
        self.image_for = image_for or (lambda image: image)
        self.ids = _Ids(trace_id(run_id))
        resource = Resource.create({"service.version": __version__})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "runner"}))
        # Shut down by close(): no exit hook keeps each run's provider alive in a long-lived process.
        self.provider = TracerProvider(resource=resource, id_generator=self.ids, shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(_Sender()))
        self.tracer = self.provider.get_tracer("runner", __version__)
        self.run_span = None
        self.common: dict[str, Any] = {}
        self.nodes: dict[str, tuple[Any, int]] = {}  # node id → its open span and attempt
        self.steps: dict[tuple[str, str], Any] = {}  # (node id, step) → its open span
        self.exit_codes: dict[str, int] = {}  # node id → its last step's exit code in this attempt
        self.jobs: dict[str, "Job"] = {}  # node id → its job

    def _start(self, name: str, span: int, parent, attributes: dict[str, Any], links=(), when: int | None = None):
        self.ids.next = span
        context = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else Context()
        return self.tracer.start_span(self._text(name), context=context, attributes=self._masked(attributes),
                                      links=links, start_time=when or time.time_ns())

    def _text(self, text: str) -> str:
        return self.masker.text(text) if self.masker else text

    def _masked(self, attributes: dict[str, Any]) -> dict[str, Any]:
        return {k: self._text(v) if isinstance(v, str) else v for k, v in attributes.items() if v is not None}

    # -- the run ----------------------------------------------------------------

    def run_started(self, run_id, workflow, name):
        self.common = {"cicd.pipeline.name": name, "cicd.pipeline.run.id": run_id}
        links = []
        if self.run_attempt > 1:  # the attempt this one resumes
            previous = SpanContext(self.ids.trace, run_span_id(run_id, self.run_attempt - 1), True,
                                   TraceFlags(TraceFlags.SAMPLED))
            links.append(Link(previous, {"runner.link": "previous attempt"}))
        self.run_span = self._start(name, run_span_id(run_id, self.run_attempt), None, {
            **self.common, "runner.run.attempt": self.run_attempt, "runner.workflow.file": str(workflow),
        }, links)

    def run_finished(self, summary):
        span, self.run_span = self.run_span, None
        if span is None:
            return
        status = summary.get("status")
        span.set_attribute("cicd.pipeline.result", _RESULTS.get(status, str(status)))
        if summary.get("reason"):
            span.set_attribute("runner.reason", self._text(summary["reason"]))
        if status == "failure":
            span.set_status(Status(StatusCode.ERROR, self._text(summary.get("reason") or "")))
        span.end()

    def close(self):
        now = time.time_ns()
        for span in [*self.steps.values(), *(s for s, _ in self.nodes.values())]:
            span.end(now)
        if self.run_span is not None:  # the run ended by an error of runner's
            self.run_span.set_status(Status(StatusCode.ERROR, "runner stopped"))
            self.run_span.end(now)
        self.steps, self.nodes, self.run_span = {}, {}, None
        self.provider.shutdown()  # sends what is left

    # -- nodes -------------------------------------------------------------------

    def node_started(self, node):
        now = time.time_ns()
        if node.id in self.nodes:  # the previous attempt failed; this one retries
            self._end_node(node.id, now, {"cicd.pipeline.task.run.result": "failure", "runner.retried": True,
                                          "runner.exit_code": self.exit_codes.pop(node.id, None)})
        self._open(node, now)

    def node_finished(self, node):
        now = time.time_ns()
        if node.id not in self.nodes:  # never ran: skipped, cached, kept from an earlier attempt
            self._open(node, now)
        attributes: dict[str, Any] = {
            "cicd.pipeline.task.run.result": _RESULTS.get(node.result),
            "runner.node.state": node.state.value,
            "runner.reason": node.reason or None,
            "runner.exit_code": self.exit_codes.pop(node.id, None),
            "runner.kept_from": node.kept_from,
            "runner.cache.source_run": node.cached_from,
        }
        job = self.jobs.get(node.id)
        if node.cached_from is not None or (job is not None and job.cache is not None):
            attributes["runner.cache.hit"] = node.cached_from is not None
        if node.state is NodeState.FAILED and node.continue_on_error:
            attributes["runner.continue_on_error"] = True
        if node.usage:
            attributes["gen_ai.usage.input_tokens"] = node.usage.get("prompt_tokens")
            attributes["gen_ai.usage.output_tokens"] = node.usage.get("completion_tokens")
        error = node.state is NodeState.FAILED and not node.continue_on_error
        self._end_node(node.id, now, attributes, error=node.reason if error else None)

    def _open(self, node: "NodeRecord", now: int) -> None:
        attempt = max(node.attempts, 1)
        job = self.jobs[node.id] = self._job(node)
        attributes: dict[str, Any] = {
            **self.common,
            "cicd.pipeline.task.name": node.id,
            "cicd.pipeline.task.run.id": f"{self.run_id}/{node.id}/{self.run_attempt}.{attempt}",
            "runner.job": node.job_id,
            "runner.attempt": attempt,
            "runner.run.attempt": self.run_attempt,
        }
        if node.matrix is not None:
            attributes["runner.matrix"] = json.dumps(self.masker.value(node.matrix, numbers=True), default=str)
        if job is not None:
            attributes["runner.job.kind"] = job.kind.value
            if job.kind is JobKind.CONTAINER and isinstance(job.container.image, str):
                attributes["runner.image"] = self.image_for(job.container.image)
        span = self._start(node.id, span_id(self.run_id, self.run_attempt, node.id, attempt), self._parent(node),
                           attributes, when=now)
        self.nodes[node.id] = (span, attempt)

    def _end_node(self, node_id: str, now: int, attributes: dict[str, Any], error: str | None = None) -> None:
        span, _ = self.nodes.pop(node_id)
        for key in [k for k in self.steps if k[0] == node_id]:  # steps stopped with their node
            self.steps.pop(key).end(now)
        span.set_attributes(self._masked(attributes))
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, self._text(error)))
        span.end(now)

    def _parent(self, node: "NodeRecord") -> SpanContext | None:
        """A matrix instance's job's span, a sub-workflow node's caller's, else the run's."""
        parent = node.job_id if node.id != node.job_id else node.job_id.rpartition("/")[0]
        if parent in self.nodes:
            return self.nodes[parent][0].get_span_context()
        return self.run_span.get_span_context() if self.run_span is not None else None

    def _job(self, node: "NodeRecord") -> "Job | None":
        if node.id != node.job_id:
            return self.jobs.get(node.job_id)
        caller, _, name = node.job_id.rpartition("/")
        workflow = self.workflow if not caller else getattr(self.jobs.get(caller), "workflow", None)
        return workflow.jobs.get(name) if workflow is not None else None

    # -- steps -------------------------------------------------------------------

    def step_started(self, node_id, step):
        if node_id not in self.nodes:
            return
        node_span, attempt = self.nodes[node_id]
        self.steps[node_id, step] = self._start(f"{node_id}: {step}", span_id(
            self.run_id, self.run_attempt, node_id, attempt, step,
        ), node_span.get_span_context(), {**self.common, "cicd.pipeline.task.name": node_id, "runner.step": step,
                                          "runner.attempt": attempt})

    def step_finished(self, node_id, step, result, exit_code):
        span = self.steps.pop((node_id, step), None)
        if span is None:
            return
        if exit_code is not None:
            span.set_attribute("runner.exit_code", exit_code)
            self.exit_codes[node_id] = exit_code
        span.set_attribute("runner.step.result", result.value)
        if result is Result.FAILURE:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
