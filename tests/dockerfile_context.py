"""Docker's build context and Dockerfile reading, re-implemented for tests (no Docker engine here).

- the .dockerignore matcher of moby/patternmatcher (used by BuildKit):
  ignorefile.ReadAll's line handling, Pattern.compile's translation of Go
  filepath.Match syntax plus `**` into a regular expression, and
  MatchesOrParentMatches' rule (a path is excluded when it or one of its
  parent directories matches; the last matching pattern wins, `!` re-includes);
- a Dockerfile reader that knows just enough of the syntax (parser
  directives, line continuations, comments, flags, JSON exec form) to list the
  context files that COPY, ADD and `RUN --mount=type=bind` read.
"""

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# --- .dockerignore -----------------------------------------------------------


def go_clean(path: str) -> str:
    """Go's path.Clean: shortest equivalent slash path ("" and "./" become ".")."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append(part)
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_ignore_patterns(text: str) -> list[str]:
    """Patterns of a .dockerignore file, normalised as moby's ignorefile.ReadAll does."""
    patterns = []
    for number, raw_line in enumerate(text.splitlines()):
        line = raw_line.removeprefix("\ufeff") if number == 0 else raw_line
        # Only a '#' in the first column starts a comment.
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def _glob_to_regex(pattern: str, *, double_star: bool) -> str:
    """Translate Go filepath.Match syntax (and, if asked, `**`) into a regex body."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            if double_star and pattern[i : i + 1] == "*":
                i += 1
                if pattern[i : i + 1] == "/":
                    i += 1
                # `**` at the end accepts everything; elsewhere any number of
                # directories, including none.
                out.append(".*" if i == len(pattern) else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i == len(pattern):
                raise ValueError(f"bad pattern {pattern!r}: trailing backslash")
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            # A class, `^` negating it, kept as is (Go has no `!` negation).
            end = pattern.find("]", i + 1)
            if end == -1:
                raise ValueError(f"bad pattern {pattern!r}: unclosed [")
            out.append("[" + pattern[i:end] + "]")
            i = end + 1
        else:
            out.append(re.escape(ch))
    return "".join(out)


def go_match(pattern: str, name: str) -> bool:
    """Go's filepath.Match on slash paths: `*` and `?` never cross a `/`."""
    return re.fullmatch(_glob_to_regex(pattern, double_star=False), name) is not None


