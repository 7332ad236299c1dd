"""`cache:` on container jobs: a hit skips the container and restores outputs (and declared files);
any change to what the job depends on is a miss.  Against the real engine."""

from __future__ import annotations

import io
import json
import hashlib
import os
import re
import sqlite3
import stat
import tarfile
import time
from pathlib import Path

import pytest

from conftest import BUSYBOX, IMAGE_MAP, PYTHON, cli, state_of, write
from runner.history.cache import extract_checked, restore
from test_schema import problems
from watch import created  # noqa: F401  (a fixture)

BUSYBOX_IMAGE = '"alpine:3.20"'

WORKFLOW = f"""
    version: 1
    inputs:
      who: {{type: string, default: world}}
    defaults: {{image: {BUSYBOX_IMAGE}}}
    jobs:
      prep:
        steps:
          - id: s
            run: echo "version=$(cat /workspace/VERSION)" >> "$RUNNER_OUTPUT"
        outputs: {{version: '${{{{ steps.s.outputs.version }}}}'}}
      build:
        needs: prep
        cache: true
        cache_files: ["src/**"]
        steps:
          - id: s
            run: |
              echo "building ${{{{ jobs.prep.outputs.version }}}} for ${{{{ inputs.who }}}}"
              echo "digest=$(cat src/*.txt | md5sum | cut -c1-8)" >> "$RUNNER_OUTPUT"
        outputs: {{digest: '${{{{ steps.s.outputs.digest }}}}'}}
"""


def run(tmp_path: Path, *args: str, env: dict | None = None) -> dict:
    out = tmp_path / "out.json"
    out.unlink(missing_ok=True)
    done = cli("run", tmp_path / "workflow.yml", *IMAGE_MAP, "--output-json", out, *args, cwd=tmp_path, env=env)
    assert out.exists(), done.stdout + done.stderr
    summary = json.loads(out.read_text())
    summary["stdout"] = done.stdout
    summary["returncode"] = done.returncode
    return summary


def cached(summary: dict, job: str = "build") -> str | None:
    return summary["jobs"][job].get("cached_from")


@pytest.fixture
def project(tmp_path):
    write(tmp_path, WORKFLOW)
    (tmp_path / "VERSION").write_text("1.0")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("alpha\n")
    return tmp_path


def test_a_hit_skips_the_container_and_restores_outputs(docker, created, project):
    first = run(project)
    assert first["status"] == "success" and cached(first) is None
    began = time.time()
    second = run(project)
    assert cached(second) == first["run_id"]
    assert second["jobs"]["build"]["outputs"] == first["jobs"]["build"]["outputs"]
    assert second["jobs"]["build"]["reason"] == f"cached (from run {first['run_id']})"
    assert re.search(rf"^build +success +0s +0 +cached \(from run {first['run_id']}\)$", second["stdout"], re.M)
    assert created(second["run_id"], began) == ["prep"]  # no container for the cached job
    no_cache = run(project, "--no-cache")
    assert cached(no_cache) is None and "[build/s] building" in no_cache["stdout"]
    # --no-cache refreshed the entry: the next hit names that run.
    assert cached(run(project)) == no_cache["run_id"]


@pytest.mark.parametrize("change", ["script", "input", "cache_files", "upstream", "image"])
def test_a_change_to_what_the_job_depends_on_is_a_miss(docker, project, change):
    first = run(project)
    assert cached(run(project)) == first["run_id"]
    args: list[str] = []
    if change == "script":
        path = project / "workflow.yml"
        path.write_text(path.read_text().replace("building", "compiling"))
    elif change == "input":
        args = ["--input", "who=you"]
    elif change == "cache_files":
        (project / "src" / "a.txt").write_text("beta\n")
    elif change == "upstream":
        (project / "VERSION").write_text("2.0")
    elif change == "image":  # another image under the same name: its digest differs
        args = ["--image-map", f"alpine:3.20={PYTHON}"]
    changed = run(project, *args)
    assert changed["status"] == "success"
    assert cached(changed) is None, change
    assert "[build/s] building" in changed["stdout"] or "[build/s] compiling" in changed["stdout"]
    assert cached(run(project, *args)) == changed["run_id"]  # and the new result is cached in turn


