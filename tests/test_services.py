"""`services:` of container jobs: sidecar containers on a network of the job's own, against the real engine."""

from __future__ import annotations

import signal
import textwrap
import time

from conftest import IMAGE_MAP, LABEL, cli, write
from test_docker import BUSYBOX_IMAGE, run
from test_faults import SECRET, SECRET_ENV, Run, containers
from test_sandbox import DEFAULT, decode

# busybox's httpd serves /www; the page says what the service's processes may do.
WEB = f"""
web:
  image: {BUSYBOX_IMAGE}
  env: {{GREETING: hello from web}}
  command:
    - sh
    - -c
    - |
      mkdir -p /www
      echo "$GREETING" > /www/index.html
      grep -E '^(CapEff|NoNewPrivs):' /proc/self/status | tr -d ' \\t' > /www/status
      exec httpd -f -p 8080 -h /www
  healthcheck:
    run: wget -qO- http://127.0.0.1:8080/ > /dev/null
    interval: 0.2s
    timeout: 30s
"""


def web(indent: int) -> str:
    """The web service, for a workflow at `indent` spaces, `services:` one level above."""
    return textwrap.indent(WEB.strip(), " " * indent)


def networks(docker, run_id: str) -> list:
    return docker.api.networks(filters={"label": f"{LABEL}={run_id}"})


