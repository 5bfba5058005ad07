"""The commits between two commits of a git remote, for "what changes".

Read with the same access as every other read of the repository (`git_remote.Remote`:
no prompts, no saved credentials, a connected repository's token in git's environment,
never in an argument or a message).
"""

from __future__ import annotations

import re
import subprocess
import time

from deployer.adapters.git_remote import FULL_SHA, Remote, _git, _left, fetched, run_git
from deployer.pipeline.ports import CommitLog, SourceProblem

# https://github.com/OWNER/REPO(.git), ssh://git@github.com/OWNER/REPO, git@github.com:OWNER/REPO
_GITHUB = re.compile(
    r"^(?:https://(?:[^@/]+@)?github\.com/|ssh://git@github\.com/|git@github\.com:)"
    r"([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$"
)
# How deep "what changes" reads a remote's history: enough for any deploy people read.
LOG_DEPTH = 500


def commit_log(remote: Remote, old: str, new: str, limit: int, timeout: float) -> CommitLog:
    """The commits `new` has and `old` has not on `remote`: count, first `limit` subjects.

    A remote one is fetched without trees or blobs (`--filter=tree:0`: commits only) and
    at most LOG_DEPTH commits deep, so a long history costs a bounded fetch; when `old`
    is not within that depth the count is a lower bound (`complete` False).
    """
    for commit in (old, new):
        if not FULL_SHA.match(commit):
            raise SourceProblem(f"{commit!r} is not a full commit SHA")
    deadline = time.monotonic() + timeout
    fetch = [f"--depth={LOG_DEPTH}", "--filter=tree:0", old, new]
    with fetched(remote, fetch, deadline, f"fetch the history of {new[:12]} of") as where:
        return _log(remote, where, old, new, limit, deadline)


def _log(
    remote: Remote, where: list[str], old: str, new: str, limit: int, deadline: float
) -> CommitLog:
    ahead = _git(remote, [*where, "rev-list", "--count", f"{old}..{new}"], _left(deadline), "read")
    behind = _git(remote, [*where, "rev-list", "--count", f"{new}..{old}"], _left(deadline), "read")
    subjects = _git(
        remote,
        [*where, "log", f"--max-count={max(0, limit)}", "--format=%s", f"{old}..{new}", "--"],
        _left(deadline),
        "read",
    )
    # With no common commit in what was read, the two histories were cut short (a shallow
    # fetch) or share nothing: the counts are what was read, not the whole story.
    base = _git_code(remote, [*where, "merge-base", old, new], _left(deadline))
    return CommitLog(
        count=int(ahead or 0),
        subjects=tuple(line for line in subjects.splitlines() if line.strip())[: max(0, limit)],
        behind=int(behind or 0),
        complete=base == 0,
        compare_url=github_compare_url(remote.url, old, new),
    )


def github_compare_url(url: str, old: str, new: str) -> str:
    """GitHub's compare page of `old...new` for a github.com remote
    (https://docs.github.com/en/pull-requests/collaborating-with-pull-requests/
    proposing-changes-to-your-work-with-pull-requests/about-comparing-branches-in-pull-requests);
    "" for any other host."""
    found = _GITHUB.match(url)
    if found is None:
        return ""
    return f"https://github.com/{found.group(1)}/{found.group(2)}/compare/{old}...{new}"


def _git_code(remote: Remote, args: list[str], timeout: float) -> int:
    """git's exit code, for a command whose answer is yes or no (merge-base)."""
    try:
        done = run_git(remote, args, timeout)
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return -1
    return done.returncode
