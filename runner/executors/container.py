"""Container jobs: one container per node, each step run in it in turn with exec.

The node's own scratch directory is mounted at /runner: scripts are written there
and the files a step writes to pass things on (`$RUNNER_OUTPUT`, `$RUNNER_ENV`,
`$RUNNER_PATH`, `$RUNNER_STEP_SUMMARY`, also named by their GitHub Actions names)
are read back from there, so a step costs one exec and no file copies; the
directory goes with the container.  The run's workspace is mounted at /workspace.

A job of one step runs that step as the container's own command instead (create,
start, wait, remove: no idle process, no exec, nothing to kill), unless its
environment carries a secret, which must not be written into the container's
configuration, it has a working directory of its own, or a failed container is
to be kept for debugging.  A container is created when the job's first step runs.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from secrets import token_hex
from typing import Any, Mapping

import trio

from runner.backends.base import DEFAULT_PIDS, DISAPPEARED, KEPT_PREFIX, ON_NODE, Backend, BackendError, ContainerSpec
from runner.model import fields
from runner.model.durations import format_duration
from runner.model.fields import FieldError
from runner.masking import Masker
from runner.model.results import Result
from runner.model.workflow import Step
from runner.model.results import file_name
from runner.expr.templates import TemplateError, render_value, to_text
from runner.executors import Executor, NodeRun, Outcome
from runner.executors.commandfiles import CommandFileError, parse, paths
from runner.executors.lines import Lines
from runner.executors.scripts import ScriptError, command, render, suffix
from runner.executors.sandbox import HOME, capabilities, job_user
from runner.executors.services import ServiceFailed, Services

WORKSPACE = "/workspace"
RUNNER_DIR = "/runner"
EXIT_HINTS = {126: "permission denied or not executable", 127: "command not found"}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the engine's, for images that set none
# A step's files: (suffix, runner's variable, GitHub Actions' variable for the same file).
STEP_FILES = (
    ("out", "RUNNER_OUTPUT", "GITHUB_OUTPUT"),
    ("env", "RUNNER_ENV", "GITHUB_ENV"),
    ("path", "RUNNER_PATH", "GITHUB_PATH"),
    ("summary", "RUNNER_STEP_SUMMARY", "GITHUB_STEP_SUMMARY"),
)


@dataclass
class StepRun:
    """What the steps of one node have done so far."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # from $RUNNER_ENV
    path: list[str] = field(default_factory=list)  # from $RUNNER_PATH, the latest first
    failed: bool = False
    reason: str = ""
    tolerated: list[str] = field(default_factory=list)  # failures that continue_on_error let pass
    exit_code: int | None = None
    step_exit: int | None = None  # the current step's exit code, once its command has exited