def test_the_key_uses_the_image_digest_not_its_tag(docker, project):
    first = run(project)
    # Another name for the same image: the same content, so the same key.
    docker.images.get(BUSYBOX).tag("runner-test/busybox", "other-tag")
    try:
        again = run(project, "--image-map", "alpine:3.20=runner-test/busybox:other-tag")
    finally:
        docker.images.remove("runner-test/busybox:other-tag")
    assert cached(again) == first["run_id"]


def test_a_job_that_writes_files_declares_them_in_cache_outputs(docker, tmp_path):
    write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          declared:
            cache: true
            cache_outputs: ["dist/**"]
            run: mkdir -p dist/sub && echo built > dist/out.txt && echo deep > dist/sub/more.txt
          undeclared:
            cache: true
            run: mkdir -p other && echo built > other/out.txt
    """)
    first = run(tmp_path)
    assert first["status"] == "success"
    for directory in ("dist", "other"):
        for path in sorted((tmp_path / directory).rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (tmp_path / directory).rmdir()
    second = run(tmp_path)
    assert cached(second, "declared") == first["run_id"] and cached(second, "undeclared") == first["run_id"]
    # Declared files come back with the hit ...
    assert (tmp_path / "dist" / "out.txt").read_text() == "built\n"
    assert (tmp_path / "dist" / "sub" / "more.txt").read_text() == "deep\n"
    # ... files the job wrote without declaring them do not: the trap the docs describe.
    assert not (tmp_path / "other").exists()


def test_a_failed_job_writes_no_entry_and_entries_expire(docker, tmp_path):
    write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          flaky:
            cache: true
            run: test -f /workspace/ok
          brief:
            cache: {{ttl: 8s}}
            run: echo brief
    """)
    first = run(tmp_path)
    first_ended = time.monotonic()
    assert first["jobs"]["flaky"]["result"] == "failure"
    entries = sqlite3.connect(state_of(tmp_path) / "state.db").execute("SELECT node FROM cache").fetchall()
    assert entries == [("brief",)]  # the failed job wrote none
    (tmp_path / "ok").write_text("")
    second = run(tmp_path)
    assert second["status"] == "success" and cached(second, "flaky") is None
    assert cached(second, "brief") == first["run_id"]
    time.sleep(max(0.0, first_ended + 8.5 - time.monotonic()))
    third = run(tmp_path)
    assert cached(third, "flaky") == second["run_id"] and cached(third, "brief") is None  # expired
    gc = cli("runs", "gc", "--keep", "10", cwd=tmp_path)
    assert gc.returncode == 0, gc.stderr


def test_outputs_holding_a_secret_are_never_cached(docker, tmp_path):
    write(tmp_path, f"""
        version: 1
        secrets: [TOKEN]
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          leaky:
            cache: true
            steps:
              - id: s
                run: echo "v=${{{{ secrets.TOKEN }}}}" >> "$RUNNER_OUTPUT"
            outputs: {{v: '${{{{ steps.s.outputs.v }}}}'}}
          clean:
            cache: true
            env: {{TOKEN: '${{{{ secrets.TOKEN }}}}'}}
            run: echo uses the secret but outputs nothing of it
    """)
    env = {"TOKEN": "very-secret-value"}
    first = run(tmp_path, env=env)
    assert first["status"] == "success"
    assert "not cached: its outputs hold a secret's value" in first["stdout"]
    # The key holds the secret's name, not its value: a new value is still a hit.
    second = run(tmp_path, env={"TOKEN": "rotated-secret-value"})
    assert cached(second, "leaky") is None and cached(second, "clean") == first["run_id"]
    for path in state_of(tmp_path).rglob("*"):
        if path.is_file():
            assert b"very-secret-value" not in path.read_bytes(), path


