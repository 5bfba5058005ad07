"""What GitHub knows of a repository's refs, read from the local repository it stands for.

A deployment's `ref` is "any named branch, tag, or SHA" (GitHub docs, "Create a
deployment"); `resolve` finds it the same way, full ref names too, and says which
kind it is, since only a branch can take the merge `auto_merge` makes.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SHA = re.compile(r"^[0-9a-fA-F]{7,40}$")
_TIMEOUT_S = 30.0


class GitError(Exception):
    """git could not answer about the repository (the message says why)."""


@dataclass(frozen=True)
class Resolved:
    sha: str
    kind: str  # "branch", "tag" or "commit"
    branch: str = ""  # the branch's short name, for a branch


def _git(repository: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-C", str(repository), *args],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GitError(f"git in {repository} failed: {error}") from None


def _commit(repository: Path, revision: str) -> str | None:
    done = _git(repository, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    return done.stdout.strip() if done.returncode == 0 else None


def default_branch(repository: Path) -> str:
    """The branch HEAD names (what a repository pushed to GitHub gets as its default),
    or `main` when HEAD is detached."""
    done = _git(repository, "symbolic-ref", "--quiet", "--short", "HEAD")
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "main"


def resolve(repository: Path, ref: str) -> Resolved | None:
    """The commit `ref` names (a branch, a tag, a full ref name or a SHA), or None."""
    if not ref or ref.startswith("-") or ".." in ref:
        return None
    candidates: list[tuple[str, str, str]] = []
    if ref.startswith("refs/heads/"):
        candidates.append((ref, "branch", ref.removeprefix("refs/heads/")))
    elif ref.startswith("refs/tags/"):
        candidates.append((ref, "tag", ""))
    else:
        candidates += [(f"refs/heads/{ref}", "branch", ref), (f"refs/tags/{ref}", "tag", "")]
    for full, kind, branch in candidates:
        sha = _commit(repository, full)
        if sha is not None:
            return Resolved(sha, kind, branch)
    if _SHA.match(ref):
        sha = _commit(repository, ref)
        if sha is not None:
            return Resolved(sha, "commit")
    return None


def branch_head(repository: Path, branch: str) -> str | None:
    return _commit(repository, f"refs/heads/{branch}")


def contains(repository: Path, ancestor: str, commit: str) -> bool:
    """Whether `ancestor` is reachable from `commit` (`commit` is not behind it)."""
    return _git(repository, "merge-base", "--is-ancestor", ancestor, commit).returncode == 0


def merges_cleanly(repository: Path, base: str, head: str) -> bool:
    """Whether merging `base` into `head` has no conflict (git merge-tree, nothing written
    to the repository's branches)."""
    done = _git(repository, "merge-tree", "--write-tree", "--no-messages", head, base)
    return done.returncode == 0
