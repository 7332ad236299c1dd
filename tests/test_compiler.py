"""runner/compiler.py, through load_workflow: graph checks, name checks, the compiled model."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest

from conftest import write
from runner.load import document as loader, schema
from runner.load.compiler import compile_document
from runner.model import checks
from runner.model.durations import format_duration, parse_duration
from runner.errors import Problem, Severity, WorkflowInvalid
from runner.load.workflow import load_workflow


def invalid(tmp_path: Path, text: str) -> list[Problem]:
    """The problems load_workflow reports for `text`; asserts that it refuses it."""
    path = write(tmp_path, text)
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(path)
    for problem in info.value.problems:
        assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", str(problem)), str(problem)
    return info.value.problems


def valid(tmp_path: Path, text: str):
    path = write(tmp_path, text)
    return load_workflow(path)


def one(problems: list[Problem]) -> Problem:
    errors = [p for p in problems if p.severity is Severity.ERROR]
    assert len(errors) == 1, "\n".join(map(str, problems))
    return errors[0]


def where(problem: Problem) -> tuple[int, int]:
    return problem.location.line, problem.location.col


# -- needs and the graph -------------------------------------------------------


def test_unknown_need_is_reported_with_a_suggestion(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            jobs:
              build: {outputs: {x: 1}}
              test:
                needs: biuld
            """,
        )
    )
    assert where(problem) == (5, 12)
    assert "`biuld`, which is not a job" in problem.message
    assert "did you mean `build`?" in problem.message


def test_unknown_need_in_a_list_is_reported_at_the_item(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            jobs:
              build: {outputs: {x: 1}}
              test:
                needs: [build, deploy]
            """,
        )
    )
    assert where(problem) == (5, 20)
    assert "`deploy`" in problem.message


def test_job_that_needs_itself_is_reported(tmp_path):
    problem = one(invalid(tmp_path, "version: 1\njobs:\n  a:\n    needs: [a]\n"))
    assert where(problem) == (4, 13)
    assert "`a` needs itself" in problem.message


def cycle_messages(problems: list[Problem]) -> list[str]:
    return [p.message for p in problems if "cycle" in p.message]


def test_cycle_is_printed_as_a_path_once(tmp_path):
    problems = invalid(
        tmp_path,
        """
        version: 1
        jobs:
          a: {needs: c}
          b: {needs: a}
          c: {needs: b}
          d: {needs: a}
        """,
    )
    messages = cycle_messages(problems)
    assert len(messages) == 1, messages
    path = re.search(r"(\w+(?: → \w+)+)$", messages[0]).group(1).split(" → ")
    # a needs c, b needs a, c needs b: the work flows c → a → b → c.
    assert len(path) == 4 and path[0] == path[-1]
    assert set(path) == {"a", "b", "c"}
    rotations = [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert path[:3] in rotations, messages[0]


def test_two_job_cycle(tmp_path):
    messages = cycle_messages(invalid(tmp_path, "version: 1\njobs:\n  a: {needs: b}\n  b: {needs: a}\n"))
    assert len(messages) == 1
    assert messages[0].endswith(("a → b → a", "b → a → b"))


def test_two_separate_cycles_are_both_reported(tmp_path):
    messages = cycle_messages(
        invalid(
            tmp_path,
            """
            version: 1
            jobs:
              a: {needs: b}
              b: {needs: a}
              x: {needs: y}
              y: {needs: x}
            """,
        )
    )
    assert len(messages) == 2, messages


def test_cycle_in_a_10000_job_file_is_reported_quickly(tmp_path):
    lines = ["version: 1", "jobs:", "  a: {needs: c}", "  b: {needs: a}", "  c: {needs: b}"]
    lines += ["  j0: {needs: a}"] + [f"  j{i}: {{needs: j{i - 1}}}" for i in range(1, 10_000)]
    path = tmp_path / "big.yml"
    path.write_text("\n".join(lines) + "\n")
    doc = loader.load_file(path)
    assert schema.check(doc) == []
    start = time.perf_counter()
    with pytest.raises(WorkflowInvalid) as info:
        compile_document(doc, load_child=None)
    elapsed = time.perf_counter() - start
    messages = cycle_messages(info.value.problems)
    assert len(messages) == 1, messages[:3]
    assert re.search(r"(a|b|c) → (a|b|c) → (a|b|c) → (a|b|c)$", messages[0]), messages[0]
    assert elapsed < 20, f"compiling took {elapsed:.1f} s"  # a runaway, not a speed goal (benchmarks/)


def test_long_cycle_in_a_10000_job_file_is_reported_quickly(tmp_path):
    lines = ["version: 1", "jobs:", "  j0: {needs: j9999}"] + [f"  j{i}: {{needs: j{i - 1}}}" for i in range(1, 10_000)]
    path = tmp_path / "ring.yml"
    path.write_text("\n".join(lines) + "\n")
    doc = loader.load_file(path)
    start = time.perf_counter()
    with pytest.raises(WorkflowInvalid) as info:
        compile_document(doc, load_child=None)
    elapsed = time.perf_counter() - start
    assert len(cycle_messages(info.value.problems)) == 1
    assert elapsed < 20, f"compiling took {elapsed:.1f} s"  # a runaway, not a speed goal (benchmarks/)


def test_topological_order_respects_needs(tmp_path):
    workflow, _ = valid(
        tmp_path,
        """
        version: 1
        jobs:
          report: {needs: [test, lint], outputs: {x: 1}}
          test: {needs: build, outputs: {x: 1}}
          lint: {outputs: {x: 1}}
          build: {needs: fetch, outputs: {x: 1}}
          fetch: {outputs: {x: 1}}
        """,
    )
    order = list(workflow.order)
    assert sorted(order) == sorted(workflow.jobs)
    for job in workflow.jobs.values():
        for need in job.needs:
            assert order.index(need) < order.index(job.id), order


def test_dependents_are_the_reverse_of_needs(tmp_path):
    workflow, _ = valid(
        tmp_path,
        "version: 1\njobs:\n  a: {outputs: {x: 1}}\n  b: {needs: a}\n  c: {needs: [a, b]}\n",
    )
    assert set(workflow.dependents["a"]) == {"b", "c"}
    assert set(workflow.dependents["b"]) == {"c"}
    assert workflow.dependents["c"] == ()


# -- jobs.<id> references ------------------------------------------------------


def test_jobs_reference_without_needing_the_job_is_reported(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            jobs:
              a: {outputs: {x: 1}}
              b:
                outputs:
                  y: ${{ jobs.a.outputs.x }}
            """,
        )
    )
    assert where(problem) == (6, 10)
    assert "does not need `a`" in problem.message
    assert "needs" in problem.message
    assert problem.key_path == "jobs.b.outputs.y"