def test_cache_keys_in_the_schema_and_compiler(tmp_path):
    assert problems("""
        version: 1
        defaults: {image: x, cache: {ttl: 7d}}
        jobs:
          a: {run: echo, cache: true, cache_files: [src/**], cache_outputs: [dist]}
          b: {run: echo, cache: false}
    """) == []
    assert "`cache` is true, false, or {ttl: DURATION}" in problems(
        "version: 1\njobs:\n  a: {run: echo, image: x, cache: {ttl: 5 days}}\n")[0].message
    path = write(tmp_path, """
        version: 1
        defaults: {image: x}
        jobs:
          value: {outputs: {x: 1}, cache: true}
          escape: {run: echo, cache: true, cache_files: [../secrets]}
          useless: {run: echo, cache_outputs: [dist]}
    """)
    done = cli("validate", path)
    assert done.returncode == 2
    assert "`cache` applies to container jobs only (jobs.value.cache)" in done.stderr
    assert "`../secrets` must be a glob inside the workspace" in done.stderr
    assert "warning: `cache_outputs` has no effect without `cache: true`" in done.stderr


# -- restoring an archive: never outside the workspace ---------------------------------------------


def _archive(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


# Both ways of unpacking: the standard library's `data` filter where this Python has it
# (3.11.4 and later), and runner's own checks, which Pythons before it use.
def _restored(archive: Path, workspace: Path) -> None:
    assert restore(archive, hashlib.sha256(archive.read_bytes()).hexdigest(), workspace)


def _checked(archive: Path, workspace: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        extract_checked(tar, workspace)


UNPACKERS = {"restore": _restored, "checked": _checked}


@pytest.mark.parametrize("unpack", UNPACKERS.values(), ids=UNPACKERS.keys())
def test_an_archive_restores_files_links_and_modes(tmp_path, unpack):
    archive = _archive(
        tmp_path / "ok.tar.gz",
        (_member("dist/app", mode=0o4755), b"#!/bin/sh\necho hi\n"),
        (_member("dist/notes.txt", mode=0o666), b"notes\n"),
        (_member("dist/latest", tarfile.SYMTYPE, "app"), None),
        (_member("dist/copy", tarfile.LNKTYPE, "dist/notes.txt"), None),
    )
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    unpack(archive, workspace)
    dist = workspace / "dist"
    assert (dist / "app").read_text() == "#!/bin/sh\necho hi\n" and (dist / "copy").read_text() == "notes\n"
    assert os.readlink(dist / "latest") == "app"
    # No setuid bit and no write access for others, as with the `data` filter.
    assert stat.S_IMODE((dist / "app").stat().st_mode) == 0o755
    assert stat.S_IMODE((dist / "notes.txt").stat().st_mode) == 0o644
    assert (dist / "app").stat().st_uid == os.geteuid()


HOSTILE = {
    "absolute path": [(_member("/outside/evil"), b"x")],
    "dot-dot": [(_member("../outside/evil"), b"x")],
    "symlink out": [(_member("link", tarfile.SYMTYPE, "../outside"), None), (_member("link/evil"), b"x")],
    "absolute symlink": [(_member("link", tarfile.SYMTYPE, "/"), None)],
    "symlink out through a symlink": [
        (_member("here", tarfile.SYMTYPE, "."), None),
        (_member("up", tarfile.SYMTYPE, "here/.."), None),
        (_member("up/outside/evil"), b"x"),
    ],
    "hard link out": [(_member("hard", tarfile.LNKTYPE, "../outside/secret"), None)],
    "device": [(_member("null", tarfile.CHRTYPE), None)],
    "fifo": [(_member("pipe", tarfile.FIFOTYPE), None)],
}


@pytest.mark.parametrize("unpack", UNPACKERS.values(), ids=UNPACKERS.keys())
@pytest.mark.parametrize("case", HOSTILE.keys())
def test_a_hostile_archive_writes_nothing_outside_the_workspace(tmp_path, unpack, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret\n")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    archive = _archive(tmp_path / "hostile.tar.gz", *HOSTILE[case])
    try:
        unpack(archive, workspace)
    except tarfile.TarError:
        pass  # refused: the cache counts it as a miss and runs the job
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert not (workspace / "null").exists() and not (workspace / "pipe").exists()
    assert not [p for p in workspace.rglob("*") if p.is_symlink() and not p.resolve().is_relative_to(workspace.resolve())]
    if unpack is _checked:
        with pytest.raises(tarfile.TarError):
            unpack(archive, tmp_path / "again")
