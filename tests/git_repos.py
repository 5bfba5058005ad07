"""Small git repositories for tests: run git with a fixed identity, commit files."""

from __future__ import annotations

import subprocess
from pathlib import Path

_IDENTITY = {
    "GIT_AUTHOR_NAME": "Deployer Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "Deployer Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
}


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` (no user config: HOME is the repository); its stripped output."""
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**_IDENTITY, "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(repo)},
    )
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str] | None = None, message: str = "change") -> str:
    """Write `files` (path -> text) into `repo`, commit everything; the new commit's SHA."""
    for name, text in (files or {}).items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def new_repository(repo: Path, files: dict[str, str] | None = None) -> str:
    """`repo` made a repository on `main` whose first commit holds `files` and whatever
    the folder already holds; that commit's SHA."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    return commit(repo, files, "first")
