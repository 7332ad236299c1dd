"""Reporting inside GitHub Actions: grouped logs, annotations, step outputs and summary.

Each job's output is printed as one `::group::` when the job ends, so that the
groups of jobs running side by side do not interleave.  Step output is relayed
between `::stop-commands::` markers: a step cannot issue workflow commands
(`::add-mask::`, `::set-output`) to GitHub by printing them.
"""

from __future__ import annotations

import json
import secrets
import sys
from typing import Any, TextIO

from runner.model.durations import format_duration
from runner.report.graph import mermaid
from runner.model.results import Result
from runner.model.workflow import Workflow
from runner.report import Reporter

_ICONS = {"success": "✅", "failure": "❌", "skipped": "⏭️", "cancelled": "🚫"}


def escape(text: str) -> str:
    """GitHub's encoding for the message part of a workflow command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape(text).replace(":", "%3A").replace(",", "%2C")


def add_masks(values: list[str], out: TextIO | None = None) -> None:
    """Ask GitHub to mask each secret (and each of its lines) in everything it shows."""
    out = out or sys.stdout
    for value in values:
        for line in {value, *value.splitlines()}:
            if line.strip():
                print(f"::add-mask::{line}", file=out, flush=True)


class GitHub(Reporter):
    def __init__(self, workflow: Workflow, out: TextIO | None = None, output_file: str | None = None,
                 summary_file: str | None = None):
        self.workflow = workflow
        self.out = out or sys.stdout
        self.output_file = output_file
        self.summary_file = summary_file
        self.logs: dict[str, list[str]] = {}
        self.summaries: dict[str, str] = {}  # what jobs wrote to $GITHUB_STEP_SUMMARY
        self.token = secrets.token_hex(16)

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run_started(self, run_id, workflow, name):
        self._print(f"run {run_id}: {name} ({workflow})")

    def node_started(self, node):
        self.summaries.pop(node.id, None)  # an attempt's summary starts anew

    def log(self, node_id, step, stream, line):
        self.logs.setdefault(node_id, []).append(f"[{step}] {line}")

    def node_finished(self, node):
        result = node.result.value
        title = f"{_ICONS[result]} {node.id}: {result}"
        if node.result in (Result.SUCCESS, Result.FAILURE):
            title += f" in {format_duration(round(node.duration, 1))}"
        lines = self.logs.pop(node.id, [])
        if lines:
            self._print(f"::group::{escape(title)}")
            self._print(f"::stop-commands::{self.token}")
            for line in lines:
                self._print(line)
            self._print(f"::{self.token}::")
            self._print("::endgroup::")
        else:
            self._print(title)
        if node.result is Result.FAILURE and not node.continue_on_error:
            self._print(f"::error title={escape_property(node.id + ' failed')}::{escape(node.reason or 'failed')}")

    def summary(self, node_id, text):
        self.summaries[node_id] = self.summaries.get(node_id, "") + text

    def run_finished(self, summary: dict[str, Any]):
        status = summary["status"]
        self._print(f"run {summary['run_id']} {status} in {format_duration(round(summary['duration_s'], 1))}"
                    + (f": {summary['reason']}" if summary.get("reason") else ""))
        if self.output_file:
            self._write_outputs(summary)
        if self.summary_file:
            with open(self.summary_file, "a", encoding="utf-8") as f:
                f.write(self.step_summary(summary))

    def _write_outputs(self, summary: dict[str, Any]) -> None:
        values = {"status": summary["status"], "outputs": json.dumps(summary["outputs"])}
        for name, value in summary["outputs"].items():
            values.setdefault(name, value if isinstance(value, str) else json.dumps(value))
        with open(self.output_file, "a", encoding="utf-8") as f:
            for name, value in values.items():
                delimiter = f"runner_{secrets.token_hex(8)}"
                f.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")

    def step_summary(self, summary: dict[str, Any]) -> str:
        status = summary["status"]
        lines = [
            f"### {_ICONS[status]} {self.workflow.name}: {status} in {format_duration(round(summary['duration_s'], 1))}",
            "",
            "| job | result | duration | attempts | reason |",
            "|---|---|---|---|---|",
        ]
        for job_id, job in summary["jobs"].items():
            reason = job["reason"].replace("|", "\\|").replace("\n", " ")
            if job.get("continue_on_error"):
                reason += " (continue_on_error)"
            lines.append(
                f"| `{job_id}` | {_ICONS[job['result']]} {job['result']} | "
                f"{format_duration(round(job['duration_s'], 1))} | {job['attempts']} | {reason} |"
            )
        results = {job_id: Result(job["result"]) for job_id, job in summary["jobs"].items()}
        lines += ["", "```mermaid", mermaid(self.workflow, results).rstrip(), "```", ""]
        if summary["outputs"]:
            lines += ["<details><summary>outputs</summary>", "", "```json",
                      json.dumps(summary["outputs"], indent=2), "```", "</details>", ""]
        for node_id, text in self.summaries.items():
            lines += [f"#### `{node_id}`", "", text.rstrip("\n"), ""]
        return "\n".join(lines) + "\n"