@dataclass(frozen=True)
class IgnorePattern:
    """One cleaned .dockerignore pattern, matched as moby/patternmatcher's Pattern.match."""

    text: str
    exclusion: bool

    def matches(self, path: str) -> bool:
        pattern = self.text
        # patternmatcher short-cuts a leading `**` followed only by literal
        # text to a suffix test (so `**foo` also matches `xfoo`), and literal
        # text followed by a final `**` to a prefix test.
        if pattern.startswith("**") and _is_literal(pattern[2:]):
            suffix = pattern[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        if pattern.endswith("**") and _is_literal(pattern[:-2]):
            return path.startswith(pattern[:-2])
        regex = _glob_to_regex(pattern, double_star=True)
        return re.fullmatch(regex, path) is not None


def _is_literal(pattern: str) -> bool:
    """No wildcard, class or escape: what patternmatcher matches without a regex."""
    return re.search(r"[*?\[\]]|\\.", pattern) is None


class DockerIgnore:
    """The exclusion rules of one .dockerignore file."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[IgnorePattern] = []
        for raw in patterns:
            pattern = go_clean(raw.strip()) if raw.strip() else ""
            if not pattern:
                continue
            exclusion = pattern.startswith("!")
            if exclusion:
                if pattern == "!":
                    raise ValueError('illegal exclusion pattern: "!"')
                pattern = pattern[1:]
            # filepath.Match would reject it: check the syntax up front.
            _glob_to_regex(pattern, double_star=True)
            self.patterns.append(IgnorePattern(pattern, exclusion))

    @classmethod
    def from_text(cls, text: str) -> "DockerIgnore":
        return cls(read_ignore_patterns(text))

    def excludes(self, path: str) -> bool:
        """MatchesOrParentMatches: is this slash path left out of the context?"""
        parents = path.split("/")[:-1]
        excluded = False
        for pattern in self.patterns:
            # An inclusion cannot change an excluded path, nor an exclusion
            # an included one.
            if pattern.exclusion != excluded:
                continue
            match = pattern.matches(path) or any(
                pattern.matches("/".join(parents[: i + 1])) for i in range(len(parents))
            )
            if match:
                excluded = not pattern.exclusion
        return excluded

    def may_reinclude_below(self, directory: str) -> bool:
        """Whether BuildKit still walks into an excluded directory.

        tonistiigi/fsutil's walker prunes an excluded directory unless an
        exception pattern (trailing `/*` or `/**` aside) lies inside it; when
        an exception holds a wildcard it cannot tell, and walks in.
        """
        exceptions = [
            p.text.removesuffix("/**").removesuffix("/*") for p in self.patterns if p.exclusion
        ]
        if any(re.search(r"[*\[\]?^\\]", p) for p in exceptions):
            return True
        return any((p + "/").startswith(directory + "/") for p in exceptions)


def build_context(context_dir: Path, dockerfile: Path | None = None) -> set[str]:
    """Slash paths (files and directories) that a build of context_dir can read.

    BuildKit prefers `<Dockerfile>.dockerignore` next to the Dockerfile over
    the context's `.dockerignore`.
    """
    ignore_file = context_dir / ".dockerignore"
    if dockerfile is not None:
        specific = dockerfile.with_name(dockerfile.name + ".dockerignore")
        if specific.exists():
            ignore_file = specific
    rules = DockerIgnore.from_text(ignore_file.read_text() if ignore_file.exists() else "")

    included: set[str] = set()
    for directory, subdirectories, files in os.walk(context_dir):
        relative_dir = Path(directory).relative_to(context_dir).as_posix()
        prefix = "" if relative_dir == "." else relative_dir + "/"
        kept_subdirectories = []
        for name in sorted(subdirectories):
            path = prefix + name
            if not rules.excludes(path):
                included.add(path)
                kept_subdirectories.append(name)
            elif rules.may_reinclude_below(path):
                kept_subdirectories.append(name)
        subdirectories[:] = kept_subdirectories
        for name in files:
            path = prefix + name
            if not rules.excludes(path):
                included.add(path)
                # A directory holding a re-included file is sent too.
                parts = path.split("/")
                included.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return included


# --- Dockerfile ----------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    flags: dict[str, str]  # `--chown=app` -> {"chown": "app"}; `--link` -> {"link": ""}
    arguments: list[str]  # JSON form as given; shell form split on whitespace
    exec_form: bool
    line: int  # where the instruction starts, 1-based
    raw: str  # the arguments after the flags, continuations joined


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_FLAG = re.compile(r"--([a-zA-Z][a-zA-Z0-9-]*)(?:=(\S*))?")


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, instruction text) with continuations joined and comments dropped."""
    lines = text.splitlines()
    escape = "\\"
    start = 0
    # Parser directives (`# syntax=`, `# escape=`) come first, before anything else.
    for number, line in enumerate(lines):
        directive = _DIRECTIVE.match(line)
        if not directive:
            break
        if directive.group(1).lower() == "escape":
            escape = directive.group(2)
        start = number + 1
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")

    parts: list[str] = []
    first = 0
    for number in range(start, len(lines)):
        line = lines[number]
        stripped = line.strip()
        # Comment and blank lines are dropped, also in the middle of a continuation.
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            first = number + 1
        # Lines are joined as they are, without the escape character: the
        # next line's indentation is what separates the words.
        if continuation.search(line):
            parts.append(continuation.sub("", line))
            continue
        parts.append(line)
        yield first, "".join(parts).strip()
        parts = []
    if parts:
        yield first, "".join(parts).strip()


def _first_word(text: str) -> tuple[str, str]:
    """The first whitespace-separated word and the rest, stripped."""
    words = text.split(maxsplit=1)
    return words[0], words[1].strip() if len(words) > 1 else ""


def parse_dockerfile(text: str) -> list[Stage]:
    """Split a Dockerfile into stages of parsed instructions."""
    stages: list[Stage] = []
    for number, logical in _logical_lines(text):
        keyword, rest = _first_word(logical)
        keyword = keyword.upper()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            token, remainder = _first_word(rest)
            flag = _FLAG.fullmatch(token)
            if not flag:
                raise ValueError(f"line {number}: cannot read flag {token!r}")
            name, value = flag.group(1), flag.group(2) or ""
            # Repeated flags (several --mount) are kept, joined by a newline.
            flags[name] = f"{flags[name]}\n{value}" if name in flags else value
            rest = remainder
        exec_form = False
        arguments: list[str]
        if rest.startswith("["):
            try:
                parsed = json.loads(rest)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
                arguments, exec_form = parsed, True
            else:
                arguments = rest.split()
        else:
            arguments = rest.split()
        instruction = Instruction(keyword, flags, arguments, exec_form, number, rest)

        if keyword == "FROM":
            words = arguments
            stage_name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=stage_name))
            continue
        if not stages:
            if keyword != "ARG":
                raise ValueError(f"line {number}: {keyword} before the first FROM")
            continue
        stages[-1].instructions.append(instruction)
    return stages


def _mount_sources(mount_flags: str) -> Iterator[str]:
    """Context paths read by `RUN --mount=type=bind,...` (bind is the default type)."""
    for mount in mount_flags.split("\n"):
        options = {key: value for key, _, value in (i.partition("=") for i in mount.split(","))}
        if options.get("type", "bind") == "bind" and "from" not in options:
            yield options.get("source", options.get("src", "."))


def context_sources(stages: list[Stage]) -> list[tuple[int, str]]:
    """(line, path) of every build context path that COPY, ADD and bind mounts read."""
    sources: list[tuple[int, str]] = []
    for stage in stages:
        for instruction in stage.instructions:
            if instruction.keyword in ("COPY", "ADD"):
                if "from" in instruction.flags:
                    continue  # copies from a stage or an image, not the context
                if instruction.raw.startswith("<<") or any(
                    arg.startswith("<<") for arg in instruction.arguments
                ):
                    raise ValueError(f"line {instruction.line}: heredocs are not supported here")
                for source in instruction.arguments[:-1]:
                    if instruction.keyword == "ADD" and re.match(r"^(https?://|git@)", source):
                        continue  # fetched, not read from the context
                    sources.append((instruction.line, source))
            elif instruction.keyword == "RUN" and "mount" in instruction.flags:
                sources.extend(
                    (instruction.line, source)
                    for source in _mount_sources(instruction.flags["mount"])
                )
    return sources


def missing_sources(context_dir: Path, dockerfile: Path) -> list[str]:
    """Sources the Dockerfile reads that are absent from the computed build context."""
    context = build_context(context_dir, dockerfile)
    missing = []
    for line, source in context_sources(parse_dockerfile(dockerfile.read_text())):
        if "$" in source:
            raise ValueError(f"line {line}: cannot check {source!r}, it uses a variable")
        path = go_clean(source).lstrip("/") or "."
        if path == ".":
            continue
        if re.search(r"[*?\[]", path):
            found = any(go_match(path, candidate) for candidate in context)
        else:
            found = path in context
        if not found:
            missing.append(f"line {line}: {source}")
    return missing
