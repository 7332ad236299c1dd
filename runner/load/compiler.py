"""Compile a schema-valid document into a `Workflow`, checking the graph and every template.

All problems are collected, not only the first, and each names its file, line,
column and key path.  Whether each name a template uses is in scope is checked by
`names.py`.  Nothing here runs anything.
"""

from __future__ import annotations

import os
from collections import deque
from types import MappingProxyType
from typing import Any

from runner.errors import Location, Problem, Severity, WorkflowInvalid, suggest
from runner.model import checks
from runner.model.durations import parse_duration
from runner.load.document import Document
from runner.load.names import check_job_refs, check_refs
from runner.load.scripts import literal_expression
from runner.load.specs import http_spec, llm_spec, sub_workflow
from runner.model.workflow import (
    CachePolicy,
    Capabilities,
    Container,
    Healthcheck,
    InputSpec,
    Job,
    JobKind,
    NO_RETRY,
    Resources,
    Retry,
    Service,
    Step,
    Workflow,
    frozen,
)
from runner.expr.templates import (
    Template,
    TemplateError,
    parse_condition,
    parse_template,
)

SHELLS = ("sh", "bash", "python", "node")
SHELL_ALIASES = {"python3": "python"}  # GitHub Actions' spelling
_EMPTY: MappingProxyType = MappingProxyType({})


