"""Fuzzing validation: random YAML and mutated example workflows never crash, hang or leak a traceback.

Validation may refuse a file (WorkflowInvalid) or accept it; any other exception
is a bug, and so is a file that takes more than two seconds. Most examples run
in-process through `runner.load.workflow.load_workflow`, which is what `runner
validate` calls; a few go through the real command line. A test of its own
checks that every problem is placed at a line and column, so that a failure of
that property does not stop the search for crashes. Hypothesis is derandomized,
so CI sees the same examples on every run: about 2,900 in-process ones in all
(`--hypothesis-show-statistics` shows how many got past validation).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import ROOT, cli
from runner.errors import WorkflowInvalid
from runner.load.workflow import load_workflow

TIME_LIMIT = 2.0  # seconds for one validation
HANG_LIMIT = 20.0  # past this a validation is interrupted, so that a hang fails the test instead of CI

FUZZ = settings(
    deadline=None,  # timed by hand below, against TIME_LIMIT
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

SOURCES = {
    path.relative_to(ROOT / "workflows").as_posix(): path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "workflows").rglob("*.yml"))
    if ".runner" not in path.parts
}


# -- running validation ----------------------------------------------------------


class Hang(Exception):
    pass


@contextmanager
def interrupt_after(seconds: float):
    def expire(signum, frame):
        raise Hang(f"validation still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A copy of workflows/, so that a mutated `uses: lib/…` still finds its file."""
    directory = tmp_path_factory.mktemp("fuzz") / "workflows"
    shutil.copytree(ROOT / "workflows", directory, ignore=shutil.ignore_patterns(".runner"))
    return directory


def validate(raw: bytes, directory: Path, positions: bool = False) -> str:
    """Validate `raw` as a workflow file in-process; 'valid' or 'invalid', and fail on anything else.

    With `positions`, every problem must also be placed at a line and column.
    """
    path = directory / "fuzzed.yml"
    path.write_bytes(raw)
    started = time.perf_counter()
    try:
        with interrupt_after(HANG_LIMIT):
            load_workflow(path)
        verdict = "valid"
    except WorkflowInvalid as e:
        assert e.problems, "WorkflowInvalid without a problem"
        for problem in e.problems:
            assert problem.message.strip(), problem
            if positions:  # `file:line:col: message`: every problem is placed in the file.
                assert problem.location.line >= 1 and problem.location.col >= 1, f"problem without a position: {problem}"
        verdict = "invalid"
    elapsed = time.perf_counter() - started
    assert elapsed < TIME_LIMIT, f"validation took {elapsed:.2f}s"
    return verdict


# -- strategies: text ----------------------------------------------------------------

YAML_TOKENS = st.sampled_from([
    ":", ": ", "-", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "!", "!!str ", "!!python/object:os.system ",
    "|", ">", "'", '"', "#", "%YAML 1.2\n", "@", "`", "?", "\n", "\t", " ", "  ", "${{", "}}", "{{", "<<: ",
    "---\n", "...\n", "version: 1\n", "jobs:\n", "  build:\n", "    run: ", "    needs: ", "    steps:\n",
    "      - run: ", "image: alpine:3.20", "\\", "\r\n", "\ufeff", "\x85", "\u2028",
])
yamlish_text = st.lists(st.one_of(st.text(max_size=8), YAML_TOKENS), max_size=60).map("".join)

NAMES = ["inputs", "jobs", "steps", "matrix", "env", "secrets", "run", "response", "outputs", "repeat",
         "range", "lipsum", "cycler", "self", "namespace", "dict", "x", "build", "a"]
EXPRESSION_TOKENS = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from([
        ".outputs", ".result", ".x", ".id", ".__class__", ".__globals__", ".__mro__", "['k']", "[0]", "(", ")",
        "always()", "success()", "failure()", "cancelled()", "+", "-", "*", "**", "%", "//", "~", "and", "or",
        "not", "in", "is", "==", "if", "else", "|", "| upper", "| int", "| raw", "| tojson", "| fromjson",
        "| map(attribute='x')", "| nosuchfilter", "is defined", "1", "'x'", '"}}"', "[1, 2]", "{'a': 1}",
        "9 ** 99", "'x' * 10", "'%99999999d' % 1", ",", "{%", "%}", "}}", "${{",
    ]),
    st.text(max_size=6),
)
expression_body = st.one_of(
    st.lists(EXPRESSION_TOKENS, min_size=1, max_size=8).map(" ".join),
    st.text(max_size=30),
)
expression = expression_body.map(lambda body: "${{ " + body + " }}")


