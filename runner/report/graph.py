"""The job graph as text: Mermaid (GitHub renders it) or Graphviz dot."""

from __future__ import annotations

from typing import Mapping

from runner.model.results import Result
from runner.model.workflow import Workflow

# Colours by result, for the graph in a GitHub step summary.
_STYLES = {
    Result.SUCCESS: "fill:#dafbe1,stroke:#1a7f37",
    Result.FAILURE: "fill:#ffebe9,stroke:#cf222e",
    Result.SKIPPED: "fill:#f6f8fa,stroke:#8c959f",
    Result.CANCELLED: "fill:#fff8c5,stroke:#9a6700",
}


def mermaid(workflow: Workflow, results: Mapping[str, Result | None] | None = None) -> str:
    lines = ["flowchart LR"]
    for job in workflow.jobs.values():
        label = job.name.replace('"', "'")
        result = (results or {}).get(job.id)
        lines.append(f'  {job.id}["{label}"]' + (f":::{result.value}" if result else ""))
    for job in workflow.jobs.values():
        lines.extend(f"  {need} --> {job.id}" for need in job.needs)
    if results:
        lines.extend(f"  classDef {result.value} {style}" for result, style in _STYLES.items())
    return "\n".join(lines) + "\n"


def dot(workflow: Workflow) -> str:
    lines = ["digraph workflow {", "  rankdir=LR;"]
    for job in workflow.jobs.values():
        label = job.name.replace('"', '\\"')
        lines.append(f'  {job.id} [label="{label}"];')
        lines.extend(f"  {need} -> {job.id};" for need in job.needs)
    return "\n".join(lines) + "\n}\n"
