"""Build sources: git revisions resolved to commits, their trees extracted once by tree id.

The repository is a local path or a `file://` URL: a `Source.git_source`'s URL, or
the local repository behind a 2nd-gen `Source.connected_repository`
(`cloud_build.repositories`). The revision (branch, tag, sha or any git revision, default
HEAD) is resolved to a full commit, and that commit's tree is extracted with
`git archive` into a content-addressed store:

    <root>/trees/<tree sha>/        the commit's files, never modified afterwards

Two builds of the same tree share one directory, so an image's context stays valid
for as long as the sandbox runs. Extraction goes to a temporary directory that is
renamed into place, so concurrent builds of the same tree never see half a tree.

An http(s) URL of the sandbox's git server (`private_origins`) is fetched as
Cloud Build fetches a `git_source`: anonymously. The server serves private
repositories only, so git's own refusal ("could not read Username ...") is the
fetch's error, as a private GitHub repository gives it.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

GIT_TIMEOUT_S = 30.0


class SourceError(Exception):
    """The source could not be fetched; the message says what git reported."""


@dataclass(frozen=True)
class Checkout:
    """A resolved git source: the commit, its root tree id and its extracted files."""

    repository: Path
    commit: str
    tree: str
    root: Path

    def tree_id(self, relative: str) -> str | None:
        """The git object id of `relative` (a directory or file) in this commit, if any."""
        path = posixpath.normpath(relative.strip("/")) if relative.strip("/") else ""
        if path == ".":
            path = ""
        if path.startswith(".."):
            return None
        try:
            return _git(
                self.repository, "rev-parse", "--verify", "--quiet", f"{self.commit}:{path}"
            )
        except SourceError:
            return None


def repository_path(url: str) -> Path:
    """The local directory a git source URL names (a path or a `file://` URL)."""
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if "://" in url or url.startswith("git@"):
        raise SourceError(
            f"the sandbox fetches local repositories only (a path or a file:// URL), not {url!r}"
        )
    return Path(url).expanduser()


def _git_bytes(repository: Path, *args: str) -> bytes:
    """Run git in `repository` and return its stdout; raise `SourceError` on failure."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repository), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except subprocess.TimeoutExpired as error:
        raise SourceError(f"git {args[0]} timed out after {GIT_TIMEOUT_S:.0f}s") from error
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise SourceError(message)
    return done.stdout


def _git(repository: Path, *args: str) -> str:
    """Run git in `repository` and return its stripped stdout; raise `SourceError` on failure."""
    return _git_bytes(repository, *args).decode().strip()


def resolve_commit(repository: Path, revision: str, label: str) -> str:
    """The full commit `revision` (any git revision; HEAD when empty) names in `repository`.

    `label` names the repository in the error."""
    if not repository.is_dir():
        raise SourceError(f"repository {label} not found")
    wanted = revision or "HEAD"
    if wanted.startswith("-"):
        raise SourceError(f"couldn't resolve revision {wanted!r} in {label}")
    try:
        return _git(repository, "rev-parse", "--verify", "--quiet", f"{wanted}^{{commit}}")
    except SourceError as error:
        raise SourceError(f"couldn't resolve revision {wanted!r} in {label}") from error


def read_file(repository: Path, commit: str, path: str) -> bytes | None:
    """The content of `path` (from the repository's root) in `commit`, or None if no such file."""
    relative = posixpath.normpath(path.strip("/"))
    if relative in ("", ".") or relative.startswith("../") or relative == "..":
        return None
    try:
        kind = _git(repository, "cat-file", "-t", f"{commit}:{relative}")
    except SourceError:
        return None
    return (
        _git_bytes(repository, "cat-file", "blob", f"{commit}:{relative}")
        if kind == "blob"
        else None
    )


def ref_names(repository: Path, prefix: str) -> list[str]:
    """The full names of the refs under `prefix` (`refs/heads/`, `refs/tags/`), sorted."""
    listing = _git(repository, "for-each-ref", "--format=%(refname)", prefix)
    return sorted(line for line in listing.splitlines() if line)


def anonymous_fetch_error(url: str) -> str:
    """What git says when it reads `url` anonymously, without prompting; "" if it can."""
    settings = {"credential.helper": ""}  # an empty value clears any helper list
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_COUNT": str(len(settings)),
    }
    for index, (key, value) in enumerate(settings.items()):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    try:
        done = subprocess.run(
            ["git", "ls-remote", "--", url, "HEAD"],
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return f"git ls-remote timed out after {GIT_TIMEOUT_S:.0f}s"
    if done.returncode == 0:
        return ""
    return done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"


class TreeStore:
    """Resolves git sources and keeps one extracted copy of every tree under `root/trees`."""

    def __init__(self, root: Path, private_origins: tuple[str, ...] = ()) -> None:
        self.root = root  # builds keep their workspaces and images under it too
        self._trees = root / "trees"
        self._trees.mkdir(parents=True, exist_ok=True)
        # Origins (`http://host:port`) that serve private repositories only.
        self._private = private_origins

    def checkout(self, url: str, revision: str) -> Checkout:
        """Resolve `revision` of the repository at `url` and extract its tree."""
        if any(url == o or url.startswith(o + "/") for o in self._private):
            # Cloud Build fetches a git_source anonymously: a private repository refuses it.
            refusal = anonymous_fetch_error(url)
            raise SourceError(refusal or f"{url} is served to token holders only")
        return self.checkout_local(repository_path(url), revision, url)

    def checkout_local(self, repository: Path, revision: str, label: str) -> Checkout:
        """Resolve `revision` of the local `repository` (`label` in errors) and extract its tree."""
        commit = resolve_commit(repository, revision, label)
        tree = _git(repository, "rev-parse", "--verify", f"{commit}^{{tree}}")
        return Checkout(repository, commit, tree, self._extract(repository, commit, tree))

    def empty(self) -> Path:
        """An empty workspace, for builds without a source."""
        path = self._trees / "empty"
        path.mkdir(exist_ok=True)
        return path

    def _extract(self, repository: Path, commit: str, tree: str) -> Path:
        final = self._trees / tree
        if final.is_dir():
            return final
        try:
            archive = subprocess.run(
                ["git", "-C", str(repository), "archive", "--format=tar", commit],
                capture_output=True,
                timeout=GIT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise SourceError(f"git archive timed out after {GIT_TIMEOUT_S:.0f}s") from error
        if archive.returncode != 0:
            raise SourceError(archive.stderr.decode(errors="replace").strip())
        staging = Path(tempfile.mkdtemp(prefix=f".{tree[:12]}-", dir=self._trees))
        try:
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                # The data filter refuses absolute paths, links out of the tree and devices.
                tar.extractall(staging, filter="data")
            try:
                staging.rename(final)
            except OSError:
                # Another build extracted the same tree first; theirs is identical.
                if not final.is_dir():
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return final