class ContainerExecutor(Executor):
    def __init__(
        self,
        backend: Backend,
        run_id: str,
        image_map: Mapping[str, str] | None = None,
        keep_on_failure: bool = False,
        masker: Masker | None = None,
        removals: trio.Nursery | None = None,
        private: tuple[Path, ...] = (),
    ):
        self.backend = backend
        self.run_id = run_id
        self.image_map = dict(image_map or {})
        self.keep_on_failure = keep_on_failure
        self.masker = masker  # knows the secrets, those computed from them included
        self.removals = removals  # where removals run in the background, when the run provides one
        self.kept: dict[str, str] = {}  # name → id of containers kept for debugging
        # Host directories no job may see (runner's state): hidden where they lie in the workspace.
        self.private = private

    async def aclose(self) -> None:
        self.backend.close()

    def image_for(self, image: str) -> str:
        """The image to run for `image`: an exact `--image-map` entry, else one for its repository (every tag)."""
        if image in self.image_map:
            return self.image_map[image]
        return self.image_map.get(repository(image), image)

    async def image_digest(self, job, scope: Mapping[str, Any]) -> str:
        """The content digest of the image the job runs in (for cache keys); TemplateError or BackendError."""
        image = self.image_for(to_text(render_value(job.container.image, scope)))
        await self.backend.ensure_image(image)
        return await self.backend.digest(image)

    async def discard(self, name: str) -> None:
        """Remove a kept container after all (its job is tried again)."""
        container = self.kept.pop(name, None)
        if container is not None:
            with trio.CancelScope(shield=True):
                await self.backend.remove(container)

    async def run(self, node: NodeRun) -> Outcome:
        """Run the node's steps in a fresh container, removed whatever happens (cancellation included)."""
        spec = node.job.container
        # Each container has its own scratch directory and name: the previous
        # attempt's may still be being removed when a retry starts.
        node = replace(node, directory=node.directory.with_name(f"{node.directory.name}-{token_hex(3)}"))
        try:
            image = self.image_for(to_text(fields.render(spec.image, node.scope, "image")))
            working_dir = _in_workspace(to_text(fields.render(spec.working_dir, node.scope, "working_dir") or ""))
            resources = fields.resources(spec.resources, node.scope)
        except FieldError as e:
            return Outcome(Result.FAILURE, str(e))
        if spec.services and not self.backend.supports_services:
            return Outcome(Result.FAILURE, "this job has `services:`, which the container backend in use cannot run")
        node.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(node.directory, 0o777)  # the job's user may not be root
        user = job_user(spec.user, node.workspace)
        if user != spec.user:
            # A user the image may have no account for, whose home would be /.
            node = replace(node, env={"HOME": HOME, **node.env})
        name = f"runner-{self.run_id}-{node.directory.name}"[:120]
        labels = {
            "dev.runner.run-id": self.run_id,
            "dev.runner.node": node.node_id,
            "dev.runner.workspace": str(node.workspace),
        }
        services = Services(self.backend, name, labels, self.masker) if spec.services else None
        pinned, hidden = _private(node.workspace, self.private)
        container_spec = ContainerSpec(
            image=image,
            name=name,
            labels=labels,
            mounts=((str(node.workspace), WORKSPACE), (str(node.directory), RUNNER_DIR), *pinned),
            hidden=hidden,
            working_dir=working_dir,
            network=name if services else spec.network,
            cpus=resources.cpus,
            memory=resources.memory,
            pids=resources.pids or DEFAULT_PIDS,
            user=user,
            capabilities=capabilities(spec.capabilities),
            placement=spec.placement,
        )
        box = _Container(self.backend, container_spec)
        kept = None
        try:
            await self.backend.ensure_image(image)
            if services is not None:
                await services.start(spec.services, node.scope, self.image_for, container_spec.capabilities)
            outcome = await self._steps(node, box)
            if outcome.result is Result.FAILURE and self.keep_on_failure and box.id is not None:
                outcome.kept = kept = await self._keep(box.id, node)
            return outcome
        except (BackendError, ServiceFailed) as e:
            return Outcome(Result.FAILURE, str(e))
        finally:
            # A container kept for debugging stays; its services and network go.
            container, directory = (box.id, node.directory) if kept is None else (None, None)
            if self.removals is not None:
                # The job's result and its concurrency slot need not wait for the
                # engine to tear the container down; the run waits for it at its end.
                self.removals.start_soon(self._remove, container, directory, services)
            else:
                await self._remove(container, directory, services)

    async def _remove(self, container: str | None, directory: Path | None, services: Services | None = None) -> None:
        """Remove the container, its services and its scratch directory; not cancellable."""
        # Scripts and output files may hold values pasted with `| raw` or
        # written by steps, secrets among them: nothing of them is kept
        # (but for a container kept for debugging, which has them at /runner).
        with trio.CancelScope(shield=True):
            if container is not None and directory is not None:
                # Removing a file takes milliseconds while the engine tears a container down,
                # so the files go first; what the job's processes write meanwhile goes after.
                shutil.rmtree(directory, ignore_errors=True)
            if container is not None:
                await self.backend.remove(container)
            if services is not None:
                await services.remove()
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)

    async def _keep(self, container: str, node: NodeRun) -> str | None:
        """Leave a failed job's container running, renamed so that no reaper takes it."""
        name = f"{KEPT_PREFIX}{self.run_id}-{file_name(node.node_id)}"[:120]
        with trio.CancelScope(shield=True):
            try:
                if not await self.backend.keep(container, name):
                    return None
            except BackendError:
                return None  # gone already (stopped from outside): nothing to keep
            placed = await self.backend.placed(container)
        if placed is not None:  # the name the engine gave it there, and the machine
            name = ON_NODE.join(placed)
        self.kept[name] = container
        return name

    async def _steps(self, node: NodeRun, box: _Container) -> Outcome:
        done = StepRun()
        for step in node.job.container.steps:
            status = {
                "success": lambda: not done.failed,
                "failure": lambda: done.failed,
                "always": lambda: True,
                "cancelled": lambda: False,
            }
            scope = {**node.scope, "steps": done.results, **status}
            try:
                runs = step.condition.render(scope) if step.condition else not done.failed
            except TemplateError as e:
                runs = False
                done.failed, done.reason = True, f"step `{step.label}`: {fields.located(step.condition, f'if: {e}')}"
            if not runs:
                self._record(done, step, Result.SKIPPED, {})
                continue
            timed_out = False
            try:
                timeout = fields.duration(step.timeout, scope)
            except FieldError as e:
                result, outputs, reason = Result.FAILURE, {}, str(e)
            else:
                done.step_exit = None
                node.step_started(step.label)
                with trio.move_on_after(timeout if timeout is not None else float("inf")) as deadline:
                    result, outputs, reason = await self._step(node, box, step, scope, done)
                if deadline.cancelled_caught:
                    timed_out = True
                    result, outputs = Result.FAILURE, {}
                    reason = f"step `{step.label}` timed out after {format_duration(timeout)}"
                node.step_finished(step.label, result, None if timed_out else done.step_exit)
            self._record(done, step, result, outputs)
            if result is Result.FAILURE and _truthy(step.continue_on_error, scope):
                # Tolerated, and still visible: in the step's log and the node's reason.
                node.log(step.label, "stderr", f"continuing after a failure (continue_on_error): {reason}")
                done.tolerated.append(f"{reason} (continue_on_error)")
            elif result is Result.FAILURE:
                done.failed = True
                done.reason = done.reason or reason
            if timed_out:
                # The step's processes may still hold the container: end the job here.
                break
        return Outcome(
            Result.FAILURE if done.failed else Result.SUCCESS,
            done.reason if done.failed else "; ".join(done.tolerated),
            scope={"steps": done.results},
            exit_code=done.exit_code,
        )

    @staticmethod
    def _record(done: StepRun, step: Step, result: Result, outputs: dict) -> None:
        if step.id:
            done.results[step.id] = {"outputs": outputs, "result": result.value}

    async def _step(self, node, box: _Container, step, scope, done) -> tuple[Result, dict, str]:
        number = step.index + 1
        try:
            try:
                script, variables = render(step.run, step.shell, scope)
            except (TemplateError, ScriptError) as e:
                raise FieldError(fields.located(step.run, f"run: {e}")) from None
            step_env = fields.text_mapping(step.env, scope, "env")
            workdir = to_text(fields.render(step.working_dir, scope, "working_dir") or "")
            workdir = _in_workspace(workdir, box.spec.working_dir)
        except FieldError as e:
            return Result.FAILURE, {}, f"step `{step.label}`: {e}"
        if workdir != box.spec.working_dir and not _may_exist(workdir, node.workspace):
            return Result.FAILURE, {}, f"step `{step.label}`: working_dir {workdir} does not exist"
        script_name = f"step-{number}{suffix(step.shell)}"
        try:
            for name, content in ((script_name, script), *((f"{number}.{ext}", "") for ext, _, _ in STEP_FILES)):
                _write_new(node.directory / name, content)
        except OSError as e:
            return Result.FAILURE, {}, f"step `{step.label}`: cannot write its files in {RUNNER_DIR}: {e.strerror or e}"
        env = {**node.env, **done.env, **step_env, **variables, "CI": "true"}
        if node.traceparent is not None:
            env["TRACEPARENT"] = node.traceparent(step.label)
        if done.path:
            base = env.get("PATH") or await self._image_path(box.spec.image)
            env["PATH"] = ":".join([*done.path, base])
        # The GitHub Actions names too, set here whatever runner's own environment
        # holds: under GitHub Actions those name the host's files, not the step's.
        for ext, *names in STEP_FILES:
            env.update(dict.fromkeys(names, f"{RUNNER_DIR}/{number}.{ext}"))
        env.update({
            "RUNNER_WORKSPACE": WORKSPACE,
            "GITHUB_WORKSPACE": WORKSPACE,
            "RUNNER_RUN_ID": self.run_id,
            "RUNNER_JOB": node.job.id,
        })
        lines = Lines(lambda stream, line: node.log(step.label, stream, line), self.masker)
        argv = command(step.shell, f"{RUNNER_DIR}/{script_name}")
        # The only step may be its container's own command where nothing it can see
        # changes: a secret must stay out of the container's configuration, the
        # engine would create a missing working directory that exec refuses, and a
        # container kept for debugging must outlive its command.
        secret = self.masker is not None and any(self.masker.text(value) != value for value in env.values())
        as_command = (
            len(node.job.container.steps) == 1
            and not self.keep_on_failure
            and not secret
            and workdir == box.spec.working_dir
        )
        try:
            exit_code = await box.execute(argv, env, workdir, lines.feed, as_command)
        except BackendError as e:
            return Result.FAILURE, {}, f"step `{step.label}` failed: {e}"
        finally:
            lines.flush()
        done.step_exit = exit_code
        last = lines.last
        try:
            outputs = parse(_read(node.directory / f"{number}.out"), "$RUNNER_OUTPUT")
            done.env.update(parse(_read(node.directory / f"{number}.env"), "$RUNNER_ENV"))
        except CommandFileError as e:
            return Result.FAILURE, {}, f"step `{step.label}`: {e}"
        done.path[:0] = reversed(paths(_read(node.directory / f"{number}.path")))
        summary = _read(node.directory / f"{number}.summary")
        if summary.strip():
            node.summary(summary)
        if exit_code == 0:
            return Result.SUCCESS, outputs, ""
        done.exit_code = exit_code
        if exit_code in EXIT_HINTS and _missing_program(argv[0], last):
            hint = "use an image that has it" if step.shell == "sh" else "use `shell: sh` or an image that has it"
            return Result.FAILURE, outputs, f"step `{step.label}`: `{argv[0]}` is not in image {box.spec.image}; {hint}"
        reason = await self._explain(exit_code, box, last)
        return Result.FAILURE, outputs, f"step `{step.label}` failed: {reason}"

    async def _image_path(self, image: str) -> str:
        """The PATH the image gives its processes, which a step's own PATH replaces."""
        return await self.backend.image_path(image) or DEFAULT_PATH

    async def _explain(self, exit_code: int, box: _Container, last) -> str:
        text = f"exit code {exit_code}"
        if exit_code in EXIT_HINTS:
            text += f" ({EXIT_HINTS[exit_code]})"
            if last:
                text += "; last output: " + " | ".join(last)
            return text
        if exit_code in (137, 143, -1):
            if exit_code == 137 and box.spec.memory and await self.backend.out_of_memory(box.id):
                return f"out of memory (limit {_mib(box.spec.memory)})"
            # A container that ran the step as its command has ended with it anyway.
            if box.spec.command is None and not await self.backend.running(box.id):
                return DISAPPEARED
            return f"{text} (killed)"
        return text