def test_jobs_reference_with_a_direct_need_is_valid(tmp_path):
    valid(
        tmp_path,
        """
        version: 1
        jobs:
          a: {outputs: {x: 1}}
          b:
            needs: a
            outputs:
              y: ${{ jobs.a.outputs.x }}
        """,
    )


def test_jobs_reference_through_a_transitive_need_is_valid(tmp_path):
    valid(
        tmp_path,
        """
        version: 1
        jobs:
          a: {outputs: {x: 1}}
          b: {needs: a, outputs: {x: 2}}
          c:
            needs: b
            outputs:
              y: ${{ jobs.a.outputs.x }}
        """,
    )


def test_reference_to_a_job_that_does_not_exist_suggests_one(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            jobs:
              build: {outputs: {x: 1}}
              b:
                needs: build
                outputs:
                  y: ${{ jobs.biuld.outputs.x }}
            """,
        )
    )
    assert "no job `biuld`" in problem.message
    assert "did you mean `build`?" in problem.message


def test_workflow_outputs_may_use_any_job(tmp_path):
    valid(
        tmp_path,
        "version: 1\njobs:\n  a: {outputs: {x: 1}}\noutputs:\n  total: ${{ jobs.a.outputs.x }}\n",
    )


# -- steps.<id> references -----------------------------------------------------


def test_unknown_step_id_is_reported(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            defaults: {image: alpine}
            jobs:
              a:
                steps:
                  - id: build
                    run: echo
                outputs:
                  size: ${{ steps.biuld.outputs.size }}
            """,
        )
    )
    assert where(problem) == (9, 13)
    assert "no step with id `biuld`" in problem.message
    assert "did you mean `build`?" in problem.message


