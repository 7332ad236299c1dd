"""`runner validate` on a corpus of malformed workflows: each is refused, where it is wrong, with a reason.

Every file under tests/malformed/ is one mistake; tests/malformed/cases.json says
where runner must point (line and column of the first problem) and a fragment of
what it must say. Adding a case is adding a file and its line in cases.json.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import ROOT, cli

CORPUS = ROOT / "tests" / "malformed"
CASES = json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))
FILES = sorted(p.name for p in CORPUS.glob("*.yml"))


def test_every_malformed_file_has_an_expectation_and_every_expectation_a_file():
    assert sorted(CASES) == FILES


@pytest.mark.parametrize("name", FILES)
def test_malformed_workflow_is_refused_at_its_line_and_column(name):
    case = CASES[name]
    relative = f"tests/malformed/{name}"
    done = cli("validate", relative, cwd=ROOT, timeout=30)  # a hang fails here; speed is benchmarks' business
    output = done.stdout + done.stderr
    assert done.returncode == 2, f"exit status {done.returncode}:\n{output}"
    assert "Traceback" not in output, output
    where = f"{relative}:{case['line']}:{case['col']}: "
    problems = [line for line in done.stderr.splitlines() if line.startswith(where)]
    assert problems, f"no problem reported at {where!r}:\n{output}"
    assert any(case["contains"] in line for line in problems), (
        f"no problem at {where!r} says {case['contains']!r}:\n{output}"
    )
    # Every line of the report names a file, a line and a column.
    for line in done.stderr.splitlines():
        assert re.match(rf"{re.escape(relative)}:\d+:\d+: ", line), line


def test_the_python_tag_in_the_corpus_constructed_nothing():
    # python-tag.yml asks YAML to run `touch` on this path; validating the corpus must not.
    assert not Path("/tmp/runner-malformed-pwned").exists()


def test_the_whole_corpus_in_one_call_reports_every_file():
    done = cli("validate", *(f"tests/malformed/{name}" for name in FILES), cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    for name, case in CASES.items():
        assert f"tests/malformed/{name}:{case['line']}:{case['col']}: " in done.stderr, name
