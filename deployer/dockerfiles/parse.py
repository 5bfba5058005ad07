"""Dockerfiles read by BuildKit's own parser (the `dockerfile` package wraps
github.com/moby/buildkit/frontend/dockerfile/parser), split into build stages.

The parser handles what is easy to get wrong by hand: parser directives
(`# escape=`), line continuations, comments, heredocs and the JSON exec form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dockerfile


class DockerfileError(ValueError):
    """The Dockerfile cannot be parsed; the message is the parser's."""


@dataclass(frozen=True)
class Instruction:
    """One instruction: `keyword` upper-cased, its `--flags` and its arguments."""

    keyword: str
    flags: tuple[str, ...]  # raw, e.g. "--from=builder", "--mount=type=cache,target=/x"
    args: tuple[str, ...]
    json: bool  # exec (JSON) form
    line: int  # first line in the file, 1-based
    original: str
    heredocs: tuple[str, ...] = ()  # heredoc bodies (BuildKit only)

    def flag(self, name: str) -> str | None:
        """The value of the last `--name=value` flag, or None when absent."""
        found = None
        for raw in self.flags:
            key, has_value, value = raw.removeprefix("--").partition("=")
            if key == name:
                found = value if has_value else "true"
        return found

    def flag_values(self, name: str) -> list[str]:
        """Every value of a repeatable flag (`--mount`)."""
        values = []
        for raw in self.flags:
            key, _, value = raw.removeprefix("--").partition("=")
            if key == name:
                values.append(value)
        return values


@dataclass
class Stage:
    """A build stage: from its FROM line to the next one."""

    index: int
    base: str  # the FROM image or earlier stage, unexpanded
    name: str | None  # `AS name`, lower-cased as Docker compares it
    start: Instruction
    instructions: list[Instruction] = field(default_factory=list)


@dataclass(frozen=True)
class Parsed:
    """A Dockerfile's global ARGs (before the first FROM) and its stages."""

    global_args: tuple[Instruction, ...]
    stages: tuple[Stage, ...]

    def stage(self, reference: str) -> Stage | None:
        """The stage a `--from=` or `--target` names (by name or index), if it is one."""
        wanted = reference.lower()
        for stage in self.stages:
            if stage.name == wanted or str(stage.index) == wanted:
                return stage
        return None


def parse(text: str) -> Parsed:
    """The Dockerfile's instructions by stage; `DockerfileError` with the parser's words."""
    try:
        commands = dockerfile.parse_string(text)
    except (dockerfile.GoParseError, dockerfile.GoIOError) as error:
        raise DockerfileError(f"dockerfile parse error: {error}") from None
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    for command in commands:
        instruction = Instruction(
            keyword=command.cmd.upper(),
            flags=tuple(command.flags),
            args=tuple(command.value),
            json=command.json,
            line=command.start_line,
            original=command.original,
            heredocs=tuple(heredoc.content for heredoc in command.heredocs),
        )
        if instruction.keyword == "FROM":
            words = instruction.args
            name = words[2].lower() if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(len(stages), words[0] if words else "", name, instruction))
        elif stages:
            stages[-1].instructions.append(instruction)
        elif instruction.keyword == "ARG":
            global_args.append(instruction)
        else:
            raise DockerfileError(
                f"dockerfile parse error on line {instruction.line}: "
                f"{instruction.keyword} before the first FROM"
            )
    if not stages:
        raise DockerfileError("dockerfile parse error: no build stage in current context")
    return Parsed(tuple(global_args), tuple(stages))