def test_step_referenced_before_it_runs_is_reported(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            defaults: {image: alpine}
            jobs:
              a:
                steps:
                  - run: echo "${{ steps.later.outputs.x }}"
                  - id: later
                    run: echo
            """,
        )
    )
    assert where(problem) == (6, 14)
    assert "step `later` has not run yet" in problem.message
    assert problem.key_path == "jobs.a.steps[0].run"


def test_step_referenced_after_it_runs_is_valid(tmp_path):
    valid(
        tmp_path,
        """
        version: 1
        defaults: {image: alpine}
        jobs:
          a:
            steps:
              - id: first
                run: echo
              - run: echo "${{ steps.first.outputs.x }}"
            outputs:
              x: ${{ steps.first.outputs.x }}
        """,
    )


def test_duplicate_step_id_is_reported(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            defaults: {image: alpine}
            jobs:
              a:
                steps:
                  - {id: s, run: echo}
                  - {id: s, run: echo}
            """,
        )
    )
    assert problem.location.line == 7
    assert "used twice" in problem.message


# -- inputs, secrets and other names -------------------------------------------


def test_undeclared_input_is_reported_with_a_suggestion(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            inputs:
              name: {type: string}
            jobs:
              a:
                outputs:
                  x: ${{ inputs.nmae }}
            """,
        )
    )
    assert where(problem) == (7, 10)
    assert "no input named `nmae`" in problem.message
    assert "did you mean `name`?" in problem.message


def test_undeclared_secret_is_reported(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            secrets: [API_TOKEN]
            jobs:
              a:
                outputs:
                  x: ${{ secrets.API_TOKN }}
            """,
        )
    )
    assert where(problem) == (6, 10)
    assert "no secret named `API_TOKN`" in problem.message
    assert "did you mean `API_TOKEN`?" in problem.message


def test_unknown_name_is_reported_with_what_is_in_scope(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            jobs:
              a:
                outputs:
                  x: ${{ inptus.name }}
            """,
        )
    )
    assert where(problem) == (5, 10)
    assert "`inptus` is not defined here" in problem.message
    assert "did you mean `inputs`?" in problem.message
    assert "in scope:" in problem.message


def test_status_function_outside_if_is_reported(tmp_path):
    problem = one(invalid(tmp_path, "version: 1\njobs:\n  a:\n    outputs:\n      x: ${{ always() }}\n"))
    assert "only be used in `if:`" in problem.message


def test_status_function_in_if_is_valid(tmp_path):
    valid(tmp_path, "version: 1\njobs:\n  a: {outputs: {x: 1}}\n  b: {needs: a, if: always(), outputs: {x: 1}}\n")


def test_unknown_matrix_axis_is_reported(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            jobs:
              a:
                matrix: {shard: [1, 2]}
                outputs:
                  x: ${{ matrix.shrad }}
            """,
        )
    )
    assert where(problem) == (6, 10)
    assert "no axis `shrad`" in problem.message
    assert "did you mean `shard`?" in problem.message


def test_matrix_axis_from_include_is_known(tmp_path):
    valid(
        tmp_path,
        """
        version: 1
        jobs:
          a:
            matrix:
              shard: [1, 2]
              include: [{shard: 1, extra: x}]
            outputs:
              x: ${{ matrix.extra }}
        """,
    )


def test_matrix_outside_a_matrix_job_is_reported(tmp_path):
    problem = one(invalid(tmp_path, "version: 1\njobs:\n  a:\n    outputs:\n      x: ${{ matrix.shard }}\n"))
    assert "`matrix` is not defined here" in problem.message


# -- templates -----------------------------------------------------------------


def test_template_that_does_not_parse_is_reported_at_its_field(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            jobs:
              a:
                outputs:
                  ok: ${{ 1 + 1 }}
                  broken: ${{ 1 + }}
            """,
        )
    )
    assert "does not parse" in problem.message
    assert where(problem) == (6, 15)
    assert problem.key_path == "jobs.a.outputs.broken"


def test_unclosed_expression_is_reported(tmp_path):
    problem = one(invalid(tmp_path, "version: 1\njobs:\n  a:\n    outputs:\n      x: \"${{ 1 + 1 }\"\n"))
    assert "never closed" in problem.message
    assert problem.location.line == 5


def test_unknown_filter_is_reported_at_its_field(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            jobs:
              a:
                outputs:
                  ok: ${{ 'x' | upper }}
                  shout: ${{ 'x' | uppper }}
            """,
        )
    )
    assert "no filter named `uppper`" in problem.message
    assert where(problem) == (6, 14)


