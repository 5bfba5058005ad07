"""A project installed in the image must find the files its pyproject.toml names.

Installing the project runs its build backend, which reads `readme` and the license
files: hatchling fails with "Readme file does not exist: README.md", and PEP 639 says
"Build tools MUST raise an error if any individual user-specified pattern does not
match at least one file" (peps.python.org/pep-0639/#add-license-files-key). Which RUN
lines install the project:
- `uv sync` without `--no-install-project` (or `--no-install-workspace`, `--only-group`,
  `--only-dev`), in a project uv packages: one with a `[build-system]`, or
  `tool.uv.package = true` (docs.astral.sh/uv/concepts/projects/config/#project-packaging);
- `pip install <path>` and `uv pip install <path>`, `-e <path>` too.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from docker.utils.fnmatch import fnmatchcase

from deployer.dockerfiles.parse import Instruction

_NO_PROJECT = ("--no-install-project", "--no-install-workspace", "--only-group", "--only-dev")
_SEPARATORS = re.compile(r"&&|\|\||;|\||\n")


@dataclass(frozen=True)
class MissingProjectFile:
    """A file the project's metadata names that the image will not hold when it installs."""

    instruction: Instruction
    pyproject: str  # context-relative
    key: str  # "readme", "license-files", "license"
    wanted: str  # the path or pattern, project-relative
    context_path: str  # where it would come from, context-relative


def installs(instruction: Instruction, workdir: str) -> Iterator[tuple[str, str]]:
    """(tool, project folder in the image) for each project install `instruction` runs."""
    text = "\n".join(instruction.heredocs) if instruction.heredocs else " ".join(instruction.args)
    cwd = workdir
    for command in _SEPARATORS.split(text):
        try:
            words = shlex.split(command)
        except ValueError:
            continue
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]  # VAR=value prefixes
        if not words:
            continue
        if words[0] == "cd" and len(words) > 1:
            cwd = posixpath.normpath(posixpath.join(cwd, words[1]))
        elif re.match(r"^(.*/)?uv$", words[0]) and "sync" in words:
            options = words[words.index("sync") + 1 :]
            if not any(word.split("=")[0] in _NO_PROJECT for word in options):
                folder = _option(options, ("--project", "--directory"))
                yield "uv sync", posixpath.normpath(posixpath.join(cwd, folder or "."))
        else:
            yield from _pip(words, cwd)


def _pip(words: list[str], cwd: str) -> Iterator[tuple[str, str]]:
    tool = ""
    if words[0] in ("pip", "pip3") or re.match(r"^(.*/)?pip3?(\.\d+)?$", words[0]):
        tool, rest = "pip install", words[1:]
    elif re.match(r"^(.*/)?uv$", words[0]) and words[1:3] == ["pip", "install"]:
        tool, rest = "uv pip install", words[2:]
    elif re.match(r"^(.*/)?python3?(\.\d+)?$", words[0]) and words[1:3] == ["-m", "pip"]:
        tool, rest = "pip install", words[3:]
    if not tool or not rest or rest[0] != "install":
        return
    for word in rest[1:]:
        value = word.split("=", 1)[1] if word.startswith("--editable=") else word
        value = re.sub(r"\[[^\]]*\]$", "", value)  # `.[dev]`
        if value in (".", "..") or value.startswith(("./", "../", "/")):
            yield tool, posixpath.normpath(posixpath.join(cwd, value))


def _option(words: list[str], names: tuple[str, ...]) -> str | None:
    for position, word in enumerate(words):
        name, has, value = word.partition("=")
        if name in names:
            return value if has else (words[position + 1] if position + 1 < len(words) else None)
    return None


def missing_files(
    instruction: Instruction,
    tool: str,
    project: str,
    files: Mapping[str, str],
    context_root: Path,
) -> list[MissingProjectFile]:
    """What the install of `project` (an image folder) would not find, given the image's
    `files` (image path -> context path) at that RUN."""
    pyproject_path = files.get(posixpath.join(project, "pyproject.toml"))
    if pyproject_path is None:
        return []  # no pyproject here: not the failure this lint looks for
    try:
        data = tomllib.loads((context_root / pyproject_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    uv_package = data.get("tool", {}).get("uv", {}).get("package")
    if tool == "uv sync" and (
        uv_package is False or ("build-system" not in data and not uv_package)
    ):
        return []  # a virtual project: uv installs its dependencies, never builds it
    metadata = data.get("project", {})
    here = posixpath.dirname(pyproject_path)
    missing: list[MissingProjectFile] = []

    def need(key: str, wanted: object) -> None:
        if not isinstance(wanted, str) or not wanted:
            return
        clean = posixpath.normpath(wanted)
        if _WILD.search(clean):
            under = project.rstrip("/") + "/"
            names = [path[len(under) :] for path in files if path.startswith(under)]
            if any(fnmatchcase(name, clean) for name in names):
                return
        elif posixpath.join(project, clean) in files:
            return
        context_path = posixpath.normpath(posixpath.join(here, clean))
        missing.append(MissingProjectFile(instruction, pyproject_path, key, wanted, context_path))

    readme = metadata.get("readme")
    need("readme", readme.get("file") if isinstance(readme, dict) else readme)
    license_ = metadata.get("license")
    if isinstance(license_, dict):
        need("license", license_.get("file"))
    for pattern in metadata.get("license-files") or ():
        need("license-files", pattern)
    return missing


_WILD = re.compile(r"[*?\[]")
