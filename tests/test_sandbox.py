"""What a job's processes may do: their capabilities and the user they run as, against the real engine."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import IMAGE_MAP, cli, write
from test_docker import BUSYBOX_IMAGE, PYTHON_IMAGE, run
from test_faults import _socket_path, _unprivileged_python

# Linux capability numbers (linux/capability.h), for decoding /proc/self/status.
CAPABILITIES = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT "
    "SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE "
    "AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ "
    "PERFMON BPF CHECKPOINT_RESTORE"
).split()
DEFAULT = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"}
PROBE = """
  grep '^CapEff:' /proc/self/status | cut -f2
  if ping -c1 -W2 127.0.0.1 >/dev/null 2>&1; then echo ping=yes; else echo ping=no; fi
"""


def decode(hex_mask: str) -> set[str]:
    mask = int(hex_mask, 16)
    return {name for bit, name in enumerate(CAPABILITIES) if mask & (1 << bit)}


def probe_job(job_id: str, capabilities: str = "") -> str:
    return f"""
          {job_id}:
            {capabilities}
            run: |
              {PROBE.strip().replace(chr(10), chr(10) + ' ' * 14)}
"""


def test_jobs_keep_only_the_capabilities_a_build_needs_and_may_add_or_drop(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          {probe_job("plain")}
          {probe_job("pinger", "capabilities: {add: [NET_RAW]}")}
          {probe_job("fewer", "capabilities: {drop: [CHOWN, KILL]}")}
          {probe_job("none", "capabilities: {drop: [ALL]}")}
          {probe_job("only", "capabilities: {drop: [ALL], add: [NET_RAW]}")}
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    seen = {job: (decode(result.lines(job, "1")[0]), result.lines(job, "1")[1]) for job in
            ("plain", "pinger", "fewer", "none", "only")}
    assert seen["plain"] == (DEFAULT, "ping=no")
    assert seen["pinger"] == (DEFAULT | {"NET_RAW"}, "ping=yes")
    assert seen["fewer"] == (DEFAULT - {"CHOWN", "KILL"}, "ping=no")
    assert seen["none"] == (set(), "ping=no")
    assert seen["only"] == ({"NET_RAW"}, "ping=yes")


def test_apt_and_pip_install_local_packages_with_the_default_capabilities(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          install:
            image: {PYTHON_IMAGE}
            steps:
              - name: a local .deb through apt, which drops to _apt to fetch it
                run: |
                  cd /tmp && mkdir -p pkg/DEBIAN pkg/usr/share/hello-runner
                  echo hi > pkg/usr/share/hello-runner/hi.txt
                  printf 'Package: hello-runner\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: t <t@example.com>\\nDescription: t\\n' > pkg/DEBIAN/control
                  dpkg-deb --build pkg hello.deb > /dev/null
                  apt-get install -y ./hello.deb 2>&1 | grep -E '^(W|E):' || true
                  dpkg -s hello-runner | grep '^Status'
              - name: a local source tree through pip
                run: |
                  cd /tmp && mkdir -p src/hello_runner && echo 'X = 1' > src/hello_runner/__init__.py
                  printf '[project]\\nname = "hello-runner"\\nversion = "1.0"\\n[build-system]\\nrequires = []\\nbuild-backend = "setuptools.build_meta"\\n' > src/pyproject.toml
                  pip install --no-index --no-build-isolation ./src > /dev/null 2>&1
                  cd / && python -c 'import hello_runner; print("imported", hello_runner.X)'
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    # No warning either: apt could chown its directories and drop to _apt.
    assert result.lines("install", "1") == ["Status: install ok installed"]
    assert result.lines("install", "2") == ["imported 1"]


@pytest.mark.parametrize("value, message, line", [
    ("{add: [NET_RAWW]}", "did you mean `NET_RAW`?", 4),
    ("{add: [ALL]}", "ALL", 4),
    ("{drop: [CAP_CHOWN]}", "did you mean `CHOWN`?", 4),
    ("{remove: [CHOWN]}", "unknown key `remove`", 4),
])
def test_unknown_capability_is_a_located_error(tmp_path, value, message, line):
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          build:
            capabilities: {value}
            image: {BUSYBOX_IMAGE}
            run: "true"
    """)
    done = cli("validate", workflow)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"workflow.yml:{line}:" in done.stdout + done.stderr
    assert message in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


# -- whose files a job writes -----------------------------------------------------------------------

WRITER = f"""
    version: 1
    jobs:
      write:
        image: {BUSYBOX_IMAGE}
        run: |
          echo made > /workspace/made.txt
          mkdir -p /workspace/out && touch /workspace/out/inner
          echo "home=$HOME"
          touch "$HOME/.writable" && echo home-writable
"""


def test_files_a_job_writes_belong_to_the_user_running_runner(docker):
    """runner run by an ordinary user (one allowed on the engine's socket): the job's files are that user's."""
    sock = _socket_path()
    workspace = Path(tempfile.mkdtemp(prefix="runner-user-"))
    socket_group = os.stat(sock).st_gid
    try:
        os.chmod(workspace, 0o755)  # uid 65534 reaches the interpreter's packages below it
        command, env = _unprivileged_python(workspace / "lib")
        home = workspace / "home"
        home.mkdir()
        write(workspace, WRITER + f"""
      as_root:
        image: {BUSYBOX_IMAGE}
        user: 0
        run: id -u
""")
        for path in (workspace, home, workspace / "workflow.yml"):
            os.chown(path, 65534, 65534)

        def as_nobody_on_the_socket() -> None:
            os.setgroups([socket_group])
            os.setgid(65534)
            os.setuid(65534)

        done = subprocess.run(
            [*command, "run", "workflow.yml", *IMAGE_MAP], cwd=workspace, capture_output=True, text=True,
            timeout=120, env={**os.environ, **env, "HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "DOCKER_HOST": f"unix://{sock}"},
            preexec_fn=as_nobody_on_the_socket,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        for made in ("made.txt", "out", "out/inner"):
            owner = os.stat(workspace / made)
            assert (owner.st_uid, owner.st_gid) == (65534, 65534), f"{made} is owned by {owner.st_uid}:{owner.st_gid}"
        # uid 65534 may have no home in the image: HOME is a directory it can write.
        assert "[write/1] home=/tmp" in done.stdout, output
        assert "[write/1] home-writable" in done.stdout, output
        assert "[as_root/1] 0" in done.stdout, output  # a job may still ask for the image's root
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def test_user_host_runs_the_job_as_the_workspaces_owner(docker, tmp_path):
    write(tmp_path, WRITER.replace("image:", "user: host\n        image:"))
    os.chown(tmp_path, 1234, 2345)
    os.chmod(tmp_path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    done = cli("run", "workflow.yml", *IMAGE_MAP, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    owner = os.stat(tmp_path / "made.txt")
    assert (owner.st_uid, owner.st_gid) == (1234, 2345)
    assert "[write/1] home-writable" in done.stdout


def test_runner_as_root_leaves_the_images_user(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          who:
            image: {BUSYBOX_IMAGE}
            run: id -u
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.lines("who", "1") == ["0"]
