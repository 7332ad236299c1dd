"""Faults injected for real: containers killed or removed from outside, commands that cannot
run, output floods, an engine refused or gone mid-run, signals, a runner killed outright.

Each test runs `runner run` in a subprocess against the real Docker engine (or a
throwaway `dockerd` of its own), injects the fault the way it happens in life —
`docker kill`, a real signal to the real process, a daemon killed mid-step — and
checks what a user sees: the exit status, a message that names the cause, no
Python traceback, the secret nowhere, and no container left behind (the `docker`
fixture checks the last one after every test).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BUSYBOX, IMAGE_MAP, LABEL, ROOT, cli, state_of, write

BUSYBOX_IMAGE = '"alpine:3.20"'  # mapped to the local busybox image by IMAGE_MAP
# Longer than 40 characters, so that a message that shortens a value cannot show it whole.
SECRET = "tok-5e4d3c2b1a09f8e7-FAULT-SECRET-0123456789abcdefghij"
SECRET_PART = SECRET[:16]
SECRET_ENV = {"API_TOKEN": SECRET}
NOBODY = 65534


# -- running runner ------------------------------------------------------------------------


class Run:
    """`runner run` in the background, as a user starts it.

    Standard output and error go to files (a flood of output costs the test no
    memory); the end is collected with wait4, which also gives the process's
    peak resident memory.
    """

    def __init__(self, tmp_path: Path, workflow: Path, *args: str, env: dict | None = None,
                 docker_host: str | None = None, cwd: Path | None = None, command: list[str] | None = None,
                 preexec_fn=None):
        self.tmp_path = tmp_path
        self.out_json = tmp_path / "out.json"
        self.events_file = tmp_path / "events.jsonl"
        self.stdout_file = tmp_path / "stdout.txt"
        self.stderr_file = tmp_path / "stderr.txt"
        environment = {**os.environ, **(env or {})}
        if docker_host is not None:
            environment["DOCKER_HOST"] = docker_host
        argv = command or [sys.executable, "-m", "runner"]
        with open(self.stdout_file, "wb") as out, open(self.stderr_file, "wb") as err:
            self.proc = subprocess.Popen(
                [*argv, "run", str(workflow), *IMAGE_MAP, "--output-json", str(self.out_json),
                 "--events", str(self.events_file), *args],
                cwd=cwd or tmp_path, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=environment,
                preexec_fn=preexec_fn,
            )
        self.started = time.monotonic()
        self.ended: float | None = None
        self.returncode: int | None = None
        self.peak_rss: int | None = None  # bytes

    # -- while it runs

    @property
    def stdout(self) -> str:
        return self.stdout_file.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def alive(self) -> bool:
        return self._reap(block=False) is None

    def wait_for(self, text: str, timeout: float = 60) -> float:
        """Wait until stdout holds `text`; the time it was seen."""
        deadline = time.monotonic() + timeout
        while text not in self.stdout:
            assert self.alive(), f"runner ended before printing {text!r}:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"runner did not print {text!r} within {timeout}s:\n{self.output[-3000:]}"
            time.sleep(0.05)
        return time.monotonic()

    @property
    def run_id(self) -> str:
        self.wait_for("\n", timeout=60)
        match = re.match(r"run (\S+): ", self.stdout)
        assert match, self.stdout[:500]
        return match.group(1)

    def signal(self, signum: int) -> float:
        self.proc.send_signal(signum)
        return time.monotonic()

    # -- its end

    def _reap(self, block: bool) -> int | None:
        if self.returncode is not None:
            return self.returncode
        pid, status, usage = os.wait4(self.proc.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return None
        self.ended = time.monotonic()
        self.returncode = self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.peak_rss = usage.ru_maxrss * 1024
        return self.returncode

    def finish(self, timeout: float) -> int:
        """The exit status; fails the test (after killing runner) if it takes longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while self._reap(block=False) is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self._reap(block=True)
                pytest.fail(f"runner still running after {timeout}s (hung?); output:\n{self.output[-3000:]}")
            time.sleep(0.02)
        return self.returncode

    @property
    def summary(self) -> dict:
        assert self.out_json.exists(), f"no --output-json written; output:\n{self.output[-3000:]}"
        return json.loads(self.out_json.read_text())

    def everything_written(self) -> dict[str, bytes]:
        """Every place a secret could leak to: the streams, --output-json, --events, the state directory."""
        places = {"stdout": self.stdout_file.read_bytes(), "stderr": self.stderr_file.read_bytes()}
        for path in (self.out_json, self.events_file):
            if path.exists():
                places[path.name] = path.read_bytes()
        state = state_of(self.tmp_path)
        if state.exists():
            for path in sorted(state.rglob("*")):
                if path.is_file():
                    places[str(path.relative_to(state))] = path.read_bytes()
        return places

    def assert_secret_nowhere(self) -> None:
        for where, content in self.everything_written().items():
            assert SECRET_PART.encode() not in content, f"the secret leaked into {where}"

    def assert_no_traceback(self) -> None:
        stderr = self.stderr.splitlines()
        traceback = "Traceback" in self.output
        assert not traceback, (
            f"exit status {self.returncode}; stdout:\n{self.stdout[:3000]}\n"
            f"stderr ({len(stderr)} lines, the last 12):\n" + "\n".join(stderr[-12:])
        )


