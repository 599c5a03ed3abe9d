"""``git_hash``: one revision per process, so a commit made while a process runs does not split its builds'
manifests between two revisions (two same-input builds of one test session keep one digest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from feature_platform.contracts.provenance import git_hash

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": "/usr/bin:/bin"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=GIT_ENV).stdout.strip()


def _commit(repo: Path, text: str) -> str:
    (repo / "f.txt").write_text(text)
    _git(repo, "add", "f.txt")
    _git(repo, "commit", "-q", "-m", text)
    return _git(repo, "rev-parse", "HEAD")


def _fresh_process_hash(repo: Path) -> str:
    code = "import sys; from pathlib import Path; from feature_platform.contracts.provenance import git_hash; " \
           "print(git_hash(Path(sys.argv[1])))"
    return subprocess.run([sys.executable, "-c", code, str(repo)], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_a_commit_made_while_the_process_runs_does_not_change_its_stamp(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    first = _commit(repo, "one")
    assert git_hash(repo) == first
    second = _commit(repo, "two")
    assert second != first
    assert git_hash(repo) == first and git_hash(repo / ".") == first  # the same checkout, however spelled
    assert _fresh_process_hash(repo) == second  # a new process stamps the new revision


def test_outside_a_checkout_is_unknown_and_not_kept(tmp_path: Path) -> None:
    repo = tmp_path / "later"
    repo.mkdir()
    assert git_hash(repo) == "unknown"
    _git(repo, "init", "-q")
    assert git_hash(repo) == "unknown"  # a repository without a commit has no HEAD yet
    made = _commit(repo, "one")
    assert git_hash(repo) == made  # asked again, not stuck at "unknown"