# -- strategies: structured YAML -------------------------------------------------------


def _schema_keys() -> list[str]:
    schema = json.loads((ROOT / "runner" / "workflow.schema.json").read_text(encoding="utf-8"))
    keys: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "properties" and isinstance(value, dict):
                    keys.update(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return sorted(keys)


SCHEMA_KEYS = _schema_keys()
job_id = st.one_of(st.sampled_from(["build", "test", "a", "b", "deploy"]), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True), st.text(max_size=5))
key = st.one_of(st.sampled_from(SCHEMA_KEYS), job_id)
scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20), expression,
    st.sampled_from(["alpine:3.20", "sh", "bash", "python", "node", "30s", "1h30m", "-1s", "always()",
                     "bridge", "none", "GET", "64m", "0.5", "string", "integer", "array", "lib/count-words.yml",
                     "fuzzed.yml", "echo hi", "exit 1"]),
)
value = st.recursive(
    scalar, lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(key, children, max_size=5)),
    max_leaves=25,
)
job = st.dictionaries(
    st.sampled_from(["image", "run", "steps", "needs", "if", "outputs", "matrix", "env", "timeout", "retry",
                     "repeat", "uses", "with", "http", "llm", "continue_on_error", "resources", "network", "shell"]),
    value, max_size=6,
)
workflow_document = st.fixed_dictionaries(
    {"version": st.one_of(st.just(1), scalar), "jobs": st.dictionaries(job_id, job, min_size=1, max_size=4)},
    optional={
        "inputs": st.dictionaries(job_id, value, max_size=3),
        "secrets": st.lists(st.one_of(st.sampled_from(["API_TOKEN"]), st.text(max_size=6)), max_size=3),
        "env": st.dictionaries(job_id, scalar, max_size=3),
        "defaults": st.dictionaries(st.sampled_from(["image", "shell", "timeout", "retry", "network"]), scalar, max_size=3),
        "outputs": st.dictionaries(job_id, scalar, max_size=3),
        "concurrency": scalar,
        "timeout": scalar,
        "fail_fast": scalar,
    },
)

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ .()/-]*")


def quoted(text: str) -> str:
    """A YAML double-quoted scalar; characters YAML refuses raw are escaped."""
    out = []
    for ch in text:
        if ch in "\"\\":
            out.append("\\" + ch)
        elif ch.isprintable() and not "\ud800" <= ch <= "\udfff":
            out.append(ch)
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def yaml_scalar(v, flow: bool = False) -> str:
    if isinstance(v, str):
        return v if not flow and _PLAIN.fullmatch(v) and not v.endswith(" ") else quoted(v)
    return json.dumps(v)  # null, true, false and numbers read the same in YAML 1.2


def block_yaml(v, indent: int = 0) -> str:
    """`v` as block-style YAML (the value part of a line, with what follows)."""
    pad = "  " * indent
    if isinstance(v, dict) and v:
        return "\n" + "".join(f"{pad}{yaml_scalar(k)}:{block_yaml(item, indent + 1)}" for k, item in v.items())
    if isinstance(v, list) and v:
        return "\n" + "".join(f"{pad}-{block_yaml(item, indent + 1)}" for item in v)
    return " " + flow_yaml(v) + "\n"


def flow_yaml(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{yaml_scalar(k, True)}: {flow_yaml(item)}" for k, item in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(flow_yaml(item) for item in v) + "]"
    return yaml_scalar(v, flow=True)


def as_yaml(document, style: str) -> str:
    return flow_yaml(document) + "\n" if style == "flow" else block_yaml(document).lstrip("\n")


# -- strategies: mutations of the example workflows ------------------------------------