def containers(docker, run_id: str) -> list:
    """The run's containers still present on the engine."""
    return docker.api.containers(all=True, filters={"label": f"{LABEL}={run_id}"})


def job_container(docker, run_id: str, node: str, timeout: float = 30) -> str:
    """The running container of one node of the run, found by its labels."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            c["Id"] for c in containers(docker, run_id)
            if c["Labels"].get("dev.runner.node") == node and c["State"] == "running"
        ]
        if found:
            assert len(found) == 1, found
            return found[0]
        assert time.monotonic() < deadline, f"no running container labelled {LABEL}={run_id} for {node}"
        time.sleep(0.1)


def stop_from_outside(docker, container: str, fault: str) -> None:
    """What a user (or another tool) may do to a job's container: `docker kill`, `stop` or `rm -f`."""
    if fault == "kill":
        docker.api.kill(container)
    elif fault == "stop":
        docker.api.stop(container, timeout=1)
    else:
        docker.api.remove_container(container, force=True)


SECRET_JOB_ENV = '{TOKEN: "${{ secrets.API_TOKEN }}"}'


# -- a container killed, stopped or removed from outside --------------------------------------


@pytest.mark.parametrize("fault", ["kill", "stop", "rm -f"])
def test_container_gone_from_outside_mid_step_fails_the_job_saying_it_disappeared(docker, tmp_path, fault):
    workflow = write(tmp_path, f"""
        version: 1
        secrets: [API_TOKEN]
        jobs:
          victim:
            image: {BUSYBOX_IMAGE}
            env: {SECRET_JOB_ENV}
            steps:
              - id: nap
                run: echo "started with $TOKEN"; sleep 60
              - id: after
                run: echo "must not run"
          bystander:
            image: {BUSYBOX_IMAGE}
            run: echo "bystander ran"
    """)
    run = Run(tmp_path, workflow, env=SECRET_ENV)
    run_id = run.run_id
    run.wait_for("[victim/nap] started with ***")
    container = job_container(docker, run_id, "victim")
    injected = time.monotonic()
    stop_from_outside(docker, container, fault)
    returncode = run.finish(timeout=60)
    run.assert_no_traceback()
    assert returncode == 1, run.output
    assert run.ended - injected < 15, f"runner took {run.ended - injected:.1f}s to notice"
    run.assert_secret_nowhere()
    assert containers(docker, run_id) == []
    assert "must not run" not in run.output
    assert run.summary["jobs"]["bystander"]["result"] == "success"
    reason = run.summary["jobs"]["victim"]["reason"]
    assert reason.startswith("step `nap` failed: the container disappeared"), reason
    assert "the container disappeared" in run.stdout


