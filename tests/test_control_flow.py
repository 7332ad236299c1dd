"""Control flow as a user of `runner run` sees it: the DAG, matrices, sub-workflows,
repeat, retry, conditions and timeouts.

Every test runs the CLI in a subprocess against the real Docker engine, on a
workflow written to tmp_path, and looks only at what a user can see: the exit
status, stdout, the --output-json and --events files, files in the workspace and
the step logs under runs/<id>/logs/ in the state directory. Where containers
are not the point, value jobs (outputs only, no container) keep the tests fast.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from conftest import IMAGE_MAP, LABEL, cli, state_of, write

# Workflows name the public image (quoted for YAML flow mappings); IMAGE_MAP
# points it at the local busybox image.
BUSYBOX_IMAGE = '"alpine:3.20"'


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    summary: dict | None  # --output-json
    events: list[dict]  # --events
    log_dir: Path | None  # runs/<id>/logs in the state directory

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def job(self, job_id: str) -> dict:
        return self.summary["jobs"][job_id]

    def lines(self, node: str, step: str) -> list[str]:
        """What the console printed for one step, without the `[node/step] ` prefix."""
        prefix = f"[{node}/{step}] "
        return [line[len(prefix):] for line in self.stdout.splitlines() if line.startswith(prefix)]

    def logs(self) -> dict[str, str]:
        """Every step log of the run: "<node dir>/<step>.log" -> text."""
        if self.log_dir is None or not self.log_dir.exists():
            return {}
        return {p.relative_to(self.log_dir).as_posix(): p.read_text() for p in sorted(self.log_dir.rglob("*.log"))}

    def event_times(self, kind: str) -> dict[str, float]:
        """node -> the time of its first event of this kind (node_started, node_finished)."""
        times: dict[str, float] = {}
        for e in self.events:
            if e["type"] == kind:
                times.setdefault(e["node"], e["time"])
        return times


def run(tmp_path: Path, text: str, *args: str, name: str = "workflow.yml", timeout: float = 120) -> Run:
    workflow = write(tmp_path, text, name=name)
    out, events = tmp_path / "out.json", tmp_path / "events.jsonl"
    out.unlink(missing_ok=True)
    done = cli(
        "run", workflow, *IMAGE_MAP, "--output-json", out, "--events", events, *args,
        cwd=tmp_path, timeout=timeout,
    )
    summary = json.loads(out.read_text()) if out.exists() else None
    log_dir = state_of(tmp_path) / "runs" / summary["run_id"] / "logs" if summary else None
    event_list = [json.loads(line) for line in events.read_text().splitlines() if line.strip()] if events.exists() else []
    result = Run(done.returncode, done.stdout, done.stderr, summary, event_list, log_dir)
    assert "Traceback" not in result.output, result.output
    return result


def containers(docker, run_id: str) -> list:
    return docker.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"})


# -- the DAG --------------------------------------------------------------------------------


def test_diamond_runs_both_branches_at_once_and_joins_their_outputs(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        concurrency: 4
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          a:
            steps:
              - id: seed
                run: echo "n=5" >> "$RUNNER_OUTPUT"
            outputs:
              n: ${{{{ steps.seed.outputs.n | int }}}}
          b:
            needs: a
            steps:
              - id: double
                run: |
                  sleep 1
                  echo "v=$(( ${{{{ jobs.a.outputs.n }}}} * 2 ))" >> "$RUNNER_OUTPUT"
            outputs:
              v: ${{{{ steps.double.outputs.v | int }}}}
          c:
            needs: a
            steps:
              - id: square
                run: |
                  sleep 1
                  echo "v=$(( ${{{{ jobs.a.outputs.n }}}} * ${{{{ jobs.a.outputs.n }}}} ))" >> "$RUNNER_OUTPUT"
            outputs:
              v: ${{{{ steps.square.outputs.v | int }}}}
          d:
            needs: [b, c]
            steps:
              - id: join
                run: echo "joined ${{{{ jobs.b.outputs.v }}}} and ${{{{ jobs.c.outputs.v }}}}"
            outputs:
              total: ${{{{ jobs.b.outputs.v + jobs.c.outputs.v }}}}
              text: ${{{{ jobs.b.outputs.v }}}}+${{{{ jobs.c.outputs.v }}}}
        outputs:
          total: ${{{{ jobs.d.outputs.total }}}}
    """)
    assert result.returncode == 0, result.output
    assert result.job("d")["outputs"] == {"total": 35, "text": "10+25"}
    assert result.summary["outputs"] == {"total": 35}
    assert result.lines("d", "join") == ["joined 10 and 25"]
    started, finished = result.event_times("node_started"), result.event_times("node_finished")
    # b and c overlap: each started before the other finished.
    assert started["b"] < finished["c"] and started["c"] < finished["b"]
    # d starts only after both; b starts only after a.
    assert started["d"] >= max(finished["b"], finished["c"])
    assert started["b"] >= finished["a"] and started["c"] >= finished["a"]
    # One after another, the four jobs would take the sum of their durations; b and c
    # running side by side save most of one of them (each sleeps 1s).
    durations = {job: result.job(job)["duration_s"] for job in "abcd"}
    assert durations["b"] >= 1 and durations["c"] >= 1
    assert result.summary["duration_s"] < sum(durations.values()) - 0.7, (result.summary["duration_s"], durations)