def test_every_broken_template_is_reported(tmp_path):
    problems = invalid(
        tmp_path,
        """
        version: 1
        jobs:
          a:
            outputs:
              x: ${{ 1 + }}
              y: ${{ 'a' | nosuchfilter }}
              z: ${{ nosuch.name }}
        """,
    )
    lines = sorted(p.location.line for p in problems)
    assert lines == [5, 6, 7], "\n".join(map(str, problems))


def test_bad_template_in_a_step_script_is_reported(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            """
            version: 1
            defaults: {image: alpine}
            jobs:
              a:
                steps:
                  - run: echo "${{ 'a' | nope }}"
            """,
        )
    )
    assert "no filter named `nope`" in problem.message
    assert problem.key_path == "jobs.a.steps[0].run"


def test_expression_in_single_quotes_in_sh_is_a_warning(tmp_path):
    workflow, warnings = valid(
        tmp_path,
        """
        version: 1
        defaults: {image: alpine}
        inputs:
          who: {type: string, default: world}
        jobs:
          a:
            run: echo 'hello ${{ inputs.who }}'
        """,
    )
    assert "a" in workflow.jobs
    assert len(warnings) == 1
    warning = warnings[0]
    assert warning.severity is Severity.WARNING
    assert "single quotes" in warning.message
    assert where(warning) == (7, 10)
    assert "warning:" in str(warning)


def test_expression_in_double_quotes_gives_no_warning(tmp_path):
    _, warnings = valid(
        tmp_path,
        """
        version: 1
        defaults: {image: alpine}
        inputs:
          who: {type: string, default: world}
        jobs:
          a:
            run: echo "it's ${{ inputs.who }}"  # it's fine
        """,
    )
    assert warnings == []


def test_expression_in_single_quotes_in_python_gives_no_warning(tmp_path):
    _, warnings = valid(
        tmp_path,
        """
        version: 1
        defaults: {image: alpine}
        inputs:
          who: {type: string, default: world}
        jobs:
          a:
            shell: python
            run: print('hello', ${{ inputs.who }})
        """,
    )
    assert warnings == []


def test_warnings_come_with_errors_when_the_file_is_invalid(tmp_path):
    problems = invalid(
        tmp_path,
        """
        version: 1
        defaults: {image: alpine}
        jobs:
          a:
            run: echo '${{ inputs.nope }}'
        """,
    )
    severities = sorted(p.severity for p in problems)
    assert severities == [Severity.WARNING, Severity.ERROR]


# -- durations and memory ------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1h30m", 5400),
        ("90", 90),
        (90, 90),
        (1.5, 1.5),
        ("30s", 30),
        ("5m", 300),
        ("500ms", 0.5),
        ("1d", 86400),
        ("1m30s", 90),
        ("0", 0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5 minutes", "-1", -1, True, "1h-30m", "m5"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "text, size",
    [
        (67108864, 67108864),
        ("64m", 64 * 1024**2),
        ("64MiB", 64 * 1024**2),
        ("512k", 512 * 1024),
        ("2g", 2 * 1024**3),
        ("1G", 1024**3),
        ("1024", 1024),
    ],
)
def test_memory(text, size):
    assert checks.memory(text) == size


@pytest.mark.parametrize("text", ["lots", "", "64x", "m", "0"])
def test_memory_refuses(text):
    with pytest.raises(checks.FieldError, match="is not an amount of memory"):
        checks.memory(text)