def test_job_reaches_its_service_by_name_and_everything_is_removed(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          client:
            image: {BUSYBOX_IMAGE}
            services:
{web(14)}
            steps:
              - run: wget -qO- http://web:8080/
              - run: wget -qO- http://web:8080/status
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.lines("client", "1") == ["hello from web"]
    status = dict(line.split(":", 1) for line in result.lines("client", "2"))
    assert status["NoNewPrivs"] == "1"
    assert decode(status["CapEff"]) == DEFAULT
    run_id = result.summary["run_id"]
    assert containers(docker, run_id) == []
    assert networks(docker, run_id) == []


def test_one_step_job_with_a_service_and_a_service_without_healthcheck(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          client:
            image: {BUSYBOX_IMAGE}
            services:
              echo:
                image: {BUSYBOX_IMAGE}
                command: nc -ll -p 7000 -e echo pong
            run: |
              for i in $(seq 50); do nc -w 1 echo 7000 < /dev/null 2>/dev/null && break; sleep 0.1; done
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.lines("client", "1") == ["pong"]


def test_unhealthy_service_fails_the_job_with_its_name_and_last_log_lines(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        secrets: [API_TOKEN]
        jobs:
          client:
            image: {BUSYBOX_IMAGE}
            services:
              db:
                image: {BUSYBOX_IMAGE}
                env: {{TOKEN: "${{{{ secrets.API_TOKEN }}}}"}}
                command: ["sh", "-c", "echo starting with $TOKEN; echo cannot open /data: no such directory; sleep 60"]
                healthcheck: {{run: "nc -w 1 127.0.0.1 5432 < /dev/null", interval: 0.2s, timeout: 2s}}
            run: echo "the steps ran"
    """, env=SECRET_ENV)
    assert result.returncode == 1, result.stdout + result.stderr
    reason = result.job("client")["reason"]
    assert "service `db` is not healthy" in reason, reason
    assert "cannot open /data: no such directory" in reason, reason
    assert "starting with ***" in reason, reason
    assert "the steps ran" not in result.stdout
    for text in (result.stdout, result.stderr, result.events_text):
        assert SECRET not in text
    run_id = result.summary["run_id"]
    assert containers(docker, run_id) == []
    assert networks(docker, run_id) == []


def test_service_that_exits_fails_the_job_at_once_saying_so(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          client:
            image: {BUSYBOX_IMAGE}
            services:
              db:
                image: {BUSYBOX_IMAGE}
                command: ["sh", "-c", "echo bad configuration; exit 3"]
                healthcheck: {{run: "true", interval: 1s, timeout: 60s}}
            run: echo "the steps ran"
    """)
    assert result.returncode == 1, result.stdout + result.stderr
    reason = result.job("client")["reason"]
    assert "service `db` stopped" in reason and "bad configuration" in reason, reason
    assert result.elapsed < 30


def test_failed_and_timed_out_jobs_remove_their_services_and_network(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          failing:
            services:
{web(14)}
            run: exit 4
          slow:
            timeout: 3s
            services:
{web(14)}
            run: sleep 60
    """)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.job("failing")["result"] == "failure"
    assert "timed out" in result.job("slow")["reason"]
    run_id = result.summary["run_id"]
    assert containers(docker, run_id) == []
    assert networks(docker, run_id) == []


SLEEPER = f"""
    version: 1
    jobs:
      sleeper:
        image: {BUSYBOX_IMAGE}
        services:
{web(10)}
        run: echo started; sleep 60
"""


def test_ctrl_c_removes_the_services_and_the_network(docker, tmp_path):
    run_ = Run(tmp_path, write(tmp_path, SLEEPER))
    run_id = run_.run_id
    run_.wait_for("[sleeper/1] started")
    assert len(containers(docker, run_id)) == 2 and len(networks(docker, run_id)) == 1
    run_.signal(signal.SIGINT)
    assert run_.finish(timeout=30) == 130, run_.output
    run_.assert_no_traceback()
    assert containers(docker, run_id) == []
    assert networks(docker, run_id) == []


def test_ctrl_c_while_waiting_for_a_healthcheck_removes_the_service_and_the_network(docker, tmp_path):
    run_ = Run(tmp_path, write(tmp_path, f"""
        version: 1
        jobs:
          client:
            image: {BUSYBOX_IMAGE}
            services:
              db:
                image: {BUSYBOX_IMAGE}
                command: sleep 600
                healthcheck: {{run: "false", interval: 0.2s, timeout: 5m}}
            run: echo "the steps ran"
    """))
    run_id = run_.run_id
    deadline = time.monotonic() + 60
    while not (containers(docker, run_id) and networks(docker, run_id)):
        assert time.monotonic() < deadline and run_.alive(), run_.output
        time.sleep(0.1)
    run_.signal(signal.SIGINT)
    assert run_.finish(timeout=30) == 130, run_.output
    run_.assert_no_traceback()
    assert "the steps ran" not in run_.output
    assert containers(docker, run_id) == []
    assert networks(docker, run_id) == []


def test_a_later_run_reaps_the_services_and_network_of_a_sigkilled_runner(docker, tmp_path):
    run_ = Run(tmp_path, write(tmp_path, SLEEPER))
    run_id = run_.run_id
    run_.wait_for("[sleeper/1] started")
    run_.signal(signal.SIGKILL)
    run_.finish(timeout=30)
    assert len(containers(docker, run_id)) == 2 and len(networks(docker, run_id)) == 1
    later = write(tmp_path, f"""
        version: 1
        jobs:
          quick:
            image: {BUSYBOX_IMAGE}
            run: "true"
    """, name="later.yml")
    done = cli("run", later, *IMAGE_MAP, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert containers(docker, run_id) == []
    assert networks(docker, run_id) == [], "the later run did not reap the killed run's network"


def test_services_need_a_network(tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          offline:
            image: {BUSYBOX_IMAGE}
            network: none
            services:
              db: {{image: {BUSYBOX_IMAGE}}}
            run: "true"
    """)
    done = cli("validate", workflow)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "workflow.yml:6:" in done.stderr and "`network: none` cannot have `services`" in done.stderr, done.stderr


def test_a_bad_service_name_is_a_located_error(tmp_path):
    workflow = write(tmp_path, f"""
        version: 1
        jobs:
          client:
            image: {BUSYBOX_IMAGE}
            services:
              My_DB: {{image: {BUSYBOX_IMAGE}}}
            run: "true"
    """)
    done = cli("validate", workflow)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "workflow.yml:6:" in done.stderr and "host name" in done.stderr, done.stderr


def test_a_missing_service_image_is_caught_before_the_run(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          client:
            image: {BUSYBOX_IMAGE}
            services:
              db: {{image: "runner-test/no-such-image:1"}}
            run: echo "the steps ran"
    """)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "runner-test/no-such-image:1" in result.stderr and "client" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_keep_on_failure_keeps_the_jobs_container_but_not_its_services(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          client:
            image: {BUSYBOX_IMAGE}
            services:
{web(14)}
            steps:
              - run: wget -qO- http://web:8080/
              - run: exit 3
    """, "--keep-on-failure")
    assert result.returncode == 1, result.stdout + result.stderr
    run_id = result.summary["run_id"]
    kept = containers(docker, run_id)
    assert [c["Labels"].get("dev.runner.service") for c in kept] == [None], kept
    assert networks(docker, run_id) == []
    done = cli("runs", "clean", run_id, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert containers(docker, run_id) == []


def test_a_backend_that_cannot_run_services_fails_the_job_saying_so(tmp_path):
    from runner.model.results import Result
    from test_scheduler import run as run_on_fake_backend

    outcome, backend, _ = run_on_fake_backend(tmp_path, """
        version: 1
        jobs:
          client:
            image: img
            services:
              db: {image: img}
            run: echo never
    """)
    record = outcome.jobs["client"]
    assert record.result is Result.FAILURE
    assert "`services:`" in record.reason and "cannot run" in record.reason, record.reason
    assert backend.started == []


def test_a_cached_job_runs_again_when_its_services_or_capabilities_change(docker, tmp_path):
    def cached_from(greeting: str, capabilities: str = "{}") -> str | None:
        result = run(tmp_path, f"""
            version: 1
            jobs:
              client:
                image: {BUSYBOX_IMAGE}
                cache: true
                capabilities: {capabilities}
                services:
                  echo:
                    image: {BUSYBOX_IMAGE}
                    env: {{GREETING: {greeting}}}
                    command: ["sh", "-c", "exec nc -ll -p 7000 -e echo $GREETING"]
                run: |
                  for i in $(seq 50); do nc -w 1 echo 7000 < /dev/null 2>/dev/null && break; sleep 0.1; done
        """)
        assert result.returncode == 0, result.stdout + result.stderr
        if result.job("client").get("cached_from") is None:
            assert result.lines("client", "1") == [greeting]
        return result.job("client").get("cached_from")

    assert cached_from("hello") is None
    assert cached_from("hello") is not None
    assert cached_from("bonjour") is None
    assert cached_from("bonjour", "{drop: [KILL]}") is None


def test_the_steps_wait_for_a_slow_service_to_be_healthy(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          client:
            image: {BUSYBOX_IMAGE}
            services:
              web:
                image: {BUSYBOX_IMAGE}
                command: ["sh", "-c", "sleep 2; mkdir /www; echo late > /www/index.html; exec httpd -f -p 8080 -h /www"]
                healthcheck: {{run: "wget -qO- http://127.0.0.1:8080/", interval: 0.2s, retries: 100}}
            run: wget -qO- http://web:8080/
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.lines("client", "1") == ["late"]
