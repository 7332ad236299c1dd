"""The example workflows shipped in workflows/ are valid, as `runner validate` sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, cli

WORKFLOWS = sorted((ROOT / "workflows").glob("*.yml"))


def test_there_are_example_workflows():
    assert WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_example_workflow_validates(path: Path):
    result = cli("validate", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 file valid" in result.stdout
    assert "warning" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_all_example_workflows_validate_together():
    result = cli("validate", *WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(WORKFLOWS)} files valid" in result.stdout or len(WORKFLOWS) == 1
