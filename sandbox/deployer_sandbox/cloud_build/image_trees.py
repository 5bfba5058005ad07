"""Image trees on disk: paths resolved inside a tree, copies that keep what Docker keeps,
and the content digest of a tree.

A path inside an image (`/bin/uv`) is resolved against the tree as the image would see
it: symlinks followed inside the tree (an absolute link target is relative to the tree's
root), never out of it, as BuildKit's `fs.RootPath` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path

_MAX_LINKS = 40  # Linux's MAXSYMLINKS


def in_tree(root: Path, image_path: str, follow_last: bool = True) -> Path:
    """The host path of `image_path` inside the tree at `root`, symlinks followed inside it."""
    parts = [p for p in posixpath.normpath("/" + image_path).split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink() and (parts or follow_last) and hops < _MAX_LINKS:
            hops += 1
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _cp(source: str, destination: str, link: bool) -> None:
    """`cp -a`, replacing (never writing into) existing files; with `link`, hard links
    instead of copies where the filesystem allows them (a full copy where it does not)."""
    base = ["cp", "-a", "--remove-destination"]
    if link:
        done = subprocess.run([*base, "-l", "--", source, destination], capture_output=True)
        if done.returncode == 0:
            return
    subprocess.run([*base, "--", source, destination], check=True)


def copy_entry(source: Path, destination: Path, link: bool = False) -> None:
    """Copy a file, symlink or whole directory to `destination` (replaced if it exists),
    keeping modes, times and symlinks (`cp -a`). `link`: see `_cp`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.is_dir() and not destination.is_symlink() and source.is_dir():
        merge_directory(source, destination, link)
        return
    if destination.is_dir() and not destination.is_symlink():
        shutil.rmtree(destination)
    elif destination.exists() or destination.is_symlink():
        destination.unlink()
    _cp(str(source), str(destination), link)


def merge_directory(source: Path, destination: Path, link: bool = False) -> None:
    """Copy the contents of directory `source` into `destination` (Docker's rule for a
    directory source: its contents are copied, not the directory itself)."""
    destination.mkdir(parents=True, exist_ok=True)
    _cp(f"{source}/.", f"{destination}/", link)


def clone_tree(source: Path, destination: Path, link: bool = False) -> None:
    """A copy of a tree at a new path (which must not exist). `link`: see `_cp`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    _cp(str(source), str(destination), link)


def remove_tree(path: Path) -> None:
    """Remove a tree, overlayfs's scratch directories (mode 000) included."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        subprocess.run(["rm", "-rf", "--", str(path)], check=False)


def prune_empty_dirs(root: Path, kept: set[str]) -> None:
    """Drop the empty top-level directories of `root` that were not there before (`kept`):
    a RUN's view of the host's directories leaves one per directory it could write."""
    for entry in os.scandir(root):
        if entry.name in kept or entry.is_symlink() or not entry.is_dir():
            continue
        with contextlib.suppress(OSError):  # not empty: the RUN wrote there, so it stays
            os.rmdir(entry.path)


def _hash_tree(digest: hashlib._Hash, root: Path) -> None:
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        relative = os.path.relpath(directory, root)
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(directory, d))]):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            digest.update(f"{relative}/{name}\0{info.st_mode:o}\0".encode())
            if stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path).encode())
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
            digest.update(b"\0")
        for name in dirs:
            if not os.path.islink(os.path.join(directory, name)):
                mode = os.lstat(os.path.join(directory, name)).st_mode
                digest.update(f"{relative}/{name}/\0{mode:o}\0".encode())


def tree_digest(root: Path, config: Mapping[str, object]) -> str:
    """sha256 of an image: every path, mode and content of its tree, and its config."""
    digest = hashlib.sha256()
    _hash_tree(digest, root)
    digest.update(json.dumps(config, sort_keys=True).encode())
    return f"sha256:{digest.hexdigest()}"


def content_hash(files: Mapping[str, Path]) -> str:
    """sha256 of named files and directories (name -> host path): what a COPY reads."""
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(f"{name}\0".encode())
        if path.is_dir() and not path.is_symlink():
            _hash_tree(digest, path)
        elif path.is_symlink():
            digest.update(os.readlink(path).encode())
        else:
            digest.update(f"{path.stat().st_mode:o}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