@st.composite
def mutated_workflow(draw) -> str:
    lines = SOURCES[draw(st.sampled_from(sorted(SOURCES)))].splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [draw(yamlish_text)]
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        indent = len(line) - len(line.lstrip(" "))
        op = draw(st.sampled_from([
            "delete", "duplicate", "swap", "indent", "scalar", "expression", "anchor", "alias", "merge", "insert",
        ]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = " " * draw(st.integers(0, 12)) + line.lstrip(" ")
        elif op == "scalar":
            replacement = draw(st.one_of(st.text(max_size=20), yamlish_text, expression, scalar.map(yaml_scalar)))
            if ": " in line:
                lines[i] = line.split(": ", 1)[0] + ": " + replacement
            elif line.lstrip().startswith("- "):
                lines[i] = line[: indent + 2] + replacement
            else:
                lines[i] = line + replacement
        elif op == "expression":
            position = draw(st.integers(0, len(line)))
            lines[i] = line[:position] + draw(expression) + line[position:]
        elif op == "anchor":
            name = draw(st.sampled_from(["a", "b"]))
            lines[i] = line.replace(": ", f": &{name} ", 1) if ": " in line else line.rstrip() + f" &{name}"
        elif op == "alias":
            name = draw(st.sampled_from(["a", "b"]))
            lines[i] = (line.split(": ", 1)[0] + f": *{name}") if ": " in line else " " * indent + f"- *{name}"
        elif op == "merge":
            lines.insert(i, " " * indent + f"<<: *{draw(st.sampled_from(['a', 'b']))}")
        else:
            lines.insert(i, " " * indent + draw(yamlish_text))
    return "\n".join(lines) + "\n"


# -- strategies: plausible workflows --------------------------------------------------
# Documents built from the format's own vocabulary, so that they get past the
# schema into the compiler's graph, name and template checks. A "sloppy" document
# takes, field by field, a wrong or arbitrary value now and then; the others are
# valid by construction.

IDS = ["a", "b", "c", "build", "test"]
NAME = st.sampled_from(["x", "y", "n", "version", "items"])
REFERENCE = st.one_of(
    st.builds("jobs.{}.outputs.{}".format, st.sampled_from(IDS), NAME),
    st.builds("jobs.{}.result".format, st.sampled_from(IDS)),
    st.builds("steps.{}.outputs.{}".format, st.sampled_from(IDS), NAME),
    st.builds("inputs.{}".format, NAME),
    st.builds("matrix.{}".format, NAME),
    st.builds("secrets.{}".format, st.sampled_from(["API_TOKEN", "OTHER"])),
    st.sampled_from(["env.HOME", "run.id", "run.attempt", "response.status", "outputs.x", "repeat.index"]),
)
any_expression = st.one_of(
    REFERENCE,
    st.builds("{} {} {}".format, REFERENCE, st.sampled_from(["+", "==", "and", "or", "~", "in"]), REFERENCE),
    st.builds("{} | {}".format, REFERENCE, st.sampled_from(["int", "upper", "tojson", "raw", "list", "sum", "length", "nosuch"])),
    st.sampled_from(["always()", "success()", "failure()", "cancelled()", "range(3) | list", "[1, 2, 3]"]),
    expression_body,
)
words = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs", "S"]), min_size=1, max_size=10)
SHELLS = ["sh", "bash", "python", "node", "perl {0}"]


@st.composite
def plausible_workflow(draw) -> dict:
    sloppy = draw(st.integers(0, 2)) == 0

    def pick(valid, wrong):
        return draw(wrong if sloppy and draw(st.integers(0, 4)) == 0 else valid)

    ids = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=4, unique=True))
    inputs = {"x": {"type": "string", "default": "hello"}, "n": {"type": "integer", "default": 2}}

    def expression(needs: list[str], step_ids: list[str], extra: tuple[str, ...] = ()) -> str:
        valid = st.sampled_from([
            "inputs.x", "inputs.n + 1", "inputs.x | upper", "run.id", "run.attempt", "'a' ~ inputs.x", "[1, 2] | length",
            *(f"jobs.{n}.outputs.x" for n in needs), *(f"jobs.{n}.result" for n in needs),
            *(f"steps.{s}.outputs.y" for s in step_ids), *extra,
        ])
        return pick(valid, any_expression)

    def text(needs: list[str], step_ids: list[str] = (), extra: tuple[str, ...] = ()) -> str:
        parts = draw(st.lists(st.one_of(st.just(None), words), min_size=1, max_size=3))
        return "".join(
            part if part is not None else "${{ " + expression(needs, list(step_ids), extra) + " }}" for part in parts
        )

    def condition(needs: list[str]):
        return pick(st.sampled_from(["always()", "success()", "failure()", "inputs.n > 1", "${{ inputs.x == 'a' }}", True]),
                    st.one_of(any_expression, st.booleans(), any_expression.map(lambda e: "${{ " + e + " }}")))

    duration = lambda: pick(st.sampled_from(["30s", "5m", "1h30m", "90", "0.5", 10]),  # noqa: E731
                            st.sampled_from(["soon", "-1", "${{ inputs.n }}", "1x", ""]))
    jobs = {}
    for index, job_id in enumerate(ids):
        spec: dict = {}
        needs = draw(st.lists(st.sampled_from(ids[:index]), max_size=2, unique=True)) if index else []
        needs = pick(st.just(needs), st.lists(st.sampled_from(IDS), max_size=2, unique=True))  # cycles, itself, unknown
        if needs:
            spec["needs"] = needs if len(needs) > 1 or draw(st.booleans()) else needs[0]
        matrix = {}
        if draw(st.integers(0, 3)) == 0:
            matrix = {"y": pick(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True), st.one_of(value, words))}
            spec["matrix"] = matrix
        extra = ("matrix.y",) if matrix else ()
        kind = draw(st.sampled_from(["container", "container", "value", "http", "llm", "uses"]))
        step_ids: list[str] = []
        if kind == "container":
            spec["image"] = pick(st.sampled_from(["alpine:3.20", "python:3.12-slim"]), st.one_of(words, st.integers()))
            if draw(st.booleans()):
                steps = []
                for _ in range(draw(st.integers(1, 3))):
                    entry = {"run": text(needs, step_ids, extra)}
                    if draw(st.booleans()):
                        step_id = pick(st.sampled_from([s for s in IDS if s not in step_ids] or ["z"]), st.sampled_from(IDS))
                        entry["id"] = step_id
                        step_ids.append(step_id)
                    for key, make in (
                        ("if", lambda: condition(needs)), ("shell", lambda: pick(st.sampled_from(SHELLS), words)),
                        ("timeout", duration), ("env", lambda: {"E": text(needs, step_ids, extra)}),
                        ("continue_on_error", lambda: pick(st.booleans(), words)),
                    ):
                        if draw(st.integers(0, 4)) == 0:
                            entry[key] = make()
                    steps.append(entry)
                spec["steps"] = steps
            else:
                spec["run"] = text(needs, (), extra)
        elif kind == "http":
            spec["http"] = {"url": "https://example.test/" + text(needs, (), extra)}
            if draw(st.booleans()):
                spec["http"]["method"] = pick(st.sampled_from(["GET", "POST", "DELETE"]), words)
        elif kind == "llm":
            spec["llm"] = {"model": "m", "prompt": text(needs, (), extra)}
        elif kind == "uses":
            spec["uses"] = pick(st.just("lib/count-words.yml"), st.sampled_from(["fuzzed.yml", "nosuch.yml", "lib", "/dev/null"]))
            spec["with"] = {"path": text(needs, (), extra)} if draw(st.integers(0, 4)) else {}
        if kind in ("value", "http", "llm") or draw(st.booleans()):
            scope = extra + (("response.status",) if kind in ("http", "llm") else ())
            outputs = {"x": text(needs, step_ids, scope)}
            spec["outputs"] = outputs if kind != "value" or not sloppy or draw(st.booleans()) else {}
        for key, make in (
            ("if", lambda: condition(needs)),
            ("timeout", duration),
            ("retry", lambda: pick(st.one_of(st.integers(1, 5), st.fixed_dictionaries({"attempts": st.integers(1, 5)})),
                                   st.one_of(st.integers(-1, 0), words))),
            ("continue_on_error", lambda: pick(st.booleans(), words)),
            ("env", lambda: {"E": text(needs, (), extra)}),
        ):
            if draw(st.integers(0, 4)) == 0:
                spec[key] = make()
        jobs[job_id] = spec
    document: dict = {"version": pick(st.just(1), st.one_of(st.sampled_from([2, "1", 1.0]), scalar)), "jobs": jobs}
    document["inputs"] = pick(st.just(inputs), st.dictionaries(NAME, value, max_size=2))
    if draw(st.booleans()):
        document["secrets"] = pick(st.just(["API_TOKEN"]), st.lists(st.sampled_from(["API_TOKEN", "bad name", ""]), max_size=2))
    if draw(st.booleans()):
        document["outputs"] = {"x": text(ids[-1:] if not sloppy else IDS[:1])}
    return document