@pytest.mark.parametrize("seconds, text", [(5, "5s"), (90, "1m30s"), (5400, "1h30m"), (3600, "1h")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_durations_and_memory_are_compiled_to_numbers(tmp_path):
    workflow, _ = valid(
        tmp_path,
        """
        version: 1
        timeout: 1h
        defaults: {image: alpine, timeout: 10m}
        jobs:
          a:
            run: echo
            timeout: 1h30m
            resources: {memory: 64m}
            retry: {attempts: 3, delay: 30s}
          b:
            run: echo
        """,
    )
    assert workflow.timeout == 3600
    a = workflow.jobs["a"]
    assert a.timeout == 5400
    assert a.container.resources.memory == 64 * 1024**2
    assert a.retry.attempts == 3 and a.retry.delay == 30
    assert workflow.jobs["b"].timeout == 600


def test_bad_memory_is_reported(tmp_path):
    problem = one(
        invalid(
            tmp_path,
            "version: 1\ndefaults: {image: alpine}\njobs:\n  a:\n    run: echo\n    resources: {memory: lots}\n",
        )
    )
    assert "memory" in problem.message and "512m" in problem.message
    assert problem.location.line == 6


# -- the compiled workflow -----------------------------------------------------

SMALL = """
version: 1
defaults: {image: alpine}
jobs:
  a:
    matrix: {shard: [1, 2]}
    steps:
      - id: s
        run: echo "${{ matrix.shard }}"
    outputs:
      x: ${{ steps.s.outputs.x }}
"""


def test_workflow_fields_cannot_be_assigned(tmp_path):
    workflow, _ = valid(tmp_path, SMALL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        workflow.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        workflow.jobs["a"].needs = ("b",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        workflow.jobs["a"].container.steps[0].shell = "bash"


def test_jobs_mapping_cannot_be_mutated(tmp_path):
    workflow, _ = valid(tmp_path, SMALL)
    with pytest.raises(TypeError):
        workflow.jobs["b"] = workflow.jobs["a"]
    with pytest.raises(TypeError):
        del workflow.jobs["a"]
    with pytest.raises(TypeError):
        workflow.jobs["a"].outputs["y"] = "z"
    with pytest.raises(AttributeError):
        workflow.jobs["a"].container.steps.append(None)


def test_nested_job_values_cannot_be_mutated(tmp_path):
    workflow, _ = valid(tmp_path, SMALL)
    with pytest.raises(TypeError):
        workflow.jobs["a"].matrix["shard"] = (3,)


def test_compiled_job_kinds_and_names(tmp_path):
    workflow, _ = valid(
        tmp_path,
        """
        version: 1
        name: demo
        defaults: {image: alpine}
        jobs:
          c: {run: echo, name: Container job}
          v: {outputs: {x: 1}}
        """,
    )
    assert workflow.name == "demo"
    assert workflow.jobs["c"].kind.value == "container"
    assert workflow.jobs["c"].name == "Container job"
    assert workflow.jobs["v"].kind.value == "value"
    assert workflow.jobs["v"].name == "v"


def test_workflow_name_defaults_to_the_file_name(tmp_path):
    path = write(tmp_path, "version: 1\njobs:\n  a: {outputs: {x: 1}}\n", name="nightly-build.yml")
    workflow, _ = load_workflow(path)
    assert workflow.name == "nightly-build"


def test_container_job_without_an_image_is_reported(tmp_path):
    problem = one(invalid(tmp_path, "version: 1\njobs:\n  a:\n    run: echo\n"))
    assert "names no `image`" in problem.message


# -- http and llm jobs are compiled ---------------------------------------------


def test_http_and_llm_jobs_are_compiled_to_typed_specs(tmp_path):
    from runner.expr.templates import Template
    from runner.model.workflow import BodyKind, HttpSpec, LlmSpec

    workflow, _ = valid(
        tmp_path,
        """
        version: 1
        inputs:
          path: {type: string, default: x}
        jobs:
          post:
            http:
              method: POST
              url: "https://example.test/${{ inputs.path }}"
              json: {a: 1}
              timeout: 30s
              max_bytes: 1000
              follow_redirects: true
              expect: 201
          ask:
            llm: {model: m, prompt: hi, temperature: 0.5, max_tokens: 10, json: true, timeout: 1m}
        """,
    )
    http = workflow.jobs["post"].http
    assert isinstance(http, HttpSpec)
    assert (http.method, http.timeout, http.max_bytes, http.follow_redirects, http.expect) == ("POST", 30, 1000, True, (201,))
    assert isinstance(http.url, Template) and http.body_kind is BodyKind.JSON and http.body == {"a": 1}
    llm = workflow.jobs["ask"].llm
    assert isinstance(llm, LlmSpec)
    assert (llm.model, llm.prompt, llm.temperature, llm.max_tokens, llm.json, llm.timeout) == ("m", "hi", 0.5, 10, True, 60)
    assert not hasattr(workflow.jobs["post"], "spec")


def test_literal_mistakes_in_http_and_llm_jobs_are_reported_where_they_are(tmp_path):
    problems = invalid(
        tmp_path,
        """
        version: 1
        jobs:
          a:
            http: {url: "ftp://example.test/x", timeout: 0}
          b:
            llm: {model: m, prompt: hi, base_url: "file:///etc", timeout: 0s}
        """,
    )
    found = {(where(p), p.message) for p in problems}
    assert ((4, 17), "url: `ftp://example.test/x` must be absolute and start with http:// or https://") in found
    assert ((4, 50), "timeout: must be more than 0") in found
    assert ((6, 43), "base_url: `file:///etc/chat/completions` must be absolute and start with http:// or https://") in found
    assert ((6, 67), "timeout: must be more than 0") in found


# -- timeouts ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "0s", "0m0s", "0.0"])
def test_a_timeout_of_zero_is_refused_at_each_level(tmp_path, value):
    problems = invalid(
        tmp_path,
        f"""
        version: 1
        timeout: {value}
        defaults: {{image: alpine, timeout: {value}}}
        jobs:
          a:
            timeout: {value}
            steps:
              - run: echo
                timeout: {value}
        """,
    )
    assert sorted((where(p), p.message) for p in problems) == [
        ((2, 10), "timeout: must be more than 0"),
        ((3, 36), "timeout: must be more than 0"),
        ((6, 14), "timeout: must be more than 0"),
        ((9, 18), "timeout: must be more than 0"),
    ]


# -- every problem of a file at once -------------------------------------------


def test_a_schema_error_does_not_hide_reference_errors_elsewhere(tmp_path):
    problems = invalid(
        tmp_path,
        """
        version: 1
        jobs:
          a:
            outputs: {x: 1}
            need: b
          b:
            outputs: {y: "${{ inputs.nope }}"}
          c:
            timeout: soon
            outputs: {z: "${{ jobs.a.outputs.x }}"}
        """,
    )
    messages = sorted((where(p), p.message.split(";")[0]) for p in problems)
    assert ((5, 5), "unknown key `need`") in messages
    assert ((7, 18), "in `inputs.nope`: no input named `nope` is declared") in messages
    assert ((9, 14), "expected a duration like 90, 30s, 5m or 1h30m (units ms, s, m, h, d), or a `${{ }}` expression") in messages
    assert ((10, 18), "in `jobs.a.outputs.x`: job `c` uses `jobs.a` but does not need `a`") in messages


def test_schema_invalid_parts_do_not_crash_the_compiler(tmp_path):
    problems = invalid(
        tmp_path,
        """
        version: 1
        inputs: {x: 3, y: {type: nope}}
        defaults: []
        jobs:
          a: 5
          b: {steps: notalist, outputs: {v: "${{ steps.s.outputs.v }}"}}
          c: {http: {method: FETCH}, needs: [1, 2], outputs: {v: "${{ response.status }}"}}
          d: {llm: {messages: [{role: robot}]}, retry: {attempts: 0}}
          e: {uses: x.txt, with: {"bad name": 1}}
          f: {outputs: {v: "${{ matrix.z }}"}, matrix: 3}
          g: {outputs: {v: "${{ inputs.z }}"}}
        """,
    )
    assert all(p.location.line >= 2 for p in problems)
    assert [p.message for p in problems if "inputs.z" in p.message] == ["in `inputs.z`: no input named `z` is declared"]
    assert not [p for p in problems if "matrix.z" in p.message]  # follows from the wrong matrix


def test_an_unknown_filter_does_not_hide_the_other_names(tmp_path):
    problems = invalid(
        tmp_path,
        """
        version: 1
        jobs:
          a:
            outputs: {x: "${{ inputs.nope | nofilter }}"}
        """,
    )
    messages = sorted(p.message for p in problems)
    assert any("no filter named `nofilter`" in m for m in messages), messages
    assert any("no input named `nope`" in m for m in messages), messages


def test_an_expression_in_a_block_scalar_is_located_at_its_own_line(tmp_path):
    problems = invalid(
        tmp_path,
        """
        version: 1
        defaults: {image: alpine}
        jobs:
          a:
            run: |
              echo one
                echo "${{ inputs.nope }}" ${{ 1 + }}
          b:
            outputs:
              folded: >
                a
                b ${{ nosuch }}
              plain: first
                second ${{ inputs.other }}
              quoted: "first
                  then ${{ secrets.X }}"
              single: echo ${{ inputs.same_line }}
        """,
    )
    found = {(where(p), p.message.split(":")[0]) for p in problems}
    assert ((7, 15), "in `inputs.nope`") in found
    assert ((7, 35), "expression `1 +` does not parse") in found
    assert ((12, 11), "in `nosuch`") in found
    assert ((14, 16), "in `inputs.other`") in found
    assert ((16, 16), "in `secrets.X`") in found
    assert ((17, 15), "in `inputs.same_line`") in found  # on the value's first line: the value
