"""runner/loader.py: YAML bytes → plain data that remembers where every value came from."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time

import pytest

from runner.load import document as loader
from runner.errors import WorkflowInvalid
from runner.load.document import load_bytes, load_file

FILE = "wf.yml"


def load(text: str | bytes):
    raw = text if isinstance(text, bytes) else textwrap.dedent(text).lstrip().encode()
    return load_bytes(raw, FILE)


def refused(text: str | bytes) -> WorkflowInvalid:
    """The error for `text`, checked to be a WorkflowInvalid that says file:line:col."""
    with pytest.raises(WorkflowInvalid) as info:
        load(text)
    message = str(info.value)
    assert re.search(rf"{re.escape(FILE)}:\d+:\d+: ", message), message
    return info.value


def at(error: WorkflowInvalid, line: int, col: int) -> str:
    """The message of the problem at line:col (and asserts there is one)."""
    messages = [p.message for p in error.problems if (p.location.line, p.location.col) == (line, col)]
    assert messages, f"no problem at {line}:{col}: {error}"
    return messages[0]


# -- positions -----------------------------------------------------------------

EXAMPLE = """\
version: 1
jobs:
  build:
    needs: [prepare, lint]
    run: echo hi
  prepare:
    outputs:
      version: "1.2"
"""


def test_value_positions_are_line_and_column_of_the_value():
    doc = load(EXAMPLE)
    assert str(doc.locate(("version",))) == f"{FILE}:1:10"
    assert str(doc.locate(("jobs", "build", "needs"))) == f"{FILE}:4:12"
    assert str(doc.locate(("jobs", "build", "needs", 1))) == f"{FILE}:4:22"
    assert str(doc.locate(("jobs", "build", "run"))) == f"{FILE}:5:10"
    assert str(doc.locate(("jobs", "prepare", "outputs", "version"))) == f"{FILE}:8:16"


def test_key_positions_are_line_and_column_of_the_key():
    doc = load(EXAMPLE)
    assert str(doc.locate(("version",), key=True)) == f"{FILE}:1:1"
    assert str(doc.locate(("jobs",), key=True)) == f"{FILE}:2:1"
    assert str(doc.locate(("jobs", "build"), key=True)) == f"{FILE}:3:3"
    assert str(doc.locate(("jobs", "build", "run"), key=True)) == f"{FILE}:5:5"
    assert str(doc.locate(("jobs", "prepare", "outputs", "version"), key=True)) == f"{FILE}:8:7"


def test_a_missing_path_falls_back_to_the_nearest_enclosing_value():
    doc = load(EXAMPLE)
    assert str(doc.locate(("jobs", "build", "timeout"))) == f"{FILE}:4:5"


def test_data_is_plain_python():
    doc = load(EXAMPLE)
    assert doc.data == {
        "version": 1,
        "jobs": {
            "build": {"needs": ["prepare", "lint"], "run": "echo hi"},
            "prepare": {"outputs": {"version": "1.2"}},
        },
    }
    assert type(doc.data) is dict
    assert type(doc.data["jobs"]["build"]["needs"]) is list


def test_load_file_names_the_file_in_positions(tmp_path):
    path = tmp_path / "flow.yml"
    path.write_text("version: 1\njobs: {}\n")
    doc = load_file(path)
    assert doc.data == {"version": 1, "jobs": {}}
    assert str(doc.locate(("jobs",))) == f"{path}:2:7"


# -- duplicate keys ------------------------------------------------------------


def test_duplicate_key_names_both_lines():
    error = refused(
        """
        version: 1
        jobs:
          build: {run: a}
          test: {run: b}
          build: {run: c}
        """
    )
    message = at(error, 5, 3)
    assert "duplicate key `build`" in message
    assert "line 3" in message


def test_every_duplicate_key_is_reported():
    error = refused("a: 1\nb: 2\na: 3\nb: 4\n")
    assert "line 1" in at(error, 3, 1)
    assert "line 2" in at(error, 4, 1)


# -- anchors, aliases and merge keys -------------------------------------------


def test_anchor_and_alias_repeat_a_value():
    doc = load(
        """
        common: &env {LANG: C.UTF-8, CI: "1"}
        jobs:
          a: {env: *env}
        """
    )
    assert doc.data["jobs"]["a"]["env"] == {"LANG": "C.UTF-8", "CI": "1"}


def test_merge_key_brings_entries_and_own_keys_win():
    doc = load(
        """
        base: &base {image: alpine, shell: sh, timeout: 5m}
        job:
          <<: *base
          shell: bash
        """
    )
    assert doc.data["job"] == {"image": "alpine", "shell": "bash", "timeout": "5m"}


def test_merge_key_list_first_mapping_wins():
    doc = load(
        """
        a: &a {x: 1}
        b: &b {x: 2, y: 2}
        c:
          <<: [*a, *b]
        """
    )
    assert doc.data["c"] == {"x": 1, "y": 2}


def test_merged_key_is_not_a_duplicate():
    doc = load("base: &b {x: 1}\nd:\n  x: 2\n  <<: *b\n")
    assert doc.data["d"] == {"x": 2}


def test_recursive_alias_is_refused():
    error = refused("a: &loop [1, *loop]\n")
    assert "recursive" in str(error)


def test_recursive_alias_in_a_mapping_is_refused():
    error = refused("a: &loop\n  child: *loop\n")
    assert "recursive" in str(error)


def test_recursive_merge_key_is_refused():
    error = refused("a: &loop\n  x: 1\n  <<: *loop\n")
    assert "refers to" in str(error)


def billion_laughs() -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefghi", "bcdefghij"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_alias_expansion_bomb_is_refused_quickly():
    start = time.perf_counter()
    error = refused(billion_laughs())
    assert time.perf_counter() - start < 1.0
    assert "500,000" in str(error)


def test_merge_key_bomb_is_refused_quickly():
    lines = ["m0: &m0 {k0: 0, k1: 1, k2: 2, k3: 3}"]
    for i in range(1, 30):
        lines.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 10) + "]}")
    start = time.perf_counter()
    error = refused("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 1.0
    assert "merge keys" in str(error)


def test_two_way_merge_key_bomb_is_refused_quickly():
    lines = ["m0: &m0 {k: 0}"]
    for i in range(1, 60):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}")
    start = time.perf_counter()
    refused("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 1.0


def test_many_aliases_of_small_values_are_fine():
    doc = load("a: &a [1, 2]\n" + "".join(f"k{i}: *a\n" for i in range(1000)))
    assert doc.data["k999"] == [1, 2]


# -- malformed YAML ------------------------------------------------------------


def test_tab_indentation_is_refused_and_says_spaces():
    error = refused(b"version: 1\njobs:\n\tbuild: {}\n")
    message = at(error, 3, 1)
    assert "tab" in message


def test_unclosed_quote_is_refused():
    error = refused(b'version: 1\nname: "build\njobs: {}\n')
    assert "quoted scalar at line 2" in str(error)


def test_unclosed_bracket_is_refused():
    error = refused(b"version: 1\nneeds: [a, b\njobs: {}\n")
    assert "line 2" in str(error)
    assert "]" in str(error)


def test_empty_file_is_refused():
    error = refused(b"")
    assert "empty" in at(error, 1, 1)


def test_file_with_only_comments_is_refused_as_empty():
    error = refused(b"# nothing here\n\n")
    assert "empty" in str(error)


def test_several_documents_are_refused():
    error = refused(b"version: 1\njobs: {}\n---\nversion: 1\njobs: {}\n")
    message = at(error, 4, 1)
    assert "2 YAML documents" in message


def test_invalid_utf8_is_refused_at_the_byte():
    error = refused(b"version: 1\nname: caf\xe9\n")
    message = at(error, 2, 10)
    assert "UTF-8" in message
    assert "0xe9" in message


def test_nul_byte_is_refused_at_the_byte():
    error = refused(b"version: 1\nna\x00me: x\n")
    assert "NUL" in at(error, 2, 3)


def test_utf8_bom_is_accepted():
    doc = load(b"\xef\xbb\xbfversion: 1\nname: caf\xc3\xa9\n")
    assert doc.data == {"version": 1, "name": "café"}
    assert str(doc.locate(("name",))) == f"{FILE}:2:7"


@pytest.mark.parametrize(
    "text, kind",
    [("- a\n- b\n", "list"), ("just text\n", "scalar"), ("42\n", "scalar")],
)
def test_root_that_is_not_a_mapping_is_refused(text, kind):
    error = refused(text.encode())
    message = at(error, 1, 1)
    assert f"top level is a {kind}" in message
    assert "mapping" in message


# -- tags ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, tag",
    [
        ("!!python/object/apply:os.system ['touch /tmp/runner-pwned']", "!!python/object/apply:os.system"),
        ("!!python/object/apply:os.system\n  args: ['touch /tmp/runner-pwned']", "!!python/object/apply:os.system"),
        ("!!python/name:os.system ''", "!!python/name:os.system"),
        ("!custom thing", "!custom"),
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!set {a, b}", "!!set"),
    ],
)
def test_unknown_tags_are_refused_and_named(value, tag):
    error = refused(f"version: 1\nx: {value}\n")
    assert tag in at(error, 2, 4)


def test_python_tag_is_never_constructed(tmp_path):
    marker = tmp_path / "pwned"
    text = f"version: 1\nx: !!python/object/apply:os.system ['touch {marker}']\n"
    refused(text)
    assert not marker.exists()


def test_standard_tags_are_accepted():
    doc = load('a: !!str 12\nb: !!int "7"\nc: !!float 1\nd: !!map {x: 1}\ne: !!seq [1]\n')
    assert doc.data == {"a": "12", "b": 7, "c": 1.0, "d": {"x": 1}, "e": [1]}


@pytest.mark.parametrize("value", ["!!int x", "!!float x", "!!bool x", "!!int ''"])
def test_a_standard_tag_on_a_value_it_cannot_read_is_refused_where_it_stands(value):
    error = refused(f"version: 1\nx: {value}\n")
    assert value.split()[0] in at(error, 2, 4)


# -- limits --------------------------------------------------------------------


def test_deep_nesting_is_refused():
    error = refused("a: " + "[" * 100 + "]" * 100 + "\n")
    assert "deeper than 64" in str(error)


def test_deep_block_nesting_is_refused():
    lines = ["root:"] + ["  " * i + f"k{i}:" for i in range(1, 80)] + ["  " * 80 + "leaf: 1"]
    error = refused("\n".join(lines) + "\n")
    assert "deeper than 64" in str(error)


def test_nesting_just_under_the_limit_is_accepted():
    doc = load("a: " + "[" * 60 + "1" + "]" * 60 + "\n")
    value = doc.data["a"]
    for _ in range(59):
        value = value[0]
    assert value == [1]


@pytest.mark.parametrize("text", ["a: " + "[" * 100_000 + "]" * 100_000 + "\n", "a:\n  " + "- " * 200_000 + "x\n"])
def test_very_deep_nesting_in_a_small_file_is_refused_without_crashing(tmp_path, text):
    # 100,000 brackets is a 200 KB file: it must be refused like 100 brackets,
    # not crash the interpreter. Run in a child process, where a crash cannot
    # take the test session down with it.
    path = tmp_path / "deep.yml"
    path.write_text(text)
    code = (
        "import sys\n"
        "from runner.load.document import load_file\n"
        "from runner.errors import WorkflowInvalid\n"
        "try:\n"
        "    load_file(sys.argv[1])\n"
        "except WorkflowInvalid as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[-500:]}"
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: .*deeper than 64", result.stdout), result.stdout


def test_file_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", 1024 * 1024)
    path = tmp_path / "big.yml"
    path.write_bytes(b"version: 1\n" + b"# padding padding padding\n" * 45_000)
    with pytest.raises(WorkflowInvalid) as info:
        load_file(path)
    message = str(info.value)
    assert "larger than 1 MiB" in message
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: ", message), message


def test_file_at_the_size_limit_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", 1024)
    path = tmp_path / "small.yml"
    text = b"version: 1\n"
    path.write_bytes(text + b"#" * (1024 - len(text)))
    assert load_file(path).data == {"version": 1}


# -- YAML 1.2 ------------------------------------------------------------------


@pytest.mark.parametrize("word", ["no", "yes", "on", "off", "y", "n", "No", "OFF"])
def test_yaml11_booleans_stay_text(word):
    assert load(f"v: {word}\n").data == {"v": word}


def test_true_and_false_are_booleans():
    assert load("a: true\nb: false\n").data == {"a": True, "b": False}


def test_3_10_is_the_number_3_1():
    assert load("v: 3.10\n").data == {"v": 3.1}


def test_quoted_3_10_stays_text():
    assert load('v: "3.10"\n').data == {"v": "3.10"}


def test_octal_and_null_follow_yaml_12():
    doc = load("a: 010\nb: 0o17\nc: ~\nd: null\ne:\n")
    assert doc.data == {"a": 10, "b": 15, "c": None, "d": None, "e": None}


def test_timestamps_stay_text():
    assert load("d: 2024-01-02\n").data == {"d": "2024-01-02"}


def test_keys_that_look_like_other_types_stay_text():
    assert load("1: a\nno: b\ntrue: c\n").data == {"1": "a", "no": "b", "true": "c"}


def test_unquoted_double_braces_as_a_key_are_refused_with_a_hint():
    error = refused("version: 1\nrun: {{ x }}\n")
    assert "${{" in str(error)
