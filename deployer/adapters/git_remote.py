"""Reading a git remote without a checkout: its refs, and one file at one commit.

The commit is needed up front: it is passed to the build as `_COMMIT_SHA`
(baked into the image, reported by /health) and names the candidate revision.
The build config is read at that same commit, so the steps that build a commit
are the ones committed with it. Asking the remote, not a local checkout, means
no stale refs; reading a commit's files costs one shallow fetch of it (depth 1),
not a clone, kept a short while for the next read of the same commit
(`kept_fetches`): the preflight reads the build config, then exports the tree.

Credentials: anonymous unless the remote carries a token (a connected
repository's read token). The token travels in an `http.extraHeader` passed
through git's environment (GIT_CONFIG_COUNT), so it is never in an argument
list, a URL, a log line or a message. The user's own credential helpers are
switched off: Cloud Build fetches a `git` source anonymously, so reading it
here with someone's saved login would pass where the build then fails.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from deployer.adapters.kept_fetches import KeptFetches
from deployer.pipeline.ports import RefNotFound, SourceProblem

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_SAFE_REF = re.compile(r"^(?!-)[A-Za-z0-9._/-]{1,200}$")
_SAFE_PATH = re.compile(r"^(?![-/])[A-Za-z0-9._/ -]{1,400}$")
# What git prints when a remote wants credentials it was not given; GitHub answers
# "Repository not found" to an anonymous read of a private repository.
_NEEDS_CREDENTIALS = re.compile(
    r"could not read Username|Authentication failed|terminal prompts disabled|"
    r"Repository not found|returned error: 40[13]|HTTP 40[13]|403 Forbidden",
    re.IGNORECASE,
)
# Build configs are small; a bigger file is not one.
MAX_FILE_BYTES = 1024 * 1024
# A commit's whole tree, exported for the Dockerfile lint: a repository bigger than this
# is not read (the lint says so) rather than filling the worker's memory.
MAX_TREE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Remote:
    """A repository to read: its clone URL and, for a private one, a read token."""

    url: str
    name: str  # how messages name it (the URL, or the connected repository's resource name)
    token: str = field(default="", repr=False)
    # What to do when it cannot be read anonymously (set for `source.git` URLs).
    anonymous_fix: str = ""

    def environment(self) -> dict[str, str]:
        """git's environment: no prompts, no saved credentials, the token as a header."""
        settings = [("credential.helper", "")]  # an empty value clears the helper list
        if self.token:
            basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
            settings.append(("http.extraHeader", f"Authorization: Basic {basic}"))
        env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_COUNT": str(len(settings)),
        }
        for index, (key, value) in enumerate(settings):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    def scrub(self, text: str) -> str:
        """`text` with the token removed, whatever quoted it."""
        return text.replace(self.token, "[token]") if self.token else text


def resolve(remote: Remote, ref: str | None, timeout: float) -> str:
    """The commit `ref` names on `remote` (a tag first, then a branch; default HEAD)."""
    wanted = ref or "HEAD"
    if FULL_SHA.match(wanted):
        return wanted  # already a commit; reading the build config at it checks that it exists
    if not _SAFE_REF.match(wanted) or ".." in wanted:
        raise RefNotFound(f"{wanted!r} is not a valid git ref name", "check its spelling")
    candidates = (
        [wanted]
        if wanted == "HEAD" or wanted.startswith("refs/")
        else [f"refs/tags/{wanted}", f"refs/heads/{wanted}"]
    )
    listing = _git(
        remote,
        ["ls-remote", "--", remote.url, *candidates, *[c + "^{}" for c in candidates]],
        timeout,
        doing="list refs of",
    )
    found: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        found[name] = sha
    for candidate in candidates:
        # An annotated tag's own object is not a commit: prefer the peeled ^{} entry.
        commit = found.get(candidate + "^{}") or found.get(candidate)
        if commit:
            return commit
    raise RefNotFound(f"no branch or tag {wanted!r} in {remote.name}")


def read_file(remote: Remote, commit: str, path: str, timeout: float) -> str | None:
    """The text of `path` in `commit` on `remote`; None when the commit has no such file."""
    if not FULL_SHA.match(commit):
        raise SourceProblem(f"{commit!r} is not a full commit SHA")
    if not _SAFE_PATH.match(path) or ".." in path.split("/"):
        raise SourceProblem(f"{path!r} is not a path inside the repository")
    deadline = time.monotonic() + timeout
    with _commit(remote, commit, deadline) as where:
        return _read_blob(remote, where, commit, path, deadline)


def export(remote: Remote, commit: str, destination: Path, timeout: float) -> None:
    """Write every file of `commit` on `remote` into the folder `destination`, as Cloud
    Build's checkout holds it: `git archive` of the commit (tracked files only, symlinks
    as links). A remote one is fetched shallow, blobs included: the build context is
    read whole."""
    if not FULL_SHA.match(commit):
        raise SourceProblem(f"{commit!r} is not a full commit SHA")
    deadline = time.monotonic() + timeout
    with _commit(remote, commit, deadline) as where:
        _extract(remote, where, commit, destination, deadline)


_KEPT = KeptFetches()