# -- the properties: validation refuses or accepts, and nothing else ----------------------


@settings(FUZZ, max_examples=250)
@given(text=st.text(max_size=400))
def test_random_text_is_refused_or_accepted_never_crashes(workspace, text):
    event(validate(text.encode("utf-8", "surrogatepass"), workspace))


@settings(FUZZ, max_examples=150)
@given(raw=st.binary(max_size=400))
def test_random_bytes_are_refused_or_accepted_never_crash(workspace, raw):
    event(validate(raw, workspace))


@settings(FUZZ, max_examples=300)
@given(text=yamlish_text)
def test_yaml_like_text_is_refused_or_accepted_never_crashes(workspace, text):
    event(validate(text.encode("utf-8", "surrogatepass"), workspace))


@settings(FUZZ, max_examples=250)
@given(document=value, style=st.sampled_from(["block", "flow"]))
def test_random_yaml_structures_are_refused_or_accepted_never_crash(workspace, document, style):
    event(validate(as_yaml(document, style).encode("utf-8", "surrogatepass"), workspace))


@settings(FUZZ, max_examples=250)
@given(document=workflow_document, style=st.sampled_from(["block", "flow"]))
def test_workflow_shaped_documents_are_refused_or_accepted_never_crash(workspace, document, style):
    event(validate(as_yaml(document, style).encode("utf-8", "surrogatepass"), workspace))