# -- matrix ---------------------------------------------------------------------------------


def test_matrix_include_and_exclude_name_order_and_fan_in(tmp_path):
    # Value jobs: the expansion is the point, not containers.
    result = run(tmp_path, """
        version: 1
        jobs:
          build:
            matrix:
              target: [linux, windows, mac]
              mode: [debug, release]
              exclude:
                - {target: mac, mode: debug}
                - {target: windows, mode: debug}
              include:
                - {target: linux, mode: release, extra: lto}  # extends one combination
                - {mode: debug, flags: -g}                     # extends every debug combination
                - {target: mac, mode: debug, extra: late}      # excluded before: a new instance
                - {target: wasm, mode: release}                # matches nothing: a new instance
            outputs:
              x: ${{ (matrix.target | length) * 10 + (1 if matrix.mode == 'release' else 0) }}
              name: ${{ matrix.target }}-${{ matrix.mode }}-${{ matrix.extra | default('none') }}
          total:
            needs: build
            outputs:
              sum: ${{ jobs.build.outputs | map(attribute='x') | sum }}
              names: ${{ jobs.build.outputs | map(attribute='name') | list }}
        outputs:
          sum: ${{ jobs.total.outputs.sum }}
    """)
    assert result.returncode == 0, result.output
    expected = [
        "build (target=linux, mode=debug, flags=-g)",
        "build (target=linux, mode=release, extra=lto)",
        "build (target=windows, mode=release)",
        "build (target=mac, mode=release)",
        "build (target=mac, mode=debug, extra=late)",
        "build (target=wasm, mode=release)",
    ]
    build = result.job("build")
    assert list(build["instances"]) == expected
    assert build["instances"]["build (target=linux, mode=release, extra=lto)"]["matrix"] == {
        "target": "linux", "mode": "release", "extra": "lto",
    }
    assert all(i["result"] == "success" for i in build["instances"].values())
    # The table at the end lists the instances in matrix order too.
    table = [line.split("  ")[1] for line in result.stdout.splitlines() if line.startswith("  build (")]
    assert table == expected
    assert result.job("total")["outputs"]["names"] == [
        "linux-debug-none", "linux-release-lto", "windows-release-none",
        "mac-release-none", "mac-debug-late", "wasm-release-none",
    ]
    assert result.summary["outputs"] == {"sum": 50 + 51 + 71 + 31 + 30 + 41}