class _Compiler:
    def __init__(self, doc: Document, load_child):
        self.doc = doc
        self.load_child = load_child
        self.data = doc.data
        self.problems: list[Problem] = []

    # -- reporting -------------------------------------------------------

    def error(
        self, path: tuple, message: str, key: bool = False, severity: Severity = Severity.ERROR, offset: int = 0
    ) -> None:
        """A problem at `path` (at its key; at the `${{` that many characters into its text)."""
        self.problems.append(Problem(self.doc.locate(path, key=key, offset=offset), message, path, severity))

    def where(self, path: tuple) -> Location:
        return self.doc.locate(path)

    # -- values ----------------------------------------------------------

    def template(self, value: Any, path: tuple) -> Any:
        """A field's value with each `${{ }}` text parsed, at any depth, made immutable.

        Every template that does not parse is a problem at its own key path.
        """
        if isinstance(value, str):
            if "${{" not in value:
                return value
            try:
                return parse_template(value, self.where(path))
            except TemplateError as e:
                self.error(path, str(e), offset=e.offset)
                return e.partial  # what could be read, so that its names are checked too
        if isinstance(value, dict):
            if not value:
                return _EMPTY
            return MappingProxyType({k: self.template(v, path + (k,)) for k, v in value.items()})
        if isinstance(value, list):
            return tuple(self.template(v, path + (i,)) for i, v in enumerate(value))
        return value

    def condition(self, value: Any, path: tuple) -> Template | None:
        if value is None:
            return None
        try:
            return Template(parse_condition(value).parts, self.where(path))
        except TemplateError as e:
            self.error(path, str(e))
            return e.partial

    def duration(self, value: Any, path: tuple, limit: bool = False) -> Any:
        """Seconds, or a template.  A time limit (`limit`) must be more than 0: none would end at once."""
        if value is None:
            return None
        if isinstance(value, str) and "${{" in value:
            return self.template(value, path)
        try:
            return checks.timeout(value) if limit else parse_duration(value)
        except checks.FieldError as e:
            self.error(path, f"timeout: {e}")
        except ValueError:
            self.error(path, f"`{value}` is not a duration; write 90, 30s, 5m or 1h30m")
        return None

    # -- the workflow ----------------------------------------------------

    def compile(self) -> Workflow:
        data = self.data
        self.inputs = {name: self.input(name, spec) for name, spec in (data.get("inputs") or {}).items()}
        self.secrets = {name: self.where(("secrets", i)) for i, name in enumerate(data.get("secrets") or ())}
        self.defaults = data.get("defaults") or {}
        env = self.template(data.get("env") or {}, ("env",))
        check_refs(self, env, ("env",), roots={"inputs", "secrets", "run", "git"})
        jobs_data = data.get("jobs") or {}
        self.jobs_data, self.job_ids = jobs_data, list(jobs_data)
        jobs = {job_id: self.job(job_id, spec, ("jobs", job_id)) for job_id, spec in jobs_data.items()}
        order, dependents = self.order(jobs)
        check_job_refs(self, jobs)
        timeout = self.duration(data.get("timeout"), ("timeout",), limit=True)
        check_refs(self, timeout, ("timeout",), roots={"inputs", "secrets", "run", "git", "env"})
        outputs = self.template(data.get("outputs") or {}, ("outputs",))
        check_refs(self, outputs, ("outputs",), roots={"inputs", "secrets", "run", "git", "jobs", "env"}, any_job=True)
        return Workflow(
            path=self.doc.file,
            directory=os.path.dirname(os.path.abspath(self.doc.file)),
            name=str(data.get("name") or os.path.splitext(os.path.basename(self.doc.file))[0]),
            description=str(data.get("description") or ""),
            inputs=frozen(self.inputs),
            secrets=frozen(self.secrets),
            env=env,
            concurrency=data.get("concurrency"),
            timeout=timeout,
            fail_fast=bool(data.get("fail_fast", False)),
            jobs=frozen(jobs),
            outputs=outputs,
            order=tuple(order),
            dependents=frozen({k: tuple(v) for k, v in dependents.items()}),
        )

    def input(self, name: str, spec: dict) -> InputSpec:
        enum = spec.get("enum")
        return InputSpec(
            name=name,
            type=spec.get("type", "string"),
            default=spec.get("default"),
            required=bool(spec.get("required", False)),
            enum=tuple(enum) if enum is not None else None,
            minimum=spec.get("minimum"),
            maximum=spec.get("maximum"),
            description=spec.get("description", ""),
            location=self.doc.locate(("inputs", name), key=True),
        )

    # -- jobs ------------------------------------------------------------

    def job(self, job_id: str, spec: dict, path: tuple) -> Job:
        needs = spec.get("needs") or ()
        needs = (needs,) if isinstance(needs, str) else tuple(needs)
        for i, need in enumerate(needs):
            need_path = path + ("needs",) if isinstance(spec.get("needs"), str) else path + ("needs", i)
            if need == job_id:
                self.error(need_path, f"job `{job_id}` needs itself")
            elif need not in self.jobs_data:
                self.error(need_path, f"job `{job_id}` needs `{need}`, which is not a job{suggest(need, self.job_ids)}")
        if "http" in spec:
            kind = JobKind.HTTP
        elif "llm" in spec:
            kind = JobKind.LLM
        elif "uses" in spec:
            kind = JobKind.WORKFLOW
        elif "steps" in spec or "run" in spec or "image" in spec:
            kind = JobKind.CONTAINER
        else:
            kind = JobKind.VALUE
        container = self.container(job_id, spec, path) if kind is JobKind.CONTAINER else None
        workflow = sub_workflow(self, spec, path) if kind is JobKind.WORKFLOW else None
        cache = self.cache(kind, spec, path)
        return Job(
            id=job_id,
            name=str(spec.get("name") or job_id),
            kind=kind,
            needs=needs,
            # An absent field costs nothing: most jobs set few of them.
            condition=self.condition(spec["if"], path + ("if",)) if "if" in spec else None,
            env=self.template(spec["env"], path + ("env",)) if spec.get("env") else _EMPTY,
            timeout=self.duration(
                spec.get("timeout", self.defaults.get("timeout")),
                path + ("timeout",) if "timeout" in spec else ("defaults", "timeout"), limit=True,
            ),
            retry=self.retry(spec.get("retry", self.defaults.get("retry")), path + ("retry",)),
            continue_on_error=(
                self.template(spec["continue_on_error"], path + ("continue_on_error",)) if "continue_on_error" in spec else False
            ),
            matrix=self.template(spec["matrix"], path + ("matrix",)) if "matrix" in spec else None,
            repeat=self.template(spec["repeat"], path + ("repeat",)) if "repeat" in spec else None,
            outputs=self.template(spec["outputs"], path + ("outputs",)) if spec.get("outputs") else _EMPTY,
            location=self.where(path),
            container=container,
            http=http_spec(self, spec["http"], path + ("http",)) if kind is JobKind.HTTP else None,
            llm=llm_spec(self, spec["llm"], path + ("llm",)) if kind is JobKind.LLM else None,
            workflow=workflow,
            given=self.template(spec["with"], path + ("with",)) if spec.get("with") else _EMPTY,
            cache=cache,
        )

    def cache(self, kind: JobKind, spec: dict, path: tuple) -> CachePolicy | None:
        """`cache` (or `defaults.cache`), `cache_files` and `cache_outputs` of a job."""
        if kind is not JobKind.CONTAINER and "cache" not in spec and "cache_files" not in spec and "cache_outputs" not in spec:
            return None  # most jobs: nothing to check
        value = spec.get("cache", self.defaults.get("cache", False))
        for key in ("cache_files", "cache_outputs"):
            for i, pattern in enumerate(spec.get(key) or ()):
                parts = pattern.replace("\\", "/").split("/")
                if pattern.startswith("/") or ".." in parts:
                    self.error(path + (key, i), f"`{pattern}` must be a glob inside the workspace: relative, without `..`")
        if kind is not JobKind.CONTAINER:
            for key in ("cache", "cache_files", "cache_outputs"):
                if key in spec:
                    self.error(path + (key,), f"`{key}` applies to container jobs only", key=True)
            return None
        if value is False:
            for key in ("cache_files", "cache_outputs"):
                if key in spec:
                    self.error(path + (key,), f"`{key}` has no effect without `cache: true`", key=True, severity=Severity.WARNING)
            return None
        ttl = None
        if isinstance(value, dict) and value.get("ttl") is not None:
            where = path + ("cache", "ttl") if "cache" in spec else ("defaults", "cache", "ttl")
            if isinstance(value["ttl"], str) and "${{" in value["ttl"]:
                self.error(where, "`ttl` is a fixed duration; it cannot be computed by an expression")
            else:
                ttl = self.duration(value["ttl"], where)
        return CachePolicy(ttl=ttl, files=tuple(spec.get("cache_files") or ()), outputs=tuple(spec.get("cache_outputs") or ()))

    def retry(self, value: Any, path: tuple) -> Retry:
        if value is None:
            return NO_RETRY
        if not isinstance(value, dict):  # a number of attempts (1.0 is a whole number too)
            return Retry(attempts=int(value))
        codes = value.get("on_exit_codes")
        methods = value.get("on_methods")
        attempts = self.template(value.get("attempts", 1), path + ("attempts",))
        factor = self.template(value.get("backoff_factor", 2.0), path + ("backoff_factor",))
        return Retry(
            attempts=attempts if isinstance(attempts, Template) else int(attempts),
            delay=self.duration(value.get("delay", 0), path + ("delay",)) or 0.0,
            backoff_factor=factor if isinstance(factor, Template) else float(factor),
            max_delay=self.duration(value.get("max_delay"), path + ("max_delay",)),
            on_exit_codes=tuple(codes) if codes is not None else None,
            on_methods=tuple(m.upper() for m in methods) if methods is not None else None,
        )

    def resources(self, spec: dict, path: tuple) -> Resources:
        """The limits as bytes and numbers; a template is kept, to be rendered when the job runs."""
        limits = {}
        for key, check in (("cpus", checks.cpus), ("memory", checks.memory), ("pids", checks.pids)):
            value = self.template(spec.get(key), path + (key,))
            if value is not None and not isinstance(value, Template):
                try:
                    value = check(value)
                except checks.FieldError as e:
                    self.error(path + (key,), str(e))
                    value = None
            limits[key] = value
        return Resources(**limits)

    def container(self, job_id: str, spec: dict, path: tuple) -> Container:
        image = spec.get("image", self.defaults.get("image"))
        if image is None:
            self.error(path, f"job `{job_id}` runs in a container but names no `image` (nor does `defaults.image`)")
        shell = spec.get("shell", self.defaults.get("shell", "sh"))
        shell = SHELL_ALIASES.get(shell, shell)
        if "steps" in spec:
            steps_data = [(s, path + ("steps", i)) for i, s in enumerate(spec["steps"])]
        else:
            steps_data = [({"run": spec.get("run", "")}, path)]
        steps = []
        seen: dict[str, int] = {}
        for index, (step, step_path) in enumerate(steps_data):
            step_id = step.get("id")
            if step_id is not None:
                if step_id in seen:
                    self.error(step_path + ("id",), f"step id `{step_id}` is used twice in job `{job_id}`")
                seen.setdefault(step_id, index)
            steps.append(self.step(index, step, step_path, shell))
        self.check_scripts(steps, steps_data)
        resources = self.resources(spec.get("resources", self.defaults.get("resources")) or {}, path + ("resources",))
        network = spec.get("network", self.defaults.get("network", "bridge"))
        return Container(
            image=self.template(image, path + ("image",)) if image is not None else "",
            steps=tuple(steps),
            working_dir=self.template(spec.get("working_dir", self.defaults.get("working_dir")), path + ("working_dir",)),
            resources=resources,
            network=network,
            user=str(spec["user"]) if spec.get("user") is not None else None,
            capabilities=Capabilities(*(tuple((spec.get("capabilities") or {}).get(k) or ()) for k in ("add", "drop"))),
            services=self.services(spec.get("services") or {}, network, path),
            placement=tuple((spec.get("placement") or {}).get("constraints") or ()),
            where=frozen({
                key: self.doc.locate(path + (key,) if key in spec else ("defaults", key), key=True)
                for key in ("image", "resources", "network", "user", "capabilities", "services", "placement")
                if key in spec or key in self.defaults
            }),
        )

    def services(self, spec: dict, network: str, path: tuple) -> tuple[Service, ...]:
        """`services:` of a container job, which needs a network for them."""
        if spec and network == "none":
            self.error(path + ("services",), "a job with `network: none` cannot have `services`: they are reached over the network", key=True)
        services = []
        for name, service in spec.items():
            where = path + ("services", name)
            check = service.get("healthcheck")
            services.append(Service(
                name=name,
                image=self.template(service["image"], where + ("image",)),
                command=self.template(service.get("command"), where + ("command",)),
                env=self.template(service.get("env") or {}, where + ("env",)),
                healthcheck=self.healthcheck(check, where + ("healthcheck",)) if check is not None else None,
            ))
        return tuple(services)

    def healthcheck(self, check: dict, path: tuple) -> Healthcheck:
        durations = {}
        for key in ("interval", "timeout"):
            value = check.get(key)
            if isinstance(value, str) and "${{" in value:
                self.error(path + (key,), f"`{key}` is a fixed duration; it cannot be computed by an expression")
            elif value is not None and (seconds := self.duration(value, path + (key,))) is not None:
                durations[key] = seconds
        return Healthcheck(run=self.template(check["run"], path + ("run",)), retries=check.get("retries"), **durations)

    def step(self, index: int, spec: dict, path: tuple, job_shell: str) -> Step:
        run_path = path + ("run",)
        shell = spec.get("shell", job_shell)
        try:
            run = parse_template(str(spec.get("run", "")), self.where(run_path))
        except TemplateError as e:
            self.error(run_path, str(e), offset=e.offset)
            run = e.partial or Template(("",))
        return Step(
            index=index,
            id=spec.get("id"),
            name=str(spec.get("name") or spec.get("id") or _first_line(spec.get("run", ""))),
            run=run,
            shell=SHELL_ALIASES.get(shell, shell),
            env=self.template(spec.get("env") or {}, path + ("env",)),
            condition=self.condition(spec.get("if"), path + ("if",)),
            working_dir=self.template(spec.get("working_dir"), path + ("working_dir",)),
            timeout=self.duration(spec.get("timeout"), path + ("timeout",), limit=True),
            continue_on_error=self.template(spec.get("continue_on_error", False), path + ("continue_on_error",)),
            location=self.where(path),
        )

    def check_scripts(self, steps: list[Step], steps_data: list) -> None:
        """Warn where a value would land inside a string literal and stay literal text."""
        for step, (_, path) in zip(steps, steps_data):
            message = any(not e.raw for e in step.run.expressions) and literal_expression(step.run, step.shell)
            if message:
                self.error(path + ("run",), message, severity=Severity.WARNING)

    # -- the graph -------------------------------------------------------

    def order(self, jobs: dict[str, Job]) -> tuple[list[str], dict[str, list[str]]]:
        """A topological order, and the jobs that need each job; every cycle becomes a problem that prints its path.

        A job that needs itself is an error, so leaving it out of its own dependents changes no valid workflow.
        """
        remaining = dict.fromkeys(jobs, 0)  # each job's needs not yet in the order
        dependents: dict[str, list[str]] = {job_id: [] for job_id in jobs}
        for job_id, job in jobs.items():
            for need in job.needs:
                if need in jobs and need != job_id:
                    dependents[need].append(job_id)
                    remaining[job_id] += 1
        ready = deque(job_id for job_id, n in remaining.items() if n == 0)
        order = []
        while ready:
            job_id = ready.popleft()
            order.append(job_id)
            for dependent in dependents[job_id]:
                remaining[dependent] -= 1
                if remaining[dependent] == 0:
                    ready.append(dependent)
        if len(order) == len(jobs):
            return order, dependents
        stuck = {job_id for job_id, n in remaining.items() if n > 0}
        # Every stuck job needs another stuck job, so following needs from one
        # always closes a loop; each job is walked once, whatever the graph's size.
        walked: set[str] = set()
        for start in (job_id for job_id in jobs if job_id in stuck):
            path: list[str] = []
            position: dict[str, int] = {}
            node = start
            while node not in walked:
                walked.add(node)
                position[node] = len(path)
                path.append(node)
                node = next(n for n in jobs[node].needs if n in stuck and n != node)
            if node in position:
                # Printed in the direction work flows: `a needs b` reads b → a.
                cycle = list(reversed(path[position[node] :]))
                self.error(("jobs", cycle[0], "needs"), "the jobs' needs form a cycle: " + " → ".join([*cycle, cycle[0]]))
        return order, dependents


def _first_line(text: Any) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= 60 else line[:57] + "..."


def compile_document(doc: Document, load_child) -> tuple[Workflow, list[Problem]]:
    """The compiled workflow and its warnings; WorkflowInvalid if anything is wrong.

    `load_child(path, location)` compiles a workflow named by `uses`.
    """
    compiler = _Compiler(doc, load_child)
    workflow = compiler.compile()
    errors = [p for p in compiler.problems if p.severity is Severity.ERROR]
    if errors:
        raise WorkflowInvalid(compiler.problems)
    return workflow, compiler.problems


