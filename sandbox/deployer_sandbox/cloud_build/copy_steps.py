"""COPY and ADD: which files an instruction reads, and where Docker puts them.

Sources come from the build context (the folder minus `.dockerignore`; a directory
source brings only the files of it that are sent), from an earlier stage
(`--from=<stage>`), or from a tool image the sandbox provides (`--from=<image>`).
Wildcards match as Go's filepath.Match, one path segment per `*`.

Destination rules (Dockerfile reference, "COPY"; moby builder/dockerfile/copy.go):
- a relative destination is relative to WORKDIR;
- a destination ending in `/`, or an existing directory, receives the sources by name;
- several sources need a directory destination ending in `/`;
- a directory source has its contents copied, not itself;
- ADD extracts a local tar archive at the destination; a URL is not fetched here.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deployer.dockerfiles.context import BuildContext
from deployer_sandbox.cloud_build.image_trees import (
    content_hash,
    copy_entry,
    in_tree,
    merge_directory,
)

_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class SourceMissing(Exception):
    """A source is not in the context (or excluded by `.dockerignore`), stage or image."""

    def __init__(self, path: str, origin: str) -> None:
        super().__init__(path)
        self.path, self.origin = path, origin  # origin: "context", a stage, an image


class CopyRefused(Exception):
    """Docker refuses the instruction itself (message as Docker words it)."""


@dataclass(frozen=True)
class Source:
    """One file or directory a COPY reads: its name in the instruction, its host path."""

    name: str
    path: Path
    is_dir: bool


def _segments_match(pattern: str, path: str) -> bool:
    parts, names = pattern.split("/"), path.split("/")
    return len(parts) == len(names) and all(
        fnmatch.fnmatchcase(n, p) for p, n in zip(parts, names, strict=True)
    )


def context_sources(context: BuildContext, sources: list[str]) -> list[Source]:
    """The context's files and directories that `sources` name; `SourceMissing` if one is not sent."""
    found: list[Source] = []
    files = context.files()
    for raw in sources:
        clean = posixpath.normpath(raw.lstrip("/")) or "."
        if clean == ".." or clean.startswith("../"):
            raise CopyRefused(f"forbidden path outside the build context: {raw}")
        if any(char in clean for char in "*?["):
            matches = [f for f in files if _segments_match(clean, f)]
        elif clean == "." or context.contains(clean):
            matches = [clean]
        else:
            matches = []
        if not matches:
            raise SourceMissing(clean, "context")
        for match in matches:
            path = context.root / match
            found.append(Source(match, path, path.is_dir() and not path.is_symlink()))
    return found


def sent_under(context: BuildContext, directory: str) -> list[str]:
    """The sent files and directories below a context directory, relative to it."""
    if directory == ".":
        return context.files()
    prefix = directory + "/"
    return [f[len(prefix) :] for f in context.files() if f.startswith(prefix)]


def tree_sources(tree: Path, sources: list[str], origin: str) -> list[Source]:
    """Files of a stage's tree that `sources` name (absolute image paths, wildcards allowed)."""
    found: list[Source] = []
    for raw in sources:
        clean = posixpath.normpath("/" + raw)
        if any(char in clean for char in "*?["):
            parent = in_tree(tree, posixpath.dirname(clean))
            names = sorted(os.listdir(parent)) if parent.is_dir() else []
            matches = [
                posixpath.join(posixpath.dirname(clean), n)
                for n in names
                if fnmatch.fnmatchcase(n, posixpath.basename(clean))
            ]
        else:
            matches = [clean] if os.path.lexists(in_tree(tree, clean)) else []
        if not matches:
            raise SourceMissing(clean, origin)
        for match in matches:
            path = in_tree(tree, match)
            found.append(Source(match, path, path.is_dir()))
    return found


def destination(dest: str, workdir: str, count: int) -> tuple[str, bool]:
    """(absolute image path, whether it names a directory) of a COPY destination."""
    is_dir = dest.endswith("/") or dest in (".", "..") or dest.endswith("/.")
    if count > 1 and not is_dir:
        raise CopyRefused(
            "When using COPY with more than one source file, the destination must be a "
            "directory and end with a /"
        )
    return posixpath.normpath(posixpath.join(workdir, dest)), is_dir


def reads_hash(sources: list[Source], context: BuildContext | None) -> str:
    """The content of what the instruction reads, for its cache key."""
    files: dict[str, Path] = {}
    for source in sources:
        if source.is_dir and context is not None:
            for relative in sent_under(context, source.name):
                files[f"{source.name}/{relative}"] = context.root / source.name / relative
        else:
            files[source.name] = source.path
    return content_hash(files)


def place(
    sources: list[Source],
    dest: str,
    dest_is_dir: bool,
    context: BuildContext | None,
    extract: bool,
    link: bool = False,
) -> Callable[[Path], None]:
    """The change that puts `sources` at `dest` in a tree (applied later, maybe).
    `link`: hard-link the sources (an earlier stage's files, never written again)."""

    def apply(tree: Path) -> None:
        target = in_tree(tree, dest)
        into_dir = dest_is_dir or (target.is_dir() and not target.is_symlink())
        for source in sources:
            if source.is_dir:
                if context is not None:
                    _copy_sent(context, source.name, target)
                else:
                    merge_directory(source.path, target, link)
            elif extract and source.name.endswith(_ARCHIVES) and tarfile.is_tarfile(source.path):
                target.mkdir(parents=True, exist_ok=True)
                with tarfile.open(source.path) as archive:
                    for member in archive.getmembers():
                        existing = target / member.name
                        if not member.isdir() and (existing.is_file() or existing.is_symlink()):
                            existing.unlink()  # replaced, never written into: it may be linked
                    archive.extractall(target, filter="tar")
            else:
                name = posixpath.basename(source.name)
                copy_entry(source.path, target / name if into_dir else target, link)

    return apply


def _copy_sent(context: BuildContext, directory: str, target: Path) -> None:
    """Copy the sent part of a context directory into `target`, file by file."""
    target.mkdir(parents=True, exist_ok=True)
    base = context.root / directory
    for relative in sent_under(context, directory):
        source, copied = base / relative, target / relative
        if source.is_symlink():
            if os.path.lexists(copied):
                copied.unlink()
            copied.symlink_to(os.readlink(source))
        elif source.is_dir():
            copied.mkdir(parents=True, exist_ok=True)
        else:
            copied.parent.mkdir(parents=True, exist_ok=True)
            if copied.is_file() or copied.is_symlink():
                copied.unlink()  # replaced, never written into: it may be a hard link
            shutil.copy2(source, copied)


def apply_ownership(tree: Path, dest: str, chown: str | None, chmod: str | None) -> list[str]:
    """Apply `--chmod` (octal) and numeric `--chown` to what was copied; notes for the log."""
    notes: list[str] = []
    target = in_tree(tree, dest)
    paths = [target] + (list(target.rglob("*")) if target.is_dir() else [])
    if chmod:
        mode = int(chmod, 8)
        for path in paths:
            if not path.is_symlink():
                path.chmod(mode)
    if chown:
        user, _, group = chown.partition(":")
        if user.isdigit() and (not group or group.isdigit()):
            for path in paths:
                os.lchown(path, int(user), int(group or user))
        else:
            notes.append(
                f"(sandbox) --chown={chown} noted: the image has no user database here "
                "(useradd is not run), files stay owned by root"
            )
    return notes