class _Container:
    """A node's container, created when its first step runs (a job whose steps are all skipped needs none)."""

    def __init__(self, backend: Backend, spec: ContainerSpec):
        self.backend = backend
        self.spec = spec
        self.id: str | None = None

    async def execute(self, argv: list[str], env: Mapping[str, str], workdir: str, output, as_command: bool) -> int:
        """Run a step's command, streaming its output; its exit code (-1 if the call was cancelled).

        `as_command`: the step is the job's only one, and the container may run it as its own command.
        """
        if self.id is None:
            if as_command:
                self.spec = replace(self.spec, command=tuple(argv), env=dict(env), working_dir=workdir)
                self.id = await self.backend.create(self.spec)
                return await self.backend.run(self.id, output)
            self.id = await self.backend.start(self.spec)
        return await self.backend.exec(self.id, argv, env, workdir, self.spec.user, output)


def _truthy(value: Any, scope: Mapping[str, Any]) -> bool:
    try:
        return bool(render_value(value, scope))
    except TemplateError:
        return False


def _in_workspace(path: str, base: str = WORKSPACE) -> str:
    if not path:
        return base
    return posixpath.normpath(posixpath.join(base, path))


def _private(workspace: Path, private: tuple[Path, ...]) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The mounts that keep private directories inside the workspace from jobs (real paths
    compared, so that one reached through a symbolic link is found too): each is covered by an
    empty read-only directory, and each directory between it and the workspace is mounted onto
    itself, since a job can rename or remove a directory but not a mount point."""
    root = os.path.realpath(workspace)
    pinned: dict[str, str] = {}
    hidden = []
    for directory in private:
        relative = os.path.relpath(os.path.realpath(directory), root)
        if relative == ".." or relative.startswith("../"):
            continue
        parts = relative.split(os.sep)
        for n in range(1, len(parts)):
            pinned[os.path.join(root, *parts[:n])] = posixpath.join(WORKSPACE, *parts[:n])
        hidden.append(posixpath.join(WORKSPACE, *parts))
    return tuple(pinned.items()), tuple(hidden)


def _may_exist(directory: str, workspace: Path) -> bool:
    """False if `directory` is in the mounted workspace and not there; outside it, only the container knows."""
    if directory != WORKSPACE and not directory.startswith(WORKSPACE + "/"):
        return True
    return (workspace / directory[len(WORKSPACE):].lstrip("/")).is_dir()


# The scratch directory lies in runner's state directory and the job may write in it: runner
# never follows a link the job left there, nor blocks on a pipe.
def _write_new(path: Path, content: str) -> None:
    """`content` in a new file at `path`, replacing whatever the job put there."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    with open(fd, "w", encoding="utf-8") as f:
        os.fchmod(fd, 0o666)  # the job's user may not be root
        f.write(content)


def _read(path: Path) -> str:
    """A regular file's text; "" for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return f.read().decode("utf-8", errors="replace")


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB"


def repository(image: str) -> str:
    """`alpine` for `alpine:3.20`, `alpine@sha256:…` and `alpine`; a registry's port is not a tag."""
    name = image.split("@", 1)[0]
    head, sep, tag = name.rpartition(":")
    return head if sep and "/" not in tag else name


def _missing_program(program: str, last) -> bool:
    """Whether a step's command could not start because `program` is not in the image:
    the engine says so for an exec, the container's init for its own command."""
    quoted = re.escape(program)
    pattern = re.compile(rf'exec: "{quoted}": executable file not found|exec {quoted} failed: No such file or directory')
    return any(pattern.search(line) for line in last)