@pytest.mark.parametrize("fault, reason", [
    ("kill", "step `nap` failed: exit code 137 (killed)"),
    ("stop", "step `nap` failed: exit code 143 (killed)"),
    ("rm -f", "step `nap` failed: the container disappeared: it was stopped or removed from outside runner"),
])
def test_one_step_job_stopped_from_outside_names_the_signal_or_the_removal(docker, tmp_path, fault, reason):
    # A one-step job's step is its container's own command: killing the container
    # kills the step, as a signal from inside would; a removal is told apart.
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          victim:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: nap
                run: echo "started"; sleep 60
    """)
    run = Run(tmp_path, workflow)
    run.wait_for("[victim/nap] started")
    container = job_container(docker, run.run_id, "victim")
    stop_from_outside(docker, container, fault)
    assert run.finish(timeout=60) == 1, run.output
    run.assert_no_traceback()
    assert run.summary["jobs"]["victim"]["reason"] == reason
    assert containers(docker, run.run_id) == []

# -- commands that cannot run --------------------------------------------------------------------


def test_exit_127_and_126_quote_the_last_output_lines(docker, tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          missing:
            steps:
              - id: call
                run: |
                  echo "preparing the build"
                  echo "about to call the tool"
                  no-such-tool --version
          not_executable:
            steps:
              - id: call
                run: |
                  printf 'echo hi\\n' > /tmp/script.sh
                  echo "script written"
                  /tmp/script.sh
    """)
    run = Run(tmp_path, workflow)
    assert run.finish(timeout=60) == 1, run.output

    def last_output(reason: str, hint: str) -> list[str]:
        prefix = f"step `call` failed: exit code {hint}; last output: "
        assert reason.startswith(prefix), reason
        # stdout and stderr are separate streams: their lines may come in either order.
        return sorted(reason[len(prefix):].split(" | "))

    missing = run.summary["jobs"]["missing"]["reason"]
    lines = last_output(missing, "127 (command not found)")
    assert "preparing the build" in lines and "about to call the tool" in lines, missing
    assert any("no-such-tool" in line and "not found" in line for line in lines), missing
    not_executable = run.summary["jobs"]["not_executable"]["reason"]
    lines = last_output(not_executable, "126 (permission denied or not executable)")
    assert "script written" in lines, not_executable
    assert any("/tmp/script.sh" in line and "Permission denied" in line for line in lines), not_executable
    for reason in (missing, not_executable):
        assert reason in run.stdout
    run.assert_no_traceback()


# -- output floods ---------------------------------------------------------------------------------

MAX_RSS = 300 * 2**20


def test_endless_output_is_stopped_by_the_step_timeout_with_memory_bounded(docker, tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          noisy:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: flood
                timeout: 3s
                run: yes
    """)
    run = Run(tmp_path, workflow)
    assert run.finish(timeout=60) == 1, run.output[-3000:]
    assert run.ended - run.started < 20, f"took {run.ended - run.started:.1f}s"
    assert run.peak_rss < MAX_RSS, f"runner's peak memory was {run.peak_rss / 2**20:.0f} MiB"
    assert run.summary["jobs"]["noisy"]["reason"] == "step `flood` timed out after 3s"
    assert "[noisy/flood] y\n" in run.stdout
    run.assert_no_traceback()


def test_newline_free_flood_is_cut_with_a_notice_and_memory_bounded(docker, tmp_path):
    # 300 MB without a newline: more than the 64 MiB runner keeps of one step's output.
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          noisy:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: flood
                run: head -c 300000000 /dev/zero | tr '\\0' a
              - id: after
                run: echo "the next step still runs"
    """)
    run = Run(tmp_path, workflow)
    assert run.finish(timeout=60) == 0, run.output[-3000:]
    assert run.ended - run.started < 20, f"took {run.ended - run.started:.1f}s"
    assert run.peak_rss < MAX_RSS, f"runner's peak memory was {run.peak_rss / 2**20:.0f} MiB"
    notice = re.compile(r"\[runner: output cut after 64 MiB; [\d,]+ more bytes not kept\]")
    assert notice.search(run.stdout), run.stdout[-500:]
    log_dir = state_of(tmp_path) / "runs" / run.summary["run_id"] / "logs" / "noisy"
    log = (log_dir / "flood.log").read_bytes()
    assert notice.search(log[-300:].decode()), log[-300:]
    assert len(log) < 70 * 2**20, f"the step's log holds {len(log):,} bytes"
    # Lines without a newline are cut at 64 Ki characters.
    assert max(len(line) for line in log.split(b"\n")) <= 64 * 1024
    assert "[noisy/after] the next step still runs" in run.stdout
    run.assert_no_traceback()


