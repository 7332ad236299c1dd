"""Every name a compiled template uses, checked against what is in scope where it stands.

The compiler calls these once every job is compiled: `jobs.X` needs X upstream, `steps.X`
an earlier step, `matrix.X` an axis, `inputs.X` and `secrets.X` a declared one; each
problem names the `${{` that uses the name.
"""

from __future__ import annotations

from collections import deque
from types import MappingProxyType
from typing import Any

from runner.errors import suggest
from runner.expr.templates import CONDITION_FUNCTIONS, Template, is_global
from runner.load.github import context_hint
from runner.model import checks
from runner.model.workflow import GIT_FACTS, NO_RETRY, Job, JobKind


def check_job_refs(compiler, jobs: dict[str, Job]) -> None:
    base = {"inputs", "env", "secrets", "jobs", "run", "git"}
    for job in jobs.values():
        path = ("jobs", job.id)
        roots = base
        if job.matrix is not None or job.repeat is not None:
            roots = base | ({"matrix"} if job.matrix is not None else set())
            roots |= {"repeat"} if job.repeat is not None else set()
        if job.condition is not None:
            check_refs(compiler, job.condition, path + ("if",), roots, job, jobs, functions=True)
        for key in ("env", "timeout", "continue_on_error"):
            value = getattr(job, key)
            if value:  # most jobs have none of these
                check_refs(compiler, value, path + (key,), roots, job, jobs)
        if job.retry is not NO_RETRY:
            check_refs(compiler, vars(job.retry), path + ("retry",), roots, job, jobs)
        if job.matrix is not None:
            check_refs(compiler, job.matrix, path + ("matrix",), base, job, jobs)
        if job.repeat is not None:
            check_refs(compiler, job.repeat, path + ("repeat",), roots | {"outputs"}, job, jobs)
        if job.outputs:
            output_roots = roots | {"steps"} if job.container else roots
            if job.kind in (JobKind.HTTP, JobKind.LLM):
                output_roots = output_roots | {"response"}
            step_ids = [s.id for s in job.container.steps if s.id] if job.container else []
            check_refs(compiler, job.outputs, path + ("outputs",), output_roots, job, jobs, step_ids=step_ids)
        if job.given:
            check_refs(compiler, job.given, path + ("with",), roots, job, jobs)
        spec = job.http or job.llm
        if spec is not None:
            kind = "http" if spec is job.http else "llm"
            for key in spec.locations:
                if key in checks.FIELDS[kind]:
                    check_refs(compiler, spec.value(key), path + (kind, key), roots, job, jobs)
        if job.container:
            c = job.container
            check_refs(compiler, c.image, path + ("image",), roots, job, jobs)
            check_refs(compiler, c.working_dir, path + ("working_dir",), roots, job, jobs)
            for service in c.services:
                where = path + ("services", service.name)
                for key in ("image", "command", "env"):
                    check_refs(compiler, getattr(service, key), where + (key,), roots, job, jobs)
                if service.healthcheck is not None:
                    check_refs(compiler, service.healthcheck.run, where + ("healthcheck", "run"), roots, job, jobs)
            for step in c.steps:
                step_path = path + ("steps", step.index) if "steps" in compiler.data["jobs"][job.id] else path
                earlier = [s.id for s in c.steps[: step.index] if s.id]
                for key in ("run", "env", "working_dir", "continue_on_error"):
                    check_refs(
                        compiler, getattr(step, key), step_path + (key,), roots | {"steps"}, job, jobs, step_ids=earlier
                    )
                check_refs(
                    compiler, step.condition, step_path + ("if",), roots | {"steps"}, job, jobs, earlier, functions=True
                )


def check_refs(
    compiler,
    value: Any,
    path: tuple,
    roots: set[str],
    job: Job | None = None,
    jobs: dict[str, Job] | None = None,
    step_ids: list | None = None,
    functions: bool = False,
    any_job: bool = False,
) -> None:
    """Every name a template uses must be in scope where it stands."""
    if not value:  # nothing, or empty: no template (most fields of most jobs)
        return
    found: list = []
    _templates_at(value, path, found)
    for where, template in found:
        for expr in template.parts:
            if isinstance(expr, str):
                continue
            refs = sorted(expr.refs, key=lambda r: (r[0], r[1] or "")) if len(expr.refs) > 1 else expr.refs
            for root, key in refs:
                message = root not in roots and context_hint(root, key, expr.source)
                message = message or _ref_problem(compiler, root, key, roots, job, jobs, step_ids, functions, any_job)
                if message:
                    compiler.error(where, f"in `{expr.source}`: {message}", offset=expr.offset)


def _ref_problem(compiler, root, key, roots, job, jobs, step_ids, functions, any_job) -> str | None:
    if root in CONDITION_FUNCTIONS:
        return None if functions else f"`{root}()` can only be used in `if:`"
    if root not in roots:
        if is_global(root):
            return None
        return f"`{root}` is not defined here{suggest(root, roots)} (in scope: {', '.join(sorted(roots))})"
    if key is None:
        return None
    if root == "inputs" and key not in compiler.inputs:
        return f"no input named `{key}` is declared{suggest(key, compiler.inputs)}"
    if root == "git" and key not in GIT_FACTS:
        return f"no `{key}` in `git` (it has {', '.join(GIT_FACTS)}){suggest(key, GIT_FACTS)}"
    if root == "secrets" and key not in compiler.secrets:
        return f"no secret named `{key}` is declared in `secrets:`{suggest(key, compiler.secrets)}"
    if root == "jobs":
        if key not in compiler.jobs_data:
            return f"there is no job `{key}`{suggest(key, compiler.job_ids)}"
        if not any_job and job is not None and key not in job.needs and not _reaches(job, key, jobs):
            return f"job `{job.id}` uses `jobs.{key}` but does not need `{key}`; add it to `needs`"
    if root == "steps" and step_ids is not None and key not in step_ids:
        all_ids = [s.id for s in job.container.steps if s.id] if job and job.container else []
        if key in all_ids:
            return f"step `{key}` has not run yet at this point"
        return f"job `{job.id}` has no step with id `{key}`{suggest(key, all_ids)}"
    if root == "matrix" and job is not None and isinstance(job.matrix, MappingProxyType):
        axes = set(job.matrix) - {"include", "exclude", "max_parallel", "fail_fast", "max_instances"}
        for entry in job.matrix.get("include") or ():
            if isinstance(entry, MappingProxyType):
                axes |= set(entry)
        if key not in axes:
            return f"the matrix has no axis `{key}`{suggest(key, axes)}"
    return None


def _reaches(job: Job, target: str, jobs: dict[str, Job]) -> bool:
    seen, queue = set(), deque(job.needs)
    while queue:
        need = queue.popleft()
        if need == target:
            return True
        if need in seen or need not in jobs:
            continue
        seen.add(need)
        queue.extend(jobs[need].needs)
    return False


def _templates_at(value: Any, path: tuple, found: list) -> None:
    """(path, Template) for every template inside a compiled value, added to `found` in order."""
    if isinstance(value, Template):
        found.append((path, value))
    elif isinstance(value, (dict, MappingProxyType)):
        for key, item in value.items():
            _templates_at(item, path + (key,), found)
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            _templates_at(item, path + (i,), found)