@settings(FUZZ, max_examples=400)
@given(document=plausible_workflow(), style=st.sampled_from(["block", "flow"]))
def test_plausible_workflows_are_refused_or_accepted_never_crash(workspace, document, style):
    event(validate(as_yaml(document, style).encode("utf-8", "surrogatepass"), workspace))


@settings(FUZZ, max_examples=1000)
@given(text=mutated_workflow())
def test_mutated_example_workflows_are_refused_or_accepted_never_crash(workspace, text):
    event(validate(text.encode("utf-8", "surrogatepass"), workspace))


def test_the_unmutated_examples_are_valid(workspace):
    # The mutations start from valid files: otherwise they would test little.
    for name in SOURCES:
        assert validate(SOURCES[name].encode(), workspace) == "valid", name


# -- every problem is placed at a line and column ------------------------------------------


@settings(FUZZ, max_examples=300)
@given(text=st.one_of(yamlish_text, st.text(max_size=200), mutated_workflow()))
def test_every_problem_in_a_fuzzed_file_has_a_line_and_column(workspace, text):
    event(validate(text.encode("utf-8", "surrogatepass"), workspace, positions=True))


# -- through the command line ----------------------------------------------------------------


@settings(FUZZ, max_examples=8)
@given(text=st.one_of(mutated_workflow(), yamlish_text))
def test_validate_command_on_fuzzed_files_never_prints_a_traceback(workspace, text):
    path = workspace / "fuzzed-cli.yml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    started = time.monotonic()
    done = cli("validate", path, cwd=workspace, timeout=60)
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode in (0, 2), f"exit status {done.returncode}:\n{output}"
    assert "Traceback" not in output, output
    if done.returncode == 2:
        assert done.stderr.startswith(f"{path}:"), output
    else:
        assert done.stdout.strip().endswith("1 file valid"), output
    assert elapsed < 10, f"runner validate took {elapsed:.1f}s"
