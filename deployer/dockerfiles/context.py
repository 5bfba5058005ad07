"""A build context as Docker sends it: the folder minus what `.dockerignore` excludes.

Matching is docker-py's `PatternMatcher`, a port of moby/patternmatcher (Go's
filepath.Match syntax plus `**`, `!` exceptions, last match wins, and a path is
excluded when one of its parent directories is). As the Docker CLI does
(cli/command/image/build/context.go, ValidateContextDirectory and the
`!Dockerfile`/`!.dockerignore` it appends), the Dockerfile and `.dockerignore`
themselves are always sent.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from docker.utils.build import PatternMatcher

IGNORE_FILE = ".dockerignore"


@dataclass(frozen=True)
class IgnoreLine:
    """One pattern of `.dockerignore` and the line it is on (1-based)."""

    number: int
    text: str  # as written, `!` included


def read_ignore_lines(text: str) -> list[IgnoreLine]:
    """Patterns of a `.dockerignore`: comments (`#` in the first column) and blanks skipped."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.removeprefix("\ufeff") if number == 1 else raw
        if line.startswith("#") or not line.strip():
            continue
        lines.append(IgnoreLine(number, line.strip()))
    return lines


def _pattern(line: IgnoreLine) -> str:
    invert = line.text.startswith("!")
    body = line.text[1:].strip() if invert else line.text
    body = posixpath.normpath(body).lstrip("/") if body else body
    return ("!" if invert else "") + body


class BuildContext:
    """The files of `root` Docker would send, with the `.dockerignore` line that drops a file."""

    def __init__(self, root: Path, dockerfile: str = "Dockerfile") -> None:
        """`dockerfile`: the Dockerfile's path relative to `root` when it lies inside it."""
        self.root = root
        ignore = root / IGNORE_FILE
        self.ignore_lines = (
            read_ignore_lines(ignore.read_text(encoding="utf-8", errors="replace"))
            if ignore.is_file()
            else []
        )
        always = [f"!{posixpath.normpath(dockerfile)}", f"!{IGNORE_FILE}"]
        self._matcher = PatternMatcher([_pattern(line) for line in self.ignore_lines] + always)
        self._always = {posixpath.normpath(dockerfile), IGNORE_FILE}

    def excluded(self, path: str) -> bool:
        """Whether the context-relative `path` is left out of the context."""
        clean = posixpath.normpath(path).lstrip("/")
        if clean in ("", "."):
            return False
        return bool(self._matcher.matches(clean))

    def excluding_line(self, path: str) -> IgnoreLine | None:
        """The `.dockerignore` line that leaves `path` out (the last one that matches), if any."""
        if not self.excluded(path):
            return None
        clean = posixpath.normpath(path).lstrip("/")
        parts = clean.split("/")
        for line in reversed(self.ignore_lines):
            if line.text.startswith("!"):
                continue
            matcher = PatternMatcher([_pattern(line)])
            if any(matcher.matches("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
                return line
        return None

    def files(self) -> list[str]:
        """Every file and directory sent, context-relative, sorted."""
        return sorted(self._matcher.walk(str(self.root)))

    def contains(self, path: str) -> bool:
        """Whether `path` exists in the folder and is sent."""
        clean = posixpath.normpath(path).lstrip("/")
        return os.path.lexists(self.root / clean) and not self.excluded(clean)
