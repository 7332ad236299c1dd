"""The `runner-validate` pre-commit hook, run by pre-commit on a sample repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import ROOT, installed, write


def test_hook_validates_workflows_and_ignores_other_yaml(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    write(repo, "version: 1\njobs:\n  a: {outputs: {x: 1}}\n", "good.yml")
    write(repo, "version: 1\njobs:\n  a:\n    need: b\n    outputs: {x: 1}\n", "bad.yml")
    write(repo, "services:\n  web:\n    image: nginx\n    need: nothing\n", "compose.yml")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    pre_commit = installed("pre-commit")
    result = subprocess.run(
        [pre_commit, "try-repo", str(ROOT), "runner-validate", "--all-files"],
        cwd=repo, capture_output=True, text=True, timeout=900,
        env={"PRE_COMMIT_HOME": str(tmp_path / "cache"), "PATH": f"{Path(pre_commit).parent}:/usr/bin:/bin",
             "HOME": str(tmp_path)},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "bad.yml:4:5: unknown key `need`; did you mean `needs`? (jobs.a.need)" in output
    assert "good.yml" not in output
    assert "compose.yml" not in output
