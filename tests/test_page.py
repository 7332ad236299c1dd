"""The web page that `runner serve` serves at `/`, in a real browser: Debian's chromium, headless,
driven by Selenium through Debian's chromedriver (never a downloaded one: the tests run offline)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BUSYBOX, write

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HOW_TO_INSTALL = (
    "the web page's tests need Debian's chromium and its chromedriver: "
    "`sudo apt-get install chromium chromium-driver` (`sudo scripts/dev setup` installs them)"
)
WAIT = 30.0  # seconds the page gets to show something

WAITING = f"""
version: 1
name: waits for a file
jobs:
  prepare:
    outputs:
      greeting: Hello from the page test
  work:
    needs: prepare
    image: {BUSYBOX}
    steps:
      - id: say
        run: |
          echo "${{{{ jobs.prepare.outputs.greeting }}}}"
          while [ ! -f /workspace/go ]; do sleep 0.05; done
          echo "released"
  report:
    needs: work
    outputs:
      done: "yes"
  never:
    needs: work
    if: false
    outputs:
      x: 1
"""

TYPED = """
version: 1
name: typed inputs
inputs:
  who: {type: string, required: true, description: whom to greet}
  times: {type: integer, default: 1, minimum: 1, maximum: 5}
  loud: {type: boolean, default: false}
  mood: {type: string, enum: [calm, eager], default: calm}
jobs:
  greet:
    outputs:
      greeting: "Hello ${{ inputs.who }} x${{ inputs.times }} ${{ inputs.mood }} ${{ inputs.loud }}"
outputs:
  greeting: ${{ jobs.greet.outputs.greeting }}
"""

BROKEN = """
version: 1
jobs:
  a:
    needs: nowhere
    outputs: {x: 1}
"""

PARENT = """
version: 1
name: parent
jobs:
  sub:
    uses: lib/child.yml
"""

CHILD = """
version: 1
name: child
jobs:
  inner:
    outputs:
      x: 1