def test_matrix_include_follows_the_github_actions_example(tmp_path):
    # The example of "Expanding or adding matrix configurations" in GitHub's docs, with its
    # documented result: an include entry extends only the combinations of the axes (never
    # overwriting their values, but overwriting values added by an earlier include), and
    # entries added as instances of their own are not extended by later entries.
    result = run(tmp_path, """
        version: 1
        jobs:
          pick:
            matrix:
              fruit: [apple, pear]
              animal: [cat, dog]
              include:
                - color: green
                - color: pink
                  animal: cat
                - fruit: apple
                  shape: circle
                - fruit: banana
                - fruit: banana
                  animal: cat
            outputs:
              m: ${{ matrix }}
    """)
    assert result.returncode == 0, result.output
    assert result.job("pick")["outputs"] == [
        {"m": {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"}},
        {"m": {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"}},
        {"m": {"fruit": "pear", "animal": "cat", "color": "pink"}},
        {"m": {"fruit": "pear", "animal": "dog", "color": "green"}},
        {"m": {"fruit": "banana"}},
        {"m": {"fruit": "banana", "animal": "cat"}},
    ]


FAILING_INSTANCE = f"""
    version: 1
    concurrency: 3
    defaults: {{image: {BUSYBOX_IMAGE}}}
    jobs:
      build:
        matrix:
          n: [1, 2, 3]
          FAIL_FAST
        steps:
          - id: work
            run: |
              if [ "${{{{ matrix.n }}}}" = 2 ]; then echo "n=2 breaks"; exit 1; fi
              sleep SLEEP
              echo "x=$(( ${{{{ matrix.n }}}} * 10 ))" >> "$RUNNER_OUTPUT"
        outputs:
          x: ${{{{ steps.work.outputs.x | int }}}}
      report:
        needs: build
        outputs:
          xs: ${{{{ jobs.build.outputs }}}}
"""


def test_failed_matrix_instance_without_fail_fast_lets_the_others_finish(docker, tmp_path):
    result = run(tmp_path, FAILING_INSTANCE.replace("FAIL_FAST", "fail_fast: false").replace("SLEEP", "1"))
    assert result.returncode == 1
    build = result.job("build")
    assert build["result"] == "failure"
    assert build["reason"] == "1 of 3 instances failed: build (n=2)"
    assert build["outputs"] == [{"x": 10}, None, {"x": 30}]
    instances = build["instances"]
    assert {name: i["result"] for name, i in instances.items()} == {
        "build (n=1)": "success", "build (n=2)": "failure", "build (n=3)": "success",
    }
    assert instances["build (n=2)"]["reason"] == "step `work` failed: exit code 1"
    assert instances["build (n=2)"]["matrix"] == {"n": 2}
    assert result.lines("build (n=2)", "work") == ["n=2 breaks"]
    assert result.job("report")["result"] == "skipped"
    assert result.job("report")["reason"] == "needs build failed"
    assert result.summary["status"] == "failure"
    assert containers(docker, result.summary["run_id"]) == []


def test_failed_matrix_instance_cancels_a_slow_sibling_by_default(docker, tmp_path):
    result = run(tmp_path, FAILING_INSTANCE.replace("FAIL_FAST", "").replace("SLEEP", "30"))
    assert result.returncode == 1
    assert result.summary["duration_s"] < 20, result.summary["duration_s"]
    build = result.job("build")
    assert build["result"] == "failure"
    instances = build["instances"]
    assert instances["build (n=2)"]["result"] == "failure"
    for slow in ("build (n=1)", "build (n=3)"):
        assert instances[slow]["result"] == "cancelled", instances
        assert "build (n=2)" in instances[slow]["reason"]
    assert build["outputs"] == [None, None, None]
    assert build["reason"] == "1 of 3 instances failed, 2 cancelled: build (n=2)"
    assert result.job("report")["reason"] == "needs build failed"
    assert containers(docker, result.summary["run_id"]) == []


MATRIX_FROM_INPUT = """
    version: 1
    inputs:
      n: {type: integer, default: 3}
    jobs:
      square:
        matrix:
          i: ${{ range(inputs.n) | list }}
          MAX
        outputs:
          sq: ${{ matrix.i * matrix.i }}
      total:
        needs: square
        outputs:
          sum: ${{ jobs.square.outputs | map(attribute='sq') | sum }}
          count: ${{ jobs.square.outputs | length }}
    outputs:
      sum: ${{ jobs.total.outputs.sum }}
"""


def test_matrix_axis_computed_from_an_input(tmp_path):
    result = run(tmp_path, MATRIX_FROM_INPUT.replace("MAX", ""), "--input", "n=4")
    assert result.returncode == 0, result.output
    assert list(result.job("square")["instances"]) == [f"square (i={i})" for i in range(4)]
    assert result.job("total")["outputs"] == {"sum": 0 + 1 + 4 + 9, "count": 4}


def test_matrix_that_expands_to_nothing_skips_the_job(tmp_path):
    result = run(tmp_path, MATRIX_FROM_INPUT.replace("MAX", ""), "--input", "n=0")
    square = result.job("square")
    assert square["result"] == "skipped"
    assert square["reason"] == "matrix is empty"
    assert result.job("total")["result"] == "skipped"
    assert result.job("total")["reason"] == "needs square was skipped"
    assert "matrix is empty" in result.stdout


def test_matrix_over_256_instances_fails_unless_max_instances_allows_it(tmp_path):
    result = run(tmp_path, MATRIX_FROM_INPUT.replace("MAX", ""), "--input", "n=300")
    assert result.returncode == 1
    square = result.job("square")
    assert square["result"] == "failure"
    assert "300" in square["reason"] and "max_instances" in square["reason"]
    assert "max_instances" in result.stdout
    assert result.job("total")["reason"] == "needs square failed"

    result = run(tmp_path, MATRIX_FROM_INPUT.replace("MAX", "max_instances: 300"), "--input", "n=300")
    assert result.returncode == 0, result.output
    assert result.job("total")["outputs"] == {"sum": sum(i * i for i in range(300)), "count": 300}


# -- sub-workflows --------------------------------------------------------------------------


def write_child_and_grandchild(tmp_path: Path) -> None:
    """lib/child.yml, which uses lib/deeper/grandchild.yml."""
    (tmp_path / "lib" / "deeper").mkdir(parents=True)
    write(tmp_path / "lib" / "deeper", f"""
        version: 1
        inputs:
          who: {{type: string, required: true}}
          times: {{type: integer, default: 1}}
        jobs:
          say:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: hello
                run: |
                  echo "hello ${{{{ inputs.who }}}} x${{{{ inputs.times }}}}"
                  echo "text=hello ${{{{ inputs.who }}}}" >> "$RUNNER_OUTPUT"
            outputs:
              text: ${{{{ steps.hello.outputs.text }}}}
        outputs:
          greeting: ${{{{ jobs.say.outputs.text }}}}
          times: ${{{{ inputs.times }}}}
    """, name="grandchild.yml")
    write(tmp_path / "lib", f"""
        version: 1
        inputs:
          name: {{type: string, required: true}}
          times: {{type: integer, default: 1}}
        jobs:
          render:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: title
                run: |
                  echo "rendering for ${{{{ inputs.name }}}}"
                  echo "title=Report for ${{{{ inputs.name }}}}" >> "$RUNNER_OUTPUT"
            outputs:
              title: ${{{{ steps.title.outputs.title }}}}
          deeper:
            needs: render
            uses: deeper/grandchild.yml
            with:
              who: ${{{{ inputs.name }}}}
              times: ${{{{ inputs.times * 2 }}}}
        outputs:
          title: ${{{{ jobs.render.outputs.title }}}}
          greeting: ${{{{ jobs.deeper.outputs.greeting }}}}
          times: ${{{{ jobs.deeper.outputs.times }}}}
    """, name="child.yml")


def test_three_level_sub_workflow_passes_inputs_down_and_outputs_up(docker, tmp_path):
    write_child_and_grandchild(tmp_path)
    result = run(tmp_path, """
        version: 1
        jobs:
          report:
            uses: lib/child.yml
            with:
              name: world
              times: 3
          after:
            needs: report
            outputs:
              line: ${{ jobs.report.outputs.title }} / ${{ jobs.report.outputs.greeting }}
        outputs:
          line: ${{ jobs.after.outputs.line }}
          times: ${{ jobs.report.outputs.times }}
    """)
    assert result.returncode == 0, result.output
    assert result.summary["outputs"] == {"line": "Report for world / hello world", "times": 6}
    assert result.job("report")["outputs"] == {"title": "Report for world", "greeting": "hello world", "times": 6}
    # Child nodes are named under their parent node, in what is printed ...
    printed = result.stdout.splitlines()
    assert "▶ report/render" in printed
    assert "▶ report/deeper/say" in printed
    assert result.lines("report/render", "title") == ["rendering for world"]
    assert result.lines("report/deeper/say", "hello") == ["hello world x6"]
    # ... and nested in --output-json.
    render = result.job("report")["jobs"]["render"]
    assert render["result"] == "success" and render["outputs"] == {"title": "Report for world"}
    deeper = result.job("report")["jobs"]["deeper"]
    assert deeper["result"] == "success"
    assert deeper["jobs"]["say"]["outputs"] == {"text": "hello world"}
    # Every step's log is kept, the grandchild's included, under a name made of the node's.
    logs = result.logs()
    say = [text for path, text in logs.items() if path.endswith("/hello.log") and re.search("report.deeper.say", path)]
    render = [text for path, text in logs.items() if path.endswith("/title.log") and re.search("report.render", path)]
    assert say == ["hello world x6\n"] and render == ["rendering for world\n"], logs


def test_sub_workflow_in_a_matrix_runs_each_instance_apart(docker, tmp_path):
    (tmp_path / "lib").mkdir()
    write(tmp_path / "lib", f"""
        version: 1
        inputs:
          who: {{type: string, required: true}}
        jobs:
          say:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: hello
                run: |
                  sleep 2
                  echo "hello ${{{{ inputs.who }}}} from $(hostname)"
                  echo "text=hello ${{{{ inputs.who }}}}" >> "$RUNNER_OUTPUT"
            outputs:
              text: ${{{{ steps.hello.outputs.text }}}}
        outputs:
          text: ${{{{ jobs.say.outputs.text }}}}
    """, name="greet.yml")
    result = run(tmp_path, """
        version: 1
        concurrency: 3
        jobs:
          greet:
            matrix:
              who: [ann, bob, cy]
            uses: lib/greet.yml
            with:
              who: ${{ matrix.who }}
        outputs:
          texts: ${{ jobs.greet.outputs | map(attribute='text') | list }}
    """)
    assert result.returncode == 0, result.output
    assert result.summary["outputs"] == {"texts": ["hello ann", "hello bob", "hello cy"]}
    assert {name: i["result"] for name, i in result.job("greet")["instances"].items()} == {
        "greet (who=ann)": "success", "greet (who=bob)": "success", "greet (who=cy)": "success",
    }
    hosts = set()
    for who in ("ann", "bob", "cy"):
        lines = result.lines(f"greet (who={who})/say", "hello")
        assert len(lines) == 1 and lines[0].startswith(f"hello {who} from "), result.stdout
        hosts.add(lines[0].split()[-1])
    assert len(hosts) == 3  # a container each
    # The three ran at once, apart: each started before any of them finished.
    started, finished = result.event_times("node_started"), result.event_times("node_finished")
    says = [f"greet (who={who})/say" for who in ("ann", "bob", "cy")]
    assert max(started[n] for n in says) < min(finished[n] for n in says), (started, finished)
    logs = [text for text in result.logs().values() if text.startswith("hello ")]
    assert sorted(text.split(" from ")[0] for text in logs) == ["hello ann", "hello bob", "hello cy"]
    assert containers(docker, result.summary["run_id"]) == []


# -- sub-workflow compile errors (`runner validate`) ------------------------------------------


def validate(tmp_path: Path, *files: str):
    """`runner validate FILE…` run in tmp_path, so that problems name files as given."""
    done = cli("validate", *files, cwd=tmp_path)
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done


def write_child_with_inputs(tmp_path: Path) -> Path:
    (tmp_path / "lib").mkdir(exist_ok=True)
    return write(tmp_path / "lib", """
        version: 1
        inputs:
          name: {type: string, required: true}
          times: {type: integer, default: 1}
        jobs:
          echo:
            outputs:
              text: ${{ inputs.name }}
        outputs:
          text: ${{ jobs.echo.outputs.text }}
    """, name="child.yml")


def test_validate_uses_of_a_missing_file(tmp_path):
    write(tmp_path, """
        version: 1
        jobs:
          sub:
            uses: lib/nowhere.yml
    """, name="parent.yml")
    done = validate(tmp_path, "parent.yml")
    assert done.returncode == 2
    assert done.stderr.startswith("parent.yml:4:11: `lib/nowhere.yml` does not exist"), done.stderr


def test_validate_a_loop_of_uses_prints_the_loop(tmp_path):
    write(tmp_path, """
        version: 1
        jobs:
          to_b:
            uses: b.yml
    """, name="a.yml")
    write(tmp_path, """
        version: 1
        jobs:
          to_a:
            uses: a.yml
    """, name="b.yml")
    done = validate(tmp_path, "a.yml")
    assert done.returncode == 2
    assert "b.yml:4:11: `uses` makes a loop: a.yml → b.yml → a.yml" in done.stderr.splitlines(), done.stderr


def write_chain(tmp_path: Path, files: int) -> None:
    """w0.yml uses w1.yml … uses w<files-1>.yml, a value job."""
    for i in range(files):
        body = f"  call:\n    uses: w{i + 1}.yml\n" if i < files - 1 else "  leaf:\n    outputs: {done: true}\n"
        (tmp_path / f"w{i}.yml").write_text(f"version: 1\njobs:\n{body}")


def test_validate_sub_workflows_nested_16_deep_are_fine(tmp_path):
    write_chain(tmp_path, 16)
    done = validate(tmp_path, "w0.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "1 file valid"


def test_validate_sub_workflows_nested_deeper_than_16_are_refused(tmp_path):
    write_chain(tmp_path, 18)
    done = validate(tmp_path, "w0.yml")
    assert done.returncode == 2
    assert "w15.yml:4:11: sub-workflows nest deeper than 16 levels" in done.stderr.splitlines(), done.stderr


def test_validate_with_naming_an_undeclared_input_suggests_the_right_one(tmp_path):
    write_child_with_inputs(tmp_path)
    write(tmp_path, """
        version: 1
        jobs:
          sub:
            uses: lib/child.yml
            with:
              name: x
              tims: 2
    """, name="parent.yml")
    done = validate(tmp_path, "parent.yml")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "parent.yml:7:7: `lib/child.yml` has no input `tims`; did you mean `times`? "
        "(declared: name, times) (jobs.sub.with.tims)"
    ]


def test_validate_with_value_of_the_wrong_type(tmp_path):
    write_child_with_inputs(tmp_path)
    write(tmp_path, """
        version: 1
        jobs:
          sub:
            uses: lib/child.yml
            with:
              name: x
              times: many
    """, name="parent.yml")
    done = validate(tmp_path, "parent.yml")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "parent.yml:7:14: input `times` of `lib/child.yml`: expected an integer, got 'many' (jobs.sub.with.times)"
    ]


def test_validate_missing_required_input_of_a_sub_workflow(tmp_path):
    write_child_with_inputs(tmp_path)
    write(tmp_path, """
        version: 1
        jobs:
          sub:
            uses: lib/child.yml
            with:
              times: 2
    """, name="parent.yml")
    done = validate(tmp_path, "parent.yml")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "parent.yml:4:11: `lib/child.yml` requires the input `name`: add it under `with` (jobs.sub.uses)"
    ]


BROKEN_CHILD = """
    version: 1
    jobs:
      first:
        outputs: {a: 1}
      second:
        needs: frist
        outputs: {b: 2}
"""
CHILD_PROBLEM = (
    "lib/child.yml:6:12: job `second` needs `frist`, which is not a job; did you mean `first`? (jobs.second.needs)"
)


def test_validate_error_inside_the_child_names_the_child_file_and_line(tmp_path):
    (tmp_path / "lib").mkdir()
    write(tmp_path / "lib", BROKEN_CHILD, name="child.yml")
    write(tmp_path, """
        version: 1
        jobs:
          sub:
            uses: lib/child.yml
    """, name="parent.yml")
    done = validate(tmp_path, "parent.yml")
    assert done.returncode == 2
    assert CHILD_PROBLEM in done.stderr.splitlines(), done.stderr
    assert "parent.yml:4:11: " in done.stderr  # and where the parent uses it


def test_validate_reports_a_broken_child_once_however_often_it_is_used(tmp_path):
    (tmp_path / "lib").mkdir()
    write(tmp_path / "lib", BROKEN_CHILD, name="child.yml")
    write(tmp_path, """
        version: 1
        jobs:
          one:
            uses: lib/child.yml
          two:
            uses: lib/child.yml
    """, name="parent.yml")
    done = validate(tmp_path, "parent.yml")
    assert done.returncode == 2
    assert done.stderr.splitlines().count(CHILD_PROBLEM) == 1, done.stderr


# -- repeat ---------------------------------------------------------------------------------


def test_repeat_until_succeeds_on_the_third_pass(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          poll:
            image: {BUSYBOX_IMAGE}
            repeat:
              until: ${{{{ outputs.ready == 'yes' }}}}
              max: 5
            steps:
              - id: check
                run: |
                  echo x >> /workspace/poll-count
                  passes=$(wc -l < /workspace/poll-count | tr -d ' ')
                  echo "pass ${{{{ repeat.index }}}} attempt ${{{{ run.attempt }}}} count $passes"
                  echo "ready=$([ "$passes" -ge 3 ] && echo yes || echo no)" >> "$RUNNER_OUTPUT"
                  echo "count=$passes" >> "$RUNNER_OUTPUT"
            outputs:
              ready: ${{{{ steps.check.outputs.ready }}}}
              count: ${{{{ steps.check.outputs.count | int }}}}
              index: ${{{{ repeat.index }}}}
    """)
    assert result.returncode == 0, result.output
    poll = result.job("poll")
    assert poll["result"] == "success"
    assert poll["outputs"] == {"ready": "yes", "count": 3, "index": 2}  # the last pass's
    assert poll["attempts"] == 3
    assert result.lines("poll", "check") == [
        "pass 0 attempt 1 count 1",
        "pass 1 attempt 2 count 2",
        "pass 2 attempt 3 count 3",
    ]
    assert (tmp_path / "poll-count").read_text() == "x\nx\nx\n"


def test_repeat_that_reaches_its_max_fails_saying_so(tmp_path):
    result = run(tmp_path, """
        version: 1
        jobs:
          poll:
            repeat:
              until: ${{ outputs.index >= 10 }}
              max: 3
            outputs:
              index: ${{ repeat.index }}
    """)
    assert result.returncode == 1
    poll = result.job("poll")
    assert poll["result"] == "failure"
    assert poll["reason"] == "repeat limit (3) reached without until becoming true"
    assert poll["attempts"] == 3
    assert "repeat limit (3) reached without until becoming true" in result.stdout


# -- retry ----------------------------------------------------------------------------------


def test_retry_after_a_first_failure_keeps_both_logs_and_uses_a_fresh_container(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          flaky:
            image: {BUSYBOX_IMAGE}
            retry: {{attempts: 3, delay: 1s}}
            steps:
              - id: try
                run: |
                  echo x >> /workspace/flaky-count
                  n=$(wc -l < /workspace/flaky-count | tr -d ' ')
                  echo "attempt $n on $(hostname)"
                  [ "$n" -ge 2 ]
    """)
    assert result.returncode == 0, result.output
    flaky = result.job("flaky")
    assert flaky["result"] == "success"
    assert flaky["attempts"] == 2
    retried = [line for line in result.stdout.splitlines() if line.startswith("↻ flaky attempt 2")]
    assert len(retried) == 1, result.stdout
    assert "exit code 1" in retried[0]
    logs = result.logs()
    first, second = logs["flaky/try.log"], logs["flaky/try.attempt-2.log"]
    assert first.startswith("attempt 1 on ") and second.startswith("attempt 2 on ")
    assert first.split()[-1] != second.split()[-1]  # a fresh container for each attempt
    assert "flaky/try.attempt-3.log" not in logs
    assert containers(docker, result.summary["run_id"]) == []


def test_retry_on_exit_codes_retries_only_the_codes_listed(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          other_code:
            retry: {{attempts: 3, on_exit_codes: [3]}}
            steps:
              - id: die
                run: exit 1
          listed_code:
            retry: {{attempts: 3, on_exit_codes: [3]}}
            steps:
              - id: die
                run: |
                  echo x >> /workspace/listed-count
                  [ "$(wc -l < /workspace/listed-count)" -ge 2 ] || exit 3
    """)
    assert result.returncode == 1
    other = result.job("other_code")
    assert other["result"] == "failure"
    assert other["attempts"] == 1
    assert other["reason"] == "step `die` failed: exit code 1"
    assert not any(line.startswith("↻ other_code") for line in result.stdout.splitlines())
    listed = result.job("listed_code")
    assert listed["result"] == "success" and listed["attempts"] == 2


# -- conditions -----------------------------------------------------------------------------


def test_if_always_cleanup_runs_after_a_failure_and_sees_it(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          x:
            run: exit 1
          cleanup:
            needs: x
            if: always() and jobs.x.result == 'failure'
            steps:
              - id: tidy
                run: echo "cleaning up after ${{{{ jobs.x.result }}}}"
    """)
    assert result.returncode == 1
    assert result.job("x")["result"] == "failure"
    assert result.job("cleanup")["result"] == "success"
    assert result.lines("cleanup", "tidy") == ["cleaning up after failure"]


def test_if_failure_runs_only_when_a_need_failed(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        defaults: {{image: {BUSYBOX_IMAGE}}}
        jobs:
          broken:
            run: exit 1
          fine:
            run: "true"
          on_broken:
            needs: broken
            if: failure()
            outputs: {{saw: "${{{{ jobs.broken.result }}}}"}}
          on_fine:
            needs: fine
            if: failure()
            outputs: {{saw: "${{{{ jobs.fine.result }}}}"}}
    """)
    assert result.returncode == 1
    assert result.job("on_broken")["result"] == "success"
    assert result.job("on_broken")["outputs"] == {"saw": "failure"}
    assert result.job("on_fine")["result"] == "skipped"
    assert result.job("on_fine")["reason"] == "if was false"


def test_job_whose_need_was_skipped_is_skipped_saying_so(tmp_path):
    result = run(tmp_path, """
        version: 1
        jobs:
          lint:
            if: ${{ false }}
            outputs: {ok: true}
          test:
            needs: lint
            outputs: {ok: true}
          report:
            needs: test
            if: always()
            outputs:
              saw: ${{ jobs.test.result }}
    """)
    assert result.returncode == 0, result.output
    assert result.job("lint")["result"] == "skipped"
    assert result.job("lint")["reason"] == "if was false"
    assert result.job("test")["result"] == "skipped"
    assert result.job("test")["reason"] == "needs lint was skipped"
    assert result.job("report")["outputs"] == {"saw": "skipped"}
    assert result.summary["status"] == "success"


def test_step_continue_on_error_lets_later_steps_run_and_records_the_failure(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          check:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: lint
                continue_on_error: true
                run: |
                  echo "lint complains"
                  exit 4
              - id: after
                run: echo "still running after ${{{{ steps.lint.result }}}}"
            outputs:
              lint: ${{{{ steps.lint.result }}}}
              after: ${{{{ steps.after.result }}}}
    """)
    assert result.returncode == 0, result.output
    check = result.job("check")
    assert check["result"] == "success"
    assert check["outputs"] == {"lint": "failure", "after": "success"}
    assert "continue_on_error" not in check  # the job itself did not fail
    assert result.lines("check", "after") == ["still running after failure"]
    # The tolerated failure stays visible: the job's reason, the console, the step's log.
    assert check["reason"] == "step `lint` failed: exit code 4 (continue_on_error)"
    assert "[check/lint] continuing after a failure (continue_on_error): step `lint` failed: exit code 4" in result.stdout
    assert "continuing after a failure" in result.lines("check", "lint")[-1]
    logs = cli("logs", result.summary["run_id"], "check/lint", cwd=tmp_path)
    assert "continuing after a failure (continue_on_error)" in logs.stdout, logs.stdout + logs.stderr


def test_job_continue_on_error_records_the_failure_and_the_run_succeeds(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          lint:
            image: {BUSYBOX_IMAGE}
            continue_on_error: true
            steps:
              - id: check
                run: exit 2
          test:
            needs: lint
            outputs:
              saw: ${{{{ jobs.lint.result }}}}
    """)
    assert result.returncode == 0, result.output
    lint = result.job("lint")
    assert lint["result"] == "failure"
    assert lint["continue_on_error"] is True
    assert lint["reason"] == "step `check` failed: exit code 2"
    assert result.job("test")["result"] == "success"
    assert result.job("test")["outputs"] == {"saw": "failure"}
    assert result.summary["status"] == "success"


# -- timeouts -------------------------------------------------------------------------------


def test_step_timeout_fails_the_job_naming_the_step_and_removes_the_container(docker, tmp_path):
    result = run(tmp_path, f"""
        version: 1
        jobs:
          slow:
            image: {BUSYBOX_IMAGE}
            steps:
              - id: first
                run: echo "before the wait"
              - id: wait
                timeout: 1s
                run: sleep 30
              - id: never
                run: echo "must not run"
    """)
    assert result.returncode == 1
    assert result.summary["duration_s"] < 15, result.summary["duration_s"]
    slow = result.job("slow")
    assert slow["result"] == "failure"
    assert slow["reason"] == "step `wait` timed out after 1s"
    assert "step `wait` timed out after 1s" in result.stdout
    assert "must not run" not in result.stdout
    assert containers(docker, result.summary["run_id"]) == []


def test_job_timeout_applies_to_each_attempt_of_a_retry(docker, tmp_path):
    # Observed and expected: `timeout` bounds each attempt, not the job's attempts
    # together. The first attempt is cut at 3s; the second gets a fresh 3s and
    # succeeds, so the job succeeds although it took longer than 3s in all.
    result = run(tmp_path, f"""
        version: 1
        jobs:
          slow:
            image: {BUSYBOX_IMAGE}
            timeout: 3s
            retry: 2
            steps:
              - id: wait
                run: |
                  echo x >> /workspace/slow-count
                  n=$(wc -l < /workspace/slow-count | tr -d ' ')
                  echo "attempt $n"
                  if [ "$n" = 1 ]; then sleep 30; fi
    """)
    assert result.returncode == 0, result.output
    slow = result.job("slow")
    assert slow["result"] == "success"
    assert slow["attempts"] == 2
    assert slow["duration_s"] > 3  # the first attempt cut off at 3s, then the second
    retried = [line for line in result.stdout.splitlines() if line.startswith("↻ slow attempt 2")]
    assert retried and "timed out after 3s" in retried[0], result.stdout
    assert result.summary["duration_s"] < 20
    assert containers(docker, result.summary["run_id"]) == []