# -- the engine refused or missing -------------------------------------------------------------------


def _socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert host.startswith("unix://"), f"these tests need the engine on a unix socket, not {host}"
    return host[len("unix://"):]


def _unprivileged_python(lib: Path) -> tuple[list[str], dict[str, str]]:
    """A Python that uid 65534 may run, with runner and its dependencies importable.

    The checkout and its virtual environment may lie where only root can reach them
    (a clone in a private directory, a pyenv under /root): runner and the installed
    packages are linked or copied into `lib`, which everyone may read, and a Python
    of the same version that uid 65534 may run, runs them from there.
    """
    for site in dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]):
        shutil.copytree(site, lib, copy_function=_link_or_copy, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "__editable__*"))
    shutil.copytree(ROOT / "runner", lib / "runner", copy_function=_link_or_copy, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for directory, _, _ in os.walk(lib):
        os.chmod(directory, 0o755)
    env = {"PYTHONPATH": str(lib), "PYTHONDONTWRITEBYTECODE": "1"}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    tried = []
    candidates = [sys.executable, os.path.realpath(sys.executable), f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    for candidate in dict.fromkeys(candidates):
        if not os.path.exists(candidate):
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import runner, docker, trio, ruamel.yaml, jsonschema_rs"],
                env={**os.environ, **env}, capture_output=True, text=True, timeout=60, preexec_fn=_as_nobody,
            )
        except PermissionError as e:
            tried.append(f"{candidate}: {e}")
            continue
        if probe.returncode == 0:
            return [candidate, "-m", "runner"], env
        tried.append(f"{candidate}: {(probe.stderr.strip().splitlines() or ['exit ' + str(probe.returncode)])[-1]}")
    pytest.fail("no Python interpreter that uid 65534 can run with runner importable; tried:\n" + "\n".join(tried))


def _link_or_copy(source: str, target: str) -> None:
    """A hard link where everyone may read the file already (no copying 100 MB), else a readable copy."""
    if os.path.lexists(target):
        os.unlink(target)  # never write through a link to the installed file
    if os.stat(source).st_mode & stat.S_IROTH:
        try:
            return os.link(os.path.realpath(source), target)
        except OSError:  # another file system
            pass
    shutil.copy2(source, target)
    os.chmod(target, os.stat(target).st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_permission_denied_on_the_socket_exits_3_naming_the_socket(docker, tmp_path):
    sock = _socket_path()
    mode = os.stat(sock).st_mode
    assert not mode & (stat.S_IROTH | stat.S_IWOTH), (
        f"{sock} is usable by everyone (mode {stat.filemode(mode)}): this test needs the usual root:docker 660"
    )
    # pytest's own temporary directories are private to root: uid 65534 needs one it may enter.
    workspace = Path(tempfile.mkdtemp(prefix="runner-nobody-"))
    try:
        os.chmod(workspace, 0o777)
        command, env = _unprivileged_python(workspace / "lib")
        home = workspace / "home"
        home.mkdir(mode=0o777)
        os.chmod(home, 0o777)
        workflow = write(workspace, f"""
            version: 1
            jobs:
              ok:
                image: {BUSYBOX_IMAGE}
                run: touch /workspace/ran
        """)
        os.chmod(workflow, 0o644)
        done = subprocess.run(
            [*command, "run", str(workflow), *IMAGE_MAP], cwd=workspace, capture_output=True, text=True, timeout=120,
            env={**os.environ, **env, "HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "DOCKER_HOST": f"unix://{sock}"}, preexec_fn=_as_nobody,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 3, output
        assert "Traceback" not in output, output
        assert sock in done.stderr, f"the message does not name the socket {sock}:\n{done.stderr}"
        assert "permission denied" in done.stderr.lower(), done.stderr
        assert not (workspace / "ran").exists()
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def test_docker_host_naming_a_missing_socket_exits_3_naming_it(docker, tmp_path):
    missing = tmp_path / "no-engine-here" / "docker.sock"
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          ok:
            image: {BUSYBOX_IMAGE}
            run: touch /workspace/ran
    """)
    done = cli("run", workflow, *IMAGE_MAP, cwd=tmp_path, env={"DOCKER_HOST": f"unix://{missing}"})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert str(missing) in done.stderr, f"the message does not name the socket {missing}:\n{done.stderr}"
    assert not (tmp_path / "ran").exists()


# -- the engine going away mid-run ------------------------------------------------------------------


class ThrowawayEngine:
    """A second `dockerd` on its own socket, data and exec directories, in its own network namespace.

    Its own network namespace matters: a dockerd started with `--bridge none`
    deletes the host's `docker0` interface, which the real engine needs.
    """

    def __init__(self, root: Path):
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if shutil.which("dockerd") is None or shutil.which("unshare") is None:
            pytest.fail("a throwaway engine needs `dockerd` and `unshare` on PATH")
        log = open(self.root / "dockerd.log", "ab")
        self.proc = subprocess.Popen(
            ["unshare", "--net", "dockerd", "--host", self.host, "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "docker.pid"),
             "--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "dockerd.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"a second dockerd cannot run here (exit {self.proc.poll()}):\n{tail}")
            time.sleep(0.2)

    def _answers(self) -> bool:
        return subprocess.run(["docker", "-H", self.host, "version"], capture_output=True).returncode == 0

    def load(self, image: str) -> None:
        saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        loaded = subprocess.run(["docker", "-H", self.host, "load"], stdin=saved.stdout, capture_output=True, text=True)
        saved.stdout.close()
        assert saved.wait() == 0 and loaded.returncode == 0, loaded.stderr

    def stop(self, signum: int) -> None:
        self.proc.send_signal(signum)
        self.proc.wait(timeout=60)

    def cleanup(self) -> None:
        """Whatever happened: no daemon, no container process, no mount and no directory left."""
        if self.proc is not None and self.proc.poll() is None:
            ids = subprocess.run(["docker", "-H", self.host, "ps", "-aq"], capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "-H", self.host, "rm", "-f", *ids], capture_output=True, timeout=60)
            try:
                self.stop(signal.SIGTERM)
            except subprocess.TimeoutExpired:
                self.stop(signal.SIGKILL)
        # A killed daemon leaves its containerd shims and their containers running: end them by
        # name (the shims name this directory) and by cgroup (each container's is named by its id).
        containers = self.root / "data" / "containers"
        ids = [p.name for p in containers.iterdir()] if containers.is_dir() else []
        for _ in range(2):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    cgroups = Path(f"/proc/{pid}/cgroup").read_text()
                except OSError:
                    continue
                if str(self.root).encode() in cmdline or any(i in cgroups for i in ids):
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            time.sleep(0.2)
        for container in ids:
            for directory in Path("/sys/fs/cgroup").glob(f"*/docker/{container}"):
                try:
                    directory.rmdir()
                except OSError:
                    pass
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f]
        for mount in sorted((m for m in mounts if m.startswith(str(self.root))), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def throwaway_engine():
    root = Path(tempfile.mkdtemp(prefix="rt-dockerd-"))  # short: the socket path has a length limit
    engine = ThrowawayEngine(root)
    try:
        engine.start()
        engine.load(BUSYBOX)
        yield engine
    finally:
        engine.cleanup()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_engine_gone_mid_step_ends_the_run_promptly_with_a_clear_message(docker, tmp_path, throwaway_engine, signum):
    workflow = write(tmp_path, f"""
        version: 1
        secrets: [API_TOKEN]
        jobs:
          sleepy:
            image: {BUSYBOX_IMAGE}
            network: none
            env: {SECRET_JOB_ENV}
            steps:
              - id: nap
                run: echo "started with $TOKEN"; sleep 30
    """)
    run = Run(tmp_path, workflow, env=SECRET_ENV, docker_host=throwaway_engine.host)
    run.wait_for("[sleepy/nap] started with ***")
    gone = time.monotonic()
    throwaway_engine.stop(signum)
    returncode = run.finish(timeout=60)
    assert run.ended - gone < 30, f"runner took {run.ended - gone:.1f}s to end after the engine went away"
    run.assert_no_traceback()
    assert returncode in (1, 3), run.output
    assert re.search(r"docker engine|docker\.sock", run.output, re.IGNORECASE), (
        f"nothing says the engine went away:\n{run.output}"
    )
    run.assert_secret_nowhere()


# -- signals ---------------------------------------------------------------------------------------

CANCELLED_WITH_CLEANUP = f"""
    version: 1
    secrets: [API_TOKEN]
    defaults: {{image: {BUSYBOX_IMAGE}}}
    jobs:
      sleeper:
        env: {SECRET_JOB_ENV}
        run: echo "started with $TOKEN"; sleep 60
      cleanup:
        needs: sleeper
        if: always()
        env: {SECRET_JOB_ENV}
        run: |
          echo "cleanup started with $TOKEN"
          sleep 30
          echo "cleanup finished"
"""


def test_github_cancel_sequence_runs_cleanup_under_the_grace_and_exits_130_within_10s(docker, tmp_path):
    """GitHub cancels a job with SIGINT, then SIGTERM 7.5 s later, then SIGKILL at 10 s."""
    workflow = write(tmp_path, CANCELLED_WITH_CLEANUP)
    run = Run(tmp_path, workflow, env=SECRET_ENV)
    run_id = run.run_id
    run.wait_for("[sleeper/1] started with ***")
    interrupted = run.signal(signal.SIGINT)
    cleanup_seen = None
    terminated = False
    while run.alive():
        now = time.monotonic()
        if cleanup_seen is None and "[cleanup/1] cleanup started with ***" in run.stdout:
            cleanup_seen = now
        if not terminated and now - interrupted >= 7.5:
            run.signal(signal.SIGTERM)
            terminated = True
        if now - interrupted > 10:
            run.proc.kill()  # what GitHub does at 10 s
            run.finish(timeout=30)
            pytest.fail(f"runner was still running 10 s after SIGINT:\n{run.output[-3000:]}")
        time.sleep(0.02)
    assert run.returncode == 130, run.output
    assert run.ended - interrupted < 10
    assert "[cleanup/1] cleanup started with ***" in run.stdout, run.output  # the cleanup job did start
    assert "cleanup finished" not in run.output  # and was cut by the grace
    summary = run.summary
    assert summary["status"] == "cancelled"
    assert summary["jobs"]["sleeper"]["result"] == "cancelled"
    assert summary["jobs"]["cleanup"]["result"] == "cancelled", summary["jobs"]["cleanup"]
    run.assert_no_traceback()
    run.assert_secret_nowhere()
    assert containers(docker, run_id) == []


def test_second_sigint_stops_everything_at_once_with_130(docker, tmp_path):
    workflow = write(tmp_path, CANCELLED_WITH_CLEANUP)
    run = Run(tmp_path, workflow, env=SECRET_ENV)
    run_id = run.run_id
    run.wait_for("[sleeper/1] started with ***")
    first = run.signal(signal.SIGINT)
    time.sleep(0.3)
    run.signal(signal.SIGINT)
    assert run.finish(timeout=30) == 130, run.output
    assert run.ended - first < 3, f"runner took {run.ended - first:.1f}s after the second SIGINT"
    assert "cleanup finished" not in run.output
    assert run.summary["status"] == "cancelled"
    run.assert_no_traceback()
    run.assert_secret_nowhere()
    assert containers(docker, run_id) == []


# -- a runner killed outright ------------------------------------------------------------------------


def test_a_later_run_reaps_the_containers_of_a_sigkilled_runner(docker, tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        concurrency: 2
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          one:
            run: echo started; sleep 60
          two:
            run: echo started; sleep 60
    """, name="killed.yml")
    run = Run(tmp_path, workflow)
    run_id = run.run_id
    run.wait_for("[one/1] started")
    run.wait_for("[two/1] started")
    run.signal(signal.SIGKILL)
    assert run.finish(timeout=30) == -signal.SIGKILL
    left = containers(docker, run_id)
    assert len(left) == 2, left  # SIGKILL leaves them: nothing can run in a killed process
    for container in left:
        assert container["Labels"][LABEL] == run_id
        assert container["Labels"]["dev.runner.owner"] == f"{socket.gethostname()}:{run.proc.pid}"
    later = write(tmp_path, f"""
        version: 1
        jobs:
          quick:
            image: {BUSYBOX_IMAGE}
            run: echo "a later run"
    """, name="later.yml")
    done = cli("run", later, *IMAGE_MAP, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert containers(docker, run_id) == [], "the later run did not reap the killed run's containers"


# -- secrets in what the engine keeps ------------------------------------------------------------------


def test_secret_is_not_in_container_labels_config_or_command_lines(docker, tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        secrets: [API_TOKEN]
        jobs:
          holder:
            image: {BUSYBOX_IMAGE}
            env: {SECRET_JOB_ENV}
            steps:
              - id: wait
                env: {{COPY: "${{{{ secrets.API_TOKEN }}}}"}}
                run: |
                  echo "holding ${{{{ secrets.API_TOKEN }}}} and $COPY"
                  while [ ! -e /workspace/go ]; do sleep 0.1; done
                  echo "released"
    """)
    run = Run(tmp_path, workflow, env=SECRET_ENV)
    run_id = run.run_id
    run.wait_for("[holder/wait] holding *** and ***")
    container = job_container(docker, run_id, "holder")
    inspected = docker.api.inspect_container(container)
    for key in ("Labels", "Cmd", "Entrypoint", "Env", "WorkingDir", "User"):
        assert SECRET_PART not in json.dumps(inspected["Config"].get(key)), f"the secret is in Config.{key}"
    assert SECRET_PART not in json.dumps(inspected), "the secret is in `docker inspect` of the container"
    assert inspected["ExecIDs"], "the step runs as an exec: its command line is there to check"
    for exec_id in inspected["ExecIDs"]:
        process = docker.api.exec_inspect(exec_id)["ProcessConfig"]
        assert SECRET_PART not in json.dumps(process), f"the secret is in the command line of exec {exec_id}"
    inside = docker.api.exec_create(
        container, ["sh", "-c", "ps -o args; for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done; cat /runner/*"],
    )
    seen = docker.api.exec_start(inside["Id"]).decode(errors="replace")
    assert "sleep" in seen, seen  # the probe saw the step's processes
    assert SECRET_PART not in seen, f"the secret is in a command line or script in the container:\n{seen}"
    (tmp_path / "go").touch()
    assert run.finish(timeout=60) == 0, run.output
    assert "[holder/wait] released" in run.stdout
    run.assert_no_traceback()
    run.assert_secret_nowhere()
    assert containers(docker, run_id) == []
