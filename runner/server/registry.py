"""The workflows a server runs: every workflow file under `--workflows DIR`, by its path relative to DIR.

They are validated when the server starts; a file with problems is listed
with them and not registered.  A registered file is loaded again when a run
starts, so that an edited file runs as it now is (and is checked again).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import Problem, Severity, WorkflowInvalid
from runner.model.workflow import Workflow

SUFFIXES = (".yml", ".yaml")
GRAPHS_KEPT = 100


def problem_json(p: Problem) -> dict[str, Any]:
    """A problem as the API reports it: located, with the CLI's message."""
    return {"file": p.location.file, "line": p.location.line, "col": p.location.col, "path": p.key_path,
            "message": p.message, "severity": p.severity.name.lower()}


def describe(workflow: Workflow) -> dict[str, Any]:
    """A workflow as `GET /workflows` lists it: its inputs and its jobs' graph."""
    return {
        "title": workflow.name,
        "description": workflow.description,
        "inputs": [
            {"name": s.name, "type": s.type, "default": s.default, "required": s.required and s.default is None,
             "description": s.description, **({"enum": list(s.enum)} if s.enum is not None else {})}
            for s in workflow.inputs.values()
        ],
        "jobs": [{"id": j.id, "name": j.name, "kind": j.kind.value, "needs": list(j.needs)} for j in workflow.jobs.values()],
    }


@dataclass
class Registry:
    directory: Path | None
    workflows: dict[str, str] = field(default_factory=dict)  # name → absolute path
    described: dict[str, dict[str, Any]] = field(default_factory=dict)
    invalid: dict[str, list[Problem]] = field(default_factory=dict)
    graphs: dict[tuple, list | None] = field(default_factory=dict)  # (path, mtime) → jobs of unregistered files
    loaded: dict[str, tuple[tuple, Workflow, str]] = field(default_factory=dict)  # name → (stamp, workflow, digest)
    names: dict[str, str | None] = field(default_factory=dict)  # a run's workflow path → its registered name

    @classmethod
    def scan(cls, directory: str | None) -> "Registry":
        from runner.load.files import looks_like_workflow
        from runner.load.workflow import load_workflow

        registry = cls(Path(directory).resolve() if directory else None)
        if registry.directory is None:
            return registry
        for path in sorted(registry.directory.rglob("*")):
            if path.suffix not in SUFFIXES or not path.is_file() or not looks_like_workflow(str(path)):
                continue
            name = path.relative_to(registry.directory).as_posix()
            try:
                workflow, _ = load_workflow(str(path))
            except WorkflowInvalid as e:
                registry.invalid[name] = [p for p in e.problems if p.severity is Severity.ERROR]
                continue
            registry.workflows[name] = str(path)
            registry.described[name] = describe(workflow)
        return registry

    def path(self, name: str) -> str | None:
        return self.workflows.get(name)

    def name_of(self, path: str) -> str | None:
        """The registered name of a workflow file, if it is one."""
        if self.directory is None:
            return None
        if path not in self.names:  # asked for each run the API shows: resolving each time costs syscalls
            if len(self.names) >= GRAPHS_KEPT:  # posted workflows each have a path of their own
                self.names.clear()
            self.names[path] = self._name_of(path)
        return self.names[path]

    def _name_of(self, path: str) -> str | None:
        try:
            name = Path(path).resolve().relative_to(self.directory).as_posix()
        except ValueError:
            return None
        return name if name in self.workflows else None

    def load(self, name: str) -> tuple[Workflow, str]:
        """The registered workflow as its file now is, and its digest; WorkflowInvalid if it no longer is valid."""
        from runner.load.workflow import content_hash, load_workflow

        known = self.loaded.get(name)
        if known is not None and known[0] == _stamp(known[1]):
            return known[1], known[2]  # no file of it changed: loading it again would give the same
        workflow, _ = load_workflow(self.workflows[name])
        self.described[name] = describe(workflow)
        self.loaded[name] = (_stamp(workflow), workflow, content_hash(workflow))
        return workflow, self.loaded[name][2]

    def graph(self, path: str) -> list[dict[str, Any]] | None:
        """The jobs and needs of any workflow file (a run's), if it can still be read."""
        name = self.name_of(path)
        if name is not None:
            return self.described[name]["jobs"]
        try:
            key = (path, os.stat(path).st_mtime_ns)
        except OSError:
            return None
        if key not in self.graphs:  # a big workflow takes a while to load: once per version of the file
            from runner.load.workflow import load_workflow

            try:
                self.graphs[key] = describe(load_workflow(path)[0])["jobs"]
            except WorkflowInvalid:
                self.graphs[key] = None
            while len(self.graphs) > GRAPHS_KEPT:
                del self.graphs[next(iter(self.graphs))]
        return self.graphs[key]


def _stamp(workflow: Workflow) -> tuple:
    """What changes when any file of the workflow (its own, or one it uses) is written."""
    stamp = []
    for path in sorted({w.path for w in workflow.workflows()}):
        try:
            info = os.stat(path)
        except OSError:
            return ()
        stamp.append((path, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(stamp)
