"""The compiled workflow: an immutable graph of jobs with unrendered templates.

Nothing here knows about YAML or Docker.  Values that may hold ``${{ }}`` are
kept as `Template`s (or containers of them) and rendered by the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from types import MappingProxyType
from typing import Any, Mapping

from runner.errors import Location
from runner.expr.templates import Template, templates_in


GIT_FACTS = ("sha", "ref", "branch")  # the `git` expression context: the workspace's checkout


class JobKind(Enum):
    CONTAINER = "container"
    HTTP = "http"
    LLM = "llm"
    WORKFLOW = "workflow"
    VALUE = "value"


@dataclass(frozen=True)
class Retry:
    """`retry:` of a job: how many attempts, the waits between them, and which failures are tried again.

    `attempts`, `delay`, `backoff_factor` and `max_delay` may be templates, rendered when the job runs.
    """

    attempts: int | Template = 1
    delay: float | Template = 0.0
    backoff_factor: float | Template = 2.0
    max_delay: float | Template | None = None
    on_exit_codes: tuple[int, ...] | None = None
    on_methods: tuple[str, ...] | None = None  # http: the methods retried (default: the idempotent ones)


NO_RETRY = Retry()  # immutable: every job without `retry` shares it


@dataclass(frozen=True)
class Resources:
    """`resources:` of a container job: the limits of its container; None: no limit; a template until the job runs."""

    cpus: float | None = None
    memory: int | None = None  # bytes
    pids: int | None = None


@dataclass(frozen=True)
class Step:
    """One of a container job's `steps:`: a script run in the job's container."""

    index: int
    id: str | None
    name: str
    run: Template
    shell: str
    env: Mapping[str, Any]
    condition: Template | None
    working_dir: Any
    timeout: float | None
    continue_on_error: Any
    location: Location

    @property
    def label(self) -> str:
        return self.id or str(self.index + 1)


@dataclass(frozen=True)
class CachePolicy:
    """`cache:` of a container job: reuse a successful result while its key is unchanged."""

    ttl: float | None = None  # seconds an entry is valid; None: until removed
    files: tuple[str, ...] = ()  # `cache_files`: globs in the workspace whose content is in the key
    outputs: tuple[str, ...] = ()  # `cache_outputs`: globs of files the job writes, stored and restored


@dataclass(frozen=True)
class Capabilities:
    """`capabilities:` of a container job: Linux capabilities added to and dropped from the defaults."""

    add: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()  # "ALL": every default


@dataclass(frozen=True)
class Healthcheck:
    """`healthcheck:` of a service: how the job learns that it is ready."""

    run: Any  # str or Template: run with `sh -c` in the service until it exits 0
    interval: float = 1.0
    timeout: float = 60.0  # the longest wait for a first success
    retries: int | None = None  # the most tries; None: as many as `timeout` allows


@dataclass(frozen=True)
class Service:
    """A sidecar container of a job, reachable from it by `name`."""

    name: str
    image: Any  # str or Template
    command: tuple | None  # replaces the image's command (its entrypoint is kept); None: the image's
    env: Mapping[str, Any]
    healthcheck: Healthcheck | None


@dataclass(frozen=True)
class Container:
    """What a container job runs: its image, settings and steps."""

    image: Any  # str or Template
    steps: tuple[Step, ...]
    working_dir: Any
    resources: Resources
    network: str
    user: str | None  # "host": the workspace's owner; None: runner's user when it is not root, else the image's
    capabilities: Capabilities = Capabilities()
    services: tuple[Service, ...] = ()
    placement: tuple[str, ...] = ()  # `placement: {constraints}`: where a cluster may run the job
    # Where `image`, `resources`, `network`, `user`, `capabilities`, `services` and `placement` are set
    # (the job's key or the default's), for a backend that cannot honour them to say so.
    where: Mapping[str, Location] = field(default_factory=dict)

    def images(self) -> set[str]:
        """The images known before running (not computed by an expression): the job's and its services'."""
        return {i for i in (self.image, *(s.image for s in self.services)) if isinstance(i, str)}


class BodyKind(Enum):
    JSON = "json"
    TEXT = "body"
    FORM = "form"


@dataclass(frozen=True)
class HttpSpec:
    """An http job's request.  Each field holds its value checked (`runner.model.checks`)
    or, where it holds a `${{ }}`, its templates, checked the same way once rendered."""

    url: Any
    method: Any = "GET"
    headers: Any = None  # names to values
    params: Any = None
    body_kind: BodyKind | None = None  # None: no body
    body: Any = None
    timeout: Any = None  # seconds; None: the job's timeout, else the executor's default
    expect: Any = None  # status codes; None: any 2xx
    follow_redirects: Any = False
    max_bytes: Any = 10 * 1024 * 1024
    verify: Any = True  # or the path of a CA bundle, relative to the workspace
    locations: Mapping[str, Location] = field(default_factory=dict)  # where each key is written

    def value(self, key: str) -> Any:
        """What the key `key` of `http:` compiled to (`json`, `body` and `form` to `body`)."""
        return self.body if key in {kind.value for kind in BodyKind} else getattr(self, key)


@dataclass(frozen=True)
class LlmSpec:
    """An llm job's chat completion, its fields as in `HttpSpec`."""

    model: Any
    prompt: Any = None
    system: Any = None
    messages: Any = None  # ((role, content), …)
    base_url: Any = None  # requests go to <base_url>/chat/completions; None: the secret OPENAI_BASE_URL, else OpenAI's
    api_key: Any = None  # None: the secret OPENAI_API_KEY
    temperature: Any = None
    max_tokens: Any = None
    json: Any = False
    timeout: Any = None
    cost_per_1k_tokens: Any = None
    locations: Mapping[str, Location] = field(default_factory=dict)

    def value(self, key: str) -> Any:
        return getattr(self, key)


