"""The job graph as text: Mermaid (GitHub renders it) or Graphviz dot."""

from __future__ import annotations

import re
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
        lines.append(f'  {_mermaid_id(job.id)}["{label}"]' + (f":::{result.value}" if result else ""))
    for job in workflow.jobs.values():
        lines.extend(f"  {_mermaid_id(need)} --> {_mermaid_id(job.id)}" for need in job.needs)
    if results:
        lines.extend(f"  classDef {result.value} {style}" for result, style in _STYLES.items())
    return "\n".join(lines) + "\n"


def dot(workflow: Workflow) -> str:
    lines = ["digraph workflow {", "  rankdir=LR;"]
    for job in workflow.jobs.values():
        label = job.name.replace('"', '\\"')
        lines.append(f'  {_dot_id(job.id)} [label="{label}"];')
        lines.extend(f"  {_dot_id(need)} -> {_dot_id(job.id)};" for need in job.needs)
    return "\n".join(lines) + "\n}\n"


def _mermaid_id(job_id: str) -> str:
    """Mermaid reads `--` as an edge, and a `-` that ends an id as the start of one."""
    return re.sub(r"-{2,}|-$", "_", job_id)


def _dot_id(job_id: str) -> str:
    return job_id if "-" not in job_id else f'"{job_id}"'