@contextlib.contextmanager
def _commit(remote: Remote, commit: str, deadline: float) -> Iterator[list[str]]:
    """git's `-C` arguments for a repository holding `commit` with its files: a repository
    on this machine in place, else a shallow fetch of it, kept for the next read."""
    local = _local_repository(remote.url)
    if local is not None:
        yield ["-C", str(local)]
        return

    def fetch(folder: str) -> None:
        _git(remote, ["init", "--quiet", "--bare", folder], _left(deadline), doing="prepare")
        # Fetched by URL: no remote to configure, the commit is read by its SHA.
        _git(
            remote,
            ["-C", folder, "fetch", "--quiet", "--no-tags", "--depth=1", remote.url, commit],
            _left(deadline),
            doing=f"fetch commit {commit[:12]} of",
        )

    with _KEPT.repository(remote.url, commit, fetch, _left(deadline)) as folder:
        yield ["-C", folder]


@contextlib.contextmanager
def fetched(
    remote: Remote,
    fetch: list[str],
    deadline: float,
    doing: str,
    config: dict[str, str] | None = None,
) -> Iterator[list[str]]:
    """git's `-C` arguments for a repository holding what `git fetch origin FETCH` brings:
    a repository on this machine (the sandbox's `git` paths) is read in place, with its
    objects all there; a remote one is fetched into a bare repository of its own, with
    `config` set first, that lives for the `with` block."""
    local = _local_repository(remote.url)
    if local is not None:
        yield ["-C", str(local)]
        return
    with tempfile.TemporaryDirectory(prefix="deployer-source-") as folder:
        _git(remote, ["init", "--quiet", "--bare", folder], _left(deadline), doing="prepare")
        settings = {"remote.origin.url": remote.url, **(config or {})}
        for key, value in settings.items():
            _git(remote, ["-C", folder, "config", key, value], _left(deadline), doing="prepare")
        _git(
            remote,
            [
                *["-C", folder, "fetch", "--quiet", "--no-tags"],
                *[word for word in fetch if word.startswith("-")],
                "origin",
                *[word for word in fetch if not word.startswith("-")],
            ],
            _left(deadline),
            doing=doing,
        )
        yield ["-C", folder]


def _extract(
    remote: Remote, where: list[str], commit: str, destination: Path, deadline: float
) -> None:
    data = _git_bytes(
        remote, [*where, "archive", "--format=tar", commit], _left(deadline), "export"
    )
    if len(data) > MAX_TREE_BYTES:
        raise SourceProblem(f"{remote.name} at {commit[:12]} is over {MAX_TREE_BYTES >> 20} MiB")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(destination, filter=_inside)


def _inside(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
    """tarfile's `data` filter, skipping (not failing on) a member it refuses: a link
    that points out of the tree reads as absent, as it is in a build context."""
    try:
        return tarfile.data_filter(member, path)
    except tarfile.FilterError:
        return None


def _read_blob(
    remote: Remote, where: list[str], commit: str, path: str, deadline: float
) -> str | None:
    """The text of `path` in `commit` of the repository `where` names; None if absent."""
    entry = _git(remote, [*where, "ls-tree", commit, "--", path], _left(deadline), doing="read")
    fields = entry.split()
    if len(fields) < 3 or fields[1] != "blob":
        return None
    data = _git_bytes(remote, [*where, "cat-file", "blob", fields[2]], _left(deadline), "read")
    if len(data) > MAX_FILE_BYTES:
        raise SourceProblem(f"{path} at {commit[:12]} is over {MAX_FILE_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceProblem(f"{path} at {commit[:12]} is not UTF-8 text") from None


def _local_repository(url: str) -> Path | None:
    """The folder a path or `file://` URL names; None for a network URL."""
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if "://" in url or re.match(r"^[\w.-]+@[\w.-]+:", url):
        return None
    return Path(url)


def _left(deadline: float) -> float:
    return max(0.5, deadline - time.monotonic())


def _git(remote: Remote, args: list[str], timeout: float, doing: str) -> str:
    return _git_bytes(remote, args, timeout, doing).decode("utf-8", "replace").strip()


def run_git(remote: Remote, args: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """git with `remote`'s environment (its token, no prompts), never reading stdin."""
    return subprocess.run(
        ["git", *args],
        capture_output=True,
        timeout=timeout,
        check=False,
        env=remote.environment(),
        stdin=subprocess.DEVNULL,
    )


def _git_bytes(remote: Remote, args: list[str], timeout: float, doing: str) -> bytes:
    """Run git; SourceProblem (never quoting the token) when it fails or takes too long."""
    try:
        done = run_git(remote, args, timeout)
    except subprocess.TimeoutExpired:
        raise SourceProblem(
            f"git could not {doing} {remote.name} within {timeout:.0f} s",
            "check that the repository's host is reachable",
        ) from None
    except FileNotFoundError:
        raise SourceProblem("git is not installed", "install git (the image has it)") from None
    if done.returncode == 0:
        return done.stdout
    lines = remote.scrub(done.stderr.decode("utf-8", "replace")).strip().splitlines()
    reason = next((line for line in reversed(lines) if line.startswith("fatal")), "")
    reason = (reason or (lines[-1] if lines else "failed")).removeprefix("fatal: ")
    if _NEEDS_CREDENTIALS.search("\n".join(lines)):
        if remote.token:
            raise SourceProblem(
                f"{remote.name} refused its read token ({reason})",
                "check the Cloud Build connection's access to the repository "
                "(its GitHub app installation)",
            )
        raise SourceProblem(
            f"{remote.name} cannot be read anonymously ({reason})",
            remote.anonymous_fix or "make the repository public",
        )
    raise SourceProblem(f"cannot {doing} {remote.name}: {reason}", "check the repository URL")