"""

FAILS = """
version: 1
name: fails
jobs:
  check:
    outputs:
      bad: ${{ 1 // 0 }}
"""


# -- the browser and the server -------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: {HOW_TO_INSTALL}", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,1024"):
        options.add_argument(argument)
    profile = tempfile.TemporaryDirectory(prefix="runner-chromium-")
    options.add_argument(f"--user-data-dir={profile.name}/profile")
    options.add_experimental_option("prefs", {"download.default_directory": f"{profile.name}/downloads",
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver named explicitly: Selenium Manager would try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        driver.downloads = Path(profile.name) / "downloads"
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


@pytest.fixture
def page(browser):
    """The browser, with the page's own errors (uncaught exceptions, failed scripts) checked after the test.

    Answers with an error status are left out: the tests ask for some (422, 401) on purpose.
    """
    browser.get_log("browser")  # what earlier tests left
    yield browser
    errors = [e["message"] for e in browser.get_log("browser")
              if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]
    browser.get("about:blank")  # closes the page's event streams before its server stops
    assert not errors, f"the page logged errors: {errors}"


class Server:
    """`runner serve` in a subprocess, on a free port of 127.0.0.1."""

    def __init__(self, directory: Path, token: str = "", options: tuple[str, ...] = ()):
        self.workflows = directory / "workflows"
        self.workflows.mkdir(exist_ok=True)
        self.directory = directory
        self.token = token
        self.options = options
        self.process = None
        self.url = ""

    def start(self) -> "Server":
        env = {**os.environ, "RUNNER_TOKENS": self.token}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runner", "serve", "--port", "0", "--workflows", str(self.workflows),
             "--state-dir", str(self.directory / "state"), *self.options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.process.stdout], daemon=True).start()
        said = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            said.append(line)
            if line.startswith("runner: serving http://"):
                self.url = line.split()[2].rstrip(",") + "/"
                return self
        self.stop()
        pytest.fail(f"runner serve did not start: {''.join(said)}", pytrace=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.url + "api/v1/" + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {self.token}"} if self.token else {})},
        )
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            return json.loads(answer.read())


@pytest.fixture
def server(tmp_path):
    started: list[Server] = []

    def start(workflows: dict[str, str], token: str = "", options: tuple[str, ...] = ()) -> Server:
        s = Server(tmp_path, token, options)
        for name, text in workflows.items():
            (s.workflows / name).parent.mkdir(parents=True, exist_ok=True)
            write(s.workflows, text, name)
        started.append(s.start())
        return s

    yield start
    for s in started:
        s.stop()


def until(driver, what: str, check):
    """`check(driver)`'s first true value, waiting for it; on timeout the page's text says what it showed."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,)).until(check)
    except WebDriverException:
        shown = driver.execute_script("return document.getElementById('view').innerText")
        pytest.fail(f"the page did not show {what}; it showed:\n{shown}", pytrace=False)


def css(selector: str):
    from selenium.webdriver.common.by import By

    return lambda d: d.find_elements(By.CSS_SELECTOR, selector)


def timeline(driver) -> dict[str, list[str]]:
    """Each lane of the timeline and the states of its bars, read at once (the timeline is redrawn)."""
    return dict(driver.execute_script(
        "return [...document.querySelectorAll('.timeline li.lane')].map("
        "(lane) => [lane.dataset.node, [...lane.querySelectorAll('.bar')].map((bar) => bar.dataset.state)])"))


def state_of(driver, job: str) -> str | None:
    nodes = css(f'svg.graph g.node[data-job="{job}"]')(driver)
    return nodes[0].get_attribute("data-state") if nodes else None


# -- the tests ------------------------------------------------------------------------


def test_a_run_page_shows_a_job_turn_from_running_to_succeeded_and_its_log_line(page, docker, server):
    s = server({"wait.yml": WAITING})
    run_id = s.api("POST", "runs", {"workflow": "wait.yml"})["run_id"]
    page.get(f"{s.url}#/runs/{run_id}")

    until(page, "the job `work` running", lambda d: state_of(d, "work") == "running")
    assert state_of(page, "prepare") == "succeeded"
    assert state_of(page, "report") == "pending"
    # The graph is laid out from the workflow's needs: one edge a need.
    edges = {(e.get_attribute("data-from"), e.get_attribute("data-to")) for e in css("svg.graph path.edge")(page)}
    assert edges == {("prepare", "work"), ("work", "report"), ("work", "never")}

    css('svg.graph g.node[data-job="work"]')(page)[0].click()  # opens the job's panel
    log = until(page, "the log of `work`", lambda d: [e for e in css('pre[data-log="work"]')(d)
                                                    if "Hello from the page test" in e.text])[0]
    assert "released" not in log.text
    assert state_of(page, "work") == "running"

    (s.workflows / "go").touch()
    until(page, "the job `work` succeeded", lambda d: state_of(d, "work") == "succeeded")
    until(page, "the log line written after the release", lambda d: "released" in log.text)
    until(page, "the run's success", lambda d: css('.meta .badge[data-state="success"]')(d))
    assert state_of(page, "report") == "succeeded"
    assert state_of(page, "never") == "skipped"

    # The whole log, from the server, as a file.
    panel = css('details.job[data-node="work"]')(page)[0]
    panel.find_element("css selector", "button.small").click()
    saved = page.downloads / f"{run_id}-work.log"
    until(page, "the downloaded log", lambda d: saved.exists() and "released" in saved.read_text())
    assert "Hello from the page test" in saved.read_text()

    # Why a job was skipped, and the timeline: one lane a job that ran, bars on one time axis.
    never = css('details.job[data-node="never"]')(page)[0]
    page.execute_script("arguments[0].open = true", never)
    assert "Skipped: if was false" in never.text
    lanes = timeline(page)
    assert list(lanes)[:3] == ["prepare", "work", "report"]
    assert lanes["work"] == ["succeeded"]
    assert css(".timeline .axis .tick")(page), "the time axis has no ticks"
    # Steering a finished run: only resuming is offered.
    assert not css('button[data-action="resume"]')(page)[0].get_attribute("disabled")
    for action in ("cancel", "pause", "unpause"):
        assert css(f'button[data-action="{action}"]')(page)[0].get_attribute("disabled") is not None


def test_a_workflow_starts_from_the_form_built_from_its_typed_inputs(page, server):
    from selenium.webdriver.support.ui import Select

    s = server({"typed.yml": TYPED, "broken.yml": BROKEN})
    page.get(f"{s.url}#/start")
    link = until(page, "the registered workflow", css('a[data-workflow="typed.yml"]'))[0]
    invalid = css('li[data-invalid="broken.yml"]')(page)
    assert invalid and "nowhere" in invalid[0].text, "an invalid workflow is listed with its problem"
    assert not css('a[data-workflow="broken.yml"]')(page)
    link.click()
    form = until(page, "the form", css('form.start[data-workflow="typed.yml"]'))[0]
    assert {e.get_attribute("name"): e.get_attribute("type") for e in form.find_elements("css selector", "input")} == {
        "who": "text", "times": "number", "loud": "checkbox"}
    assert [o.text for o in Select(page.find_element("id", "input-mood")).options] == ["calm", "eager"]

    # A required input left empty: the server's located message shows beside the field.
    form.find_element("css selector", "button[type=submit]").click()
    until(page, "the problem with `who`", lambda d: "required" in d.find_element("id", "input-who-error").text)
    assert page.find_element("id", "input-who").get_attribute("aria-invalid") == "true"
    assert "#/start/typed.yml" in page.current_url

    page.find_element("id", "input-who").send_keys("Ada")
    times = page.find_element("id", "input-times")
    times.clear()
    times.send_keys("3")
    page.find_element("id", "input-loud").click()
    Select(page.find_element("id", "input-mood")).select_by_visible_text("eager")
    form.find_element("css selector", "button[type=submit]").click()

    until(page, "the new run's page", lambda d: "#/runs/" in d.current_url)
    until(page, "the job `greet` succeeded", lambda d: state_of(d, "greet") == "succeeded")
    until(page, "the run's outputs", lambda d: "Hello Ada x3 eager true" in d.find_element("id", "view").text)
    run_id = page.current_url.rsplit("/", 1)[1]
    run = s.api("GET", f"runs/{run_id}")
    assert run["inputs"] == {"who": "Ada", "times": 3, "loud": True, "mood": "eager"}
    assert run["status"] == "success"


def test_the_runs_list_filters_by_status_and_workflow(page, server):
    from selenium.webdriver.support.ui import Select

    s = server({"typed.yml": TYPED, "fails.yml": FAILS})
    ok = s.api("POST", "runs?wait=30", {"workflow": "typed.yml", "inputs": {"who": "Ada"}})["run_id"]
    failed = s.api("POST", "runs?wait=30", {"workflow": "fails.yml"})["run_id"]
    page.get(f"{s.url}#/runs")

    def rows(d):
        return {r.get_attribute("data-run"): r.get_attribute("data-status") for r in css("table.runs tbody tr")(d)}

    until(page, "both runs", lambda d: rows(d) == {ok: "success", failed: "failure"})
    Select(page.find_element("id", "filter-status")).select_by_visible_text("failure")
    until(page, "the failed run alone", lambda d: rows(d) == {failed: "failure"})
    assert "status=failure" in page.current_url
    Select(page.find_element("id", "filter-workflow")).select_by_visible_text("typed.yml")
    until(page, "no run", lambda d: rows(d) == {} and "No run matches" in d.find_element("id", "view").text)
    Select(page.find_element("id", "filter-status")).select_by_visible_text("any")
    until(page, "the successful run alone", lambda d: rows(d) == {ok: "success"})

    # The filters are in the address: opening it again shows the same list.
    page.get(f"{s.url}#/runs?workflow=fails.yml")
    until(page, "the failed run alone", lambda d: rows(d) == {failed: "failure"})
    css(f'table.runs a[href="#/runs/{failed}"]')(page)[0].click()
    until(page, "why the job failed", lambda d: state_of(d, "check") == "failed")
    panel = css('details.job[data-node="check"]')(page)[0]
    assert panel.get_attribute("open") is not None, "a failed job's panel opens by itself"
    assert "Failed: " in panel.text and "fails.yml:6:12: outputs.bad: `1 // 0` cannot be evaluated" in panel.text


def test_the_page_asks_for_the_token_once_and_sends_it(page, docker, server):
    s = server({"wait.yml": WAITING}, token="s3cret-page-token")
    run_id = s.api("POST", "runs", {"workflow": "wait.yml"})["run_id"]
    page.get(f"{s.url}#/runs")
    dialog = until(page, "the token dialog", lambda d: [e for e in css("#token-dialog")(d) if e.is_displayed()])[0]
    page.find_element("id", "token-input").send_keys("wrong")
    dialog.find_element("css selector", "button[type=submit]").click()
    until(page, "the refusal", lambda d: d.find_element("id", "token-refused").is_displayed())
    page.find_element("id", "token-input").send_keys("s3cret-page-token")
    dialog.find_element("css selector", "button[type=submit]").click()
    until(page, "the run in the list", css(f'table.runs tr[data-run="{run_id}"]'))

    # Kept for the tab: the run's page needs no second asking, and its event stream (the token
    # in its address) brings the job's end.
    page.get(f"{s.url}#/runs/{run_id}")
    until(page, "the job `work` running", lambda d: state_of(d, "work") == "running")
    (s.workflows / "go").touch()
    until(page, "the job `work` succeeded", lambda d: state_of(d, "work") == "succeeded")
    assert not page.find_element("id", "token-dialog").is_displayed()
    assert page.execute_script("return sessionStorage.getItem('runner.token')") == "s3cret-page-token"
    page.execute_script("sessionStorage.clear()")


def test_the_buttons_pause_unpause_cancel_and_resume_a_run(page, docker, server):
    s = server({"wait.yml": WAITING})
    run_id = s.api("POST", "runs", {"workflow": "wait.yml"})["run_id"]
    page.get(f"{s.url}#/runs/{run_id}")
    until(page, "the job `work` running", lambda d: state_of(d, "work") == "running")

    def button(action):
        return css(f'button[data-action="{action}"]')(page)[0]

    def status(d):
        badges = css(".meta .badge")(d)
        return badges[0].get_attribute("data-state") if badges else None

    # Paused: the running job finishes, nothing starts after it until the run is unpaused.
    button("pause").click()
    until(page, "the run paused", lambda d: status(d) == "paused")
    assert button("pause").get_attribute("disabled") is not None
    (s.workflows / "go").touch()
    until(page, "the job `work` succeeded", lambda d: state_of(d, "work") == "succeeded")
    time.sleep(0.5)
    assert state_of(page, "report") == "pending"
    button("unpause").click()
    until(page, "the run's success", lambda d: status(d) == "success" and state_of(d, "report") == "succeeded")

    # Resumed from `work`: it runs again, as a new attempt of the same run.
    (s.workflows / "go").unlink()
    from selenium.webdriver.support.ui import Select

    Select(page.find_element("id", "resume-from")).select_by_visible_text("work")
    button("resume").click()
    until(page, "the job `work` running again", lambda d: state_of(d, "work") == "running" and status(d) == "running")
    assert state_of(page, "prepare") == "succeeded"

    # Cancelled (after confirming): the running job is stopped, the run ends cancelled.
    button("cancel").click()
    page.switch_to.alert.accept()
    until(page, "the run cancelled", lambda d: status(d) == "cancelled")
    assert state_of(page, "work") == "cancelled"
    assert s.api("GET", f"runs/{run_id}")["status"] == "cancelled"
    marks = css(".timeline .mark")(page)
    assert len(marks) == 2, "each attempt of the run is marked on the timeline"


def test_a_queued_run_shows_its_jobs_once_it_starts(page, docker, server):
    s = server({"wait.yml": WAITING}, options=("--concurrency", "1"))
    first = s.api("POST", "runs", {"workflow": "wait.yml"})["run_id"]
    second = s.api("POST", "runs", {"workflow": "wait.yml"})["run_id"]
    page.get(f"{s.url}#/runs?status=queued")
    until(page, "the second run queued", css(f'table.runs tr[data-run="{second}"][data-status="queued"]'))
    assert not css(f'table.runs tr[data-run="{first}"]')(page)
    page.get(f"{s.url}#/runs/{second}")
    until(page, "the run waiting for a slot", lambda d: "waits for a free slot" in d.find_element("id", "view").text)

    (s.workflows / "go").touch()  # the first run ends, the second starts and finds the file there
    until(page, "the second run's jobs, succeeded", lambda d: state_of(d, "work") == "succeeded")
    until(page, "the run's success", css('.meta .badge[data-state="success"]'))
    assert s.api("GET", f"runs/{first}")["status"] == "success"


def test_a_sub_workflows_jobs_show_under_its_job(page, server):
    s = server({"parent.yml": PARENT, "lib/child.yml": CHILD})
    run_id = s.api("POST", "runs?wait=30", {"workflow": "parent.yml"})["run_id"]
    page.get(f"{s.url}#/runs/{run_id}")
    until(page, "the job `sub` succeeded", lambda d: state_of(d, "sub") == "succeeded")
    inner = until(page, "the sub-workflow's job", css('details.job[data-node="sub"] details.job[data-node="sub/inner"]'))[0]
    assert inner.get_attribute("data-state") == "succeeded"
    assert timeline(page)["sub/inner"] == ["succeeded"]