def spec_templates(spec: HttpSpec | LlmSpec | None):
    if spec is not None:
        yield from templates_in([getattr(spec, f.name) for f in fields(spec) if f.name != "locations"])


@dataclass(frozen=True)
class Job:
    """A compiled job.  `container`, `http`, `llm` or `workflow` holds what it runs; a value job
    has none of them, its outputs are its result."""

    id: str
    name: str
    kind: JobKind
    needs: tuple[str, ...]
    condition: Template | None
    env: Mapping[str, Any]
    timeout: float | None
    retry: Retry
    continue_on_error: Any
    matrix: Any  # compiled matrix value, or None
    repeat: Mapping[str, Any] | None
    outputs: Mapping[str, Any]
    location: Location
    container: Container | None = None
    http: HttpSpec | None = None
    llm: LlmSpec | None = None
    workflow: "Workflow | None" = None  # what `uses` names, compiled
    given: Mapping[str, Any] = field(default_factory=dict)  # `with`: the inputs given to `workflow`
    cache: CachePolicy | None = None  # None: never cached

    def templates(self):
        """Every template of the job, its steps' included."""
        yield from templates_in([self.condition, self.env, self.matrix, self.repeat, self.outputs,
                                 self.continue_on_error, self.timeout, self.given])
        yield from spec_templates(self.http)
        yield from spec_templates(self.llm)
        if self.container is not None:
            yield from templates_in([self.container.image, self.container.working_dir])
            for service in self.container.services:
                yield from templates_in([service.image, service.command, service.env,
                                         service.healthcheck and service.healthcheck.run])
            for s in self.container.steps:
                yield from templates_in([s.run, s.env, s.condition, s.working_dir, s.continue_on_error])


@dataclass(frozen=True)
class InputSpec:
    """One of `inputs:`: a value a run is given, or takes by default."""

    name: str
    type: str
    default: Any = None
    required: bool = False
    enum: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""
    location: Location | None = None


@dataclass(frozen=True)
class Workflow:
    """A compiled workflow file: its settings, and its jobs with a topological order of them."""

    path: str  # as the user named it
    directory: str  # absolute: the file's directory (the run's workspace is the repository holding it)
    name: str
    description: str
    inputs: Mapping[str, InputSpec]
    secrets: Mapping[str, Location]  # name → where it is declared
    env: Mapping[str, Any]
    concurrency: int | None
    timeout: float | None
    fail_fast: bool
    jobs: Mapping[str, Job]
    outputs: Mapping[str, Any]
    order: tuple[str, ...]  # a topological order of the jobs
    dependents: Mapping[str, tuple[str, ...]]

    def workflows(self) -> list["Workflow"]:
        """This workflow and every one it uses, at any depth."""
        found = [self]
        for job in self.jobs.values():
            if job.workflow is not None:
                found.extend(job.workflow.workflows())
        return found

    def images(self) -> set[str]:
        """Images known before running (those not computed by an expression), sub-workflows' included."""
        return {
            image
            for workflow in self.workflows()
            for job in workflow.jobs.values()
            if job.container is not None
            for image in job.container.images()
        }


def frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))
