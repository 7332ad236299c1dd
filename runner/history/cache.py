"""Caching container jobs: a successful result is reused while everything it depends on is unchanged.

The key is a SHA-256 over what the job's result can depend on, computed once
the node's scope is known (after rendering):

- the image's content digest (its id), never its tag;
- each step's id, shell and rendered `run`, `env`, `if`, `working_dir` and
  `continue_on_error`, and the job's `outputs`, `repeat`, `user`, `network` and
  `working_dir`.  An expression that refers to what only the run can know
  (`steps`, `outputs`, `repeat`, the status functions) counts by its source;
  every other one by its value;
- the job's environment (the workflow's and the job's `env`, rendered);
- the outputs and results of the jobs it refers to (`jobs.<id>`), and its
  matrix values;
- the content of the files its `cache_files` globs match, and its
  `cache_outputs` globs.

Secret values are replaced by their names before hashing, so rotating a secret
does not invalidate entries and no secret reaches the key.

An entry holds the job's outputs and, when `cache_outputs` is given, a tar
archive of the matching files, restored into the workspace on a hit.  Only a
succeeded node writes an entry, and only when its outputs hold no secret.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import os
import sqlite3
import stat
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping

import trio

from runner.masking import Masker
from runner.model.workflow import Job
from runner.history.store import Store, dumps, loads
from runner.expr.templates import CONDITION_FUNCTIONS, Template, TemplateError, names_in

CACHE_VERSION = 1
# Roots whose values exist only while the job runs: such expressions count by their source.
DYNAMIC = frozenset({"steps", "outputs", "response", "repeat", *CONDITION_FUNCTIONS})
ARCHIVES = "cache"  # under the state directory


@dataclass(frozen=True)
class Hit:
    run_id: str
    node: str
    outputs: Any


class Cache:
    def __init__(
        self,
        store: Store,
        run_id: str,
        secrets: Mapping[str, str],
        masker: Masker,
        *,
        read: bool = True,
        digest: Callable[[Job, Mapping[str, Any]], Awaitable[str]] | None = None,
    ):
        self.store = store
        self.run_id = run_id
        self.read = read  # False with --no-cache: every job runs, and refreshes its entry
        self.digest = digest
        self.masker = masker  # the run's: it knows the values computed from secrets too
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted(((v, k) for k, v in secrets.items() if v), key=lambda p: -len(p[0]))
        self._refs: dict[int, set] = {}

    # -- the key -------------------------------------------------------------

    async def key(self, job: Job, scope: Mapping[str, Any], workspace: Path) -> str | None:
        """The node's key; None when it cannot be computed (the job then runs, uncached, and
        fails by itself if its image cannot be had)."""
        from runner.backends.base import BackendError

        try:
            return await self._key(job, scope, workspace)
        except (TemplateError, BackendError, OSError):
            return None

    async def _key(self, job: Job, scope: Mapping[str, Any], workspace: Path) -> str:
        c = job.container
        fp = lambda value: fingerprint(value, scope)  # noqa: E731
        material = {
            "version": CACHE_VERSION,
            "image": await self.digest(job, scope) if self.digest else fp(c.image),
            "user": c.user,
            "network": c.network,
            "capabilities": [sorted(c.capabilities.add), sorted(c.capabilities.drop)],
            "services": [
                [s.name, fp(s.image), fp(s.command), fp(s.env), fp(s.healthcheck and s.healthcheck.run)]
                for s in c.services
            ],
            "working_dir": fp(c.working_dir),
            "env": scope.get("env", {}),
            "matrix": scope.get("matrix", {}),
            "steps": [
                {
                    "id": s.id, "shell": s.shell, "run": fp(s.run), "env": fp(s.env), "if": fp(s.condition),
                    "working_dir": fp(s.working_dir), "continue_on_error": fp(s.continue_on_error),
                }
                for s in c.steps
            ],
            "outputs": fp(job.outputs),
            "repeat": fp(job.repeat),
            "jobs": self._upstream(job, scope.get("jobs", {})),
            "files": files_digest(workspace, job.cache.files),
            "cache_outputs": list(job.cache.outputs),
        }
        return hashlib.sha256(dumps(self._unsecret(material)).encode()).hexdigest()

    def _upstream(self, job: Job, jobs: Mapping[str, Any]) -> dict[str, Any]:
        """The outputs and results of the jobs this one refers to."""
        refs = self._refs.get(id(job))
        if refs is None:
            refs = self._refs[id(job)] = names_in(list(job.templates()))
        if ("jobs", None) in refs:
            return dict(jobs)
        return {key: jobs.get(key) for root, key in sorted(refs, key=str) if root == "jobs"}

    def _unsecret(self, value: Any) -> Any:
        if not self.secrets:
            return value
        if isinstance(value, str):
            for secret, name in self.secrets:
                value = value.replace(secret, "${{ secrets.%s }}" % name)
            return value
        if isinstance(value, dict):
            return {self._unsecret(str(k)): self._unsecret(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._unsecret(v) for v in value]
        return value

    # -- entries -------------------------------------------------------------

    async def lookup(self, key: str, workspace: Path) -> Hit | None:
        """The entry for `key`, its files restored into the workspace; None on a miss."""
        if not self.read:
            return None
        try:
            entry = self.store.cache_get(key, time.time())
        except sqlite3.Error:
            return None  # the store is unreadable just now: run the job
        if entry is None:
            return None
        if entry["archive"]:
            archive = self.store.directory / entry["archive"]
            try:
                restored = await trio.to_thread.run_sync(restore, archive, entry["digest"], workspace)
            except (OSError, tarfile.TarError):
                return None  # the archive is gone or damaged: run the job
            if not restored:
                if entry["digest"]:  # else an entry of an older runner, which recorded none
                    print(f"runner: warning: the cache archive {archive} does not match the digest recorded "
                          f"with it: not restored, the job runs", file=sys.stderr)
                return None
        return Hit(entry["run_id"], entry["node"], loads(entry["outputs"]))

    async def save(self, key: str, job: Job, node: str, outputs: Any, workspace: Path) -> str:
        """Write the entry of a succeeded node; what was not stored and why, or ""."""
        if self.masker and self.masker.value(outputs, numbers=True) != outputs:
            return "not cached: its outputs hold a secret's value, which is never stored"
        try:
            archive, digest = await trio.to_thread.run_sync(self._pack, key, job, workspace)
        except OSError as e:
            return f"not cached: cannot archive its cache_outputs: {e.strerror or e}"
        expires = time.time() + job.cache.ttl if job.cache.ttl is not None else None
        try:
            self.store.cache_put(key, self.run_id, node, outputs, archive, digest, expires)
        except sqlite3.Error as e:
            return f"not cached: cannot write the entry: {e}"
        return ""

    def _pack(self, key: str, job: Job, workspace: Path) -> tuple[str | None, str | None]:
        """Archive the files of `cache_outputs`: the archive's name and sha256 (blocking: runs in a worker thread)."""
        if not job.cache.outputs:
            return None, None
        directory = self.store.directory / ARCHIVES
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{ARCHIVES}/{key}.tar.gz"
        partial = directory / f"{key}.tar.gz.{os.getpid()}.part"
        try:
            with tarfile.open(partial, "w:gz") as archive:
                for relative in matching_files(workspace, job.cache.outputs, self.store.directory):
                    archive.add(workspace / relative, arcname=relative, recursive=False)
            with open(partial, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            os.replace(partial, self.store.directory / name)
        finally:
            partial.unlink(missing_ok=True)
        return name, digest


def fingerprint(value: Any, scope: Mapping[str, Any]) -> Any:
    """A compiled value with each expression replaced by its value, or by its source when it
    refers to what exists only while the job runs."""
    if isinstance(value, Template):
        parts = []
        for part in value.parts:
            if isinstance(part, str):
                parts.append(part)
            elif any(root in DYNAMIC for root, _ in part.refs):
                parts.append({"source": part.source})
            else:
                try:
                    parts.append({"value": part.evaluate(scope)})
                except TemplateError as e:
                    parts.append({"source": part.source, "error": str(e)})
        return parts
    if isinstance(value, Mapping):
        return {str(k): fingerprint(v, scope) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fingerprint(v, scope) for v in value]
    return value


def matching_files(workspace: Path, patterns: Iterable[str], exclude: Path | None = None) -> list[str]:
    """Files (relative to the workspace) matched by the globs; a matched directory gives every file in it."""
    found: set[str] = set()
    excluded = os.path.realpath(exclude) if exclude is not None else None
    for pattern in patterns:
        for match in glob.glob(pattern, root_dir=workspace, recursive=True, include_hidden=True):
            path = workspace / match
            if path.is_dir() and not path.is_symlink():
                for root, dirs, files in os.walk(path):
                    if excluded and os.path.realpath(root).startswith(excluded):
                        dirs[:] = []
                        continue
                    found.update(os.path.relpath(os.path.join(root, f), workspace) for f in files)
            elif path.is_file():
                found.add(os.path.normpath(match))
    if excluded:
        found = {f for f in found if not os.path.realpath(workspace / f).startswith(excluded + os.sep)}
    return sorted(found)


def files_digest(workspace: Path, patterns: Iterable[str]) -> dict[str, Any]:
    """Each pattern's matching files and a digest of each one's content."""
    digests: dict[str, Any] = {}
    for pattern in patterns:
        entry = {}
        for relative in matching_files(workspace, [pattern]):
            h = hashlib.sha256()
            with open(workspace / relative, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            entry[relative] = h.hexdigest()
        digests[pattern] = entry
    return digests


def restore(archive: Path, digest: str | None, workspace: Path) -> bool:
    """Unpack an entry's files into the workspace if the archive's sha256 is `digest`; whether it was.

    The file is checked and unpacked through one descriptor, so what is unpacked is what was
    checked.  The `data` filter refuses any path that would leave the workspace (absolute
    paths, `..`, links pointing out)."""
    with open(archive, "rb") as f:
        if digest is None or hashlib.file_digest(f, "sha256").hexdigest() != digest:
            return False
        f.seek(0)
        with tarfile.open(fileobj=f, mode="r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(workspace, filter="data")
            else:  # extraction filters arrived in Python 3.11.4; Debian bookworm has 3.11.2
                extract_checked(tar, workspace)
    return True


def extract_checked(tar: tarfile.TarFile, workspace: Path) -> None:
    """What `extractall(workspace, filter="data")` does, for Pythons without it: only files,
    directories and links, each resolving inside the workspace (following the links already
    there), owned by us, without setuid, setgid or sticky bits or write access for others."""
    root = os.path.realpath(workspace)

    def check_inside(path: str, member: tarfile.TarInfo, what: str) -> None:
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise tarfile.TarError(f"{member.name}: {what} would be outside {workspace}")

    for member in tar.getmembers():
        name = member.name
        if name.startswith("/") or ".." in name.split("/"):
            raise tarfile.TarError(f"{name}: an absolute path or `..` in an archive member")
        target = os.path.join(root, name)
        check_inside(target, member, "the path")
        if member.issym() or member.islnk():
            if member.linkname.startswith("/"):
                raise tarfile.TarError(f"{name}: a link to an absolute path ({member.linkname})")
            base = os.path.dirname(target) if member.issym() else root
            check_inside(os.path.join(base, member.linkname), member, "the link's target")
        elif not (member.isreg() or member.isdir()):
            raise tarfile.TarError(f"{name}: a device or pipe in an archive")
        safe = copy.copy(member)
        safe.uid, safe.gid, safe.uname, safe.gname = os.geteuid(), os.getegid(), "", ""
        safe.mode = member.mode & 0o755 | (0o700 if member.isdir() else 0o600)
        if not safe.mode & stat.S_IXUSR:
            safe.mode &= ~(stat.S_IXGRP | stat.S_IXOTH)
        tar.extract(safe, root)
