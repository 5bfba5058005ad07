"""An exact dotenv parser: values arrive byte for byte as the file meant them.

The origin of this module is a deploy script that flattened `.env.prod` into one
`--set-env-vars` string and lost every value holding a comma, a quote or `=`.
Here each value is parsed on its own and later sent as its own typed field.

Grammar (the common dotenv dialect):
- blank lines and lines starting with `#` are ignored; `export ` before a name is allowed;
- `NAME=value`, spaces around `=` ignored; NAME is `[A-Za-z_][A-Za-z0-9_]*`;
- unquoted values are trimmed and end at ` #` (an inline comment);
- 'single quotes' keep everything literally, across lines;
- "double quotes" understand \\n \\r \\t \\" \\\\ and \\$, across lines;
- no `${VAR}` interpolation: a `$` is just a character.
The last assignment of a name wins. Errors name the line, never a value.

Other readers (python-dotenv, Docker Compose, a shell's `source`) expand `${VAR}`
and `$VAR` in unquoted and double-quoted values, so a file written for them can
mean something else here: `read_dotenv` notes each such reference (not those in
single quotes or written `\\$`, which every reader keeps), for the import to warn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deployer.errors import DotenvError

_NAME = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}
# `$$` (Compose's literal `$`), `${NAME}` with any `:-default`-like tail, or `$NAME`.
_REFERENCE = re.compile(
    r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:[-:?+=][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))"
)
# Stands in for an escaped `\$` in the text searched for references: it is no reference.
_ESCAPED_DOLLAR = "\0"


@dataclass(frozen=True)
class Reference:
    """`${name}` (braced) or `$name` in a value, which other dotenv readers would expand."""

    name: str
    braced: bool

    def __str__(self) -> str:
        return f"${{{self.name}}}" if self.braced else f"${self.name}"


@dataclass(frozen=True)
class Dotenv:
    values: dict[str, str]  # name -> value, in the file's order
    # name -> the references its value holds, in order, each once; names without any are absent
    references: dict[str, tuple[Reference, ...]]


def parse_dotenv(text: str, source: str = "dotenv") -> dict[str, str]:
    """Parse dotenv `text` into an ordered name -> value mapping."""
    return read_dotenv(text, source).values


def read_dotenv(text: str, source: str = "dotenv") -> Dotenv:
    """Parse dotenv `text`: its values, and the references other readers would expand."""
    values: dict[str, str] = {}
    references: dict[str, tuple[Reference, ...]] = {}
    position, line = 0, 1
    text = text.removeprefix("\ufeff")
    while position < len(text):
        end = text.find("\n", position)
        end = len(text) if end < 0 else end
        raw = text[position:end]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            position, line = end + 1, line + 1
            continue
        match = _NAME.match(text, position, end)
        if match is None:
            raise DotenvError(f"{source}, line {line}: expected NAME=value")
        name = match.group(1)
        start_line = line
        position = match.end()
        quote = text[position] if position < len(text) else ""
        if quote in ("'", '"'):
            value, expandable, position = _quoted(text, position, quote, source, start_line)
            line += text.count("\n", match.end(), position)
            rest_end = text.find("\n", position)
            rest_end = len(text) if rest_end < 0 else rest_end
            rest = text[position:rest_end].strip()
            if rest and not rest.startswith("#"):
                raise DotenvError(
                    f"{source}, line {line}: unexpected text after the closing quote of {name}"
                )
            position = rest_end + 1
        else:
            value = text[position:end]
            comment = re.search(r"[ \t]#", value)
            if comment:
                value = value[: comment.start()]
            value = value.strip()
            expandable = value
            position = end + 1
        values[name] = value
        references.pop(name, None)  # the last assignment wins here too
        if found := _references(expandable):
            references[name] = found
        line += 1
    return Dotenv(values, references)


def _references(expandable: str) -> tuple[Reference, ...]:
    """The `${NAME}` and `$NAME` references in `expandable`, in order, each once."""
    found: dict[Reference, None] = {}
    for match in _REFERENCE.finditer(expandable):
        braced, bare = match.group(1), match.group(2)
        if name := braced or bare:  # neither: `$$`, a `$` no reader expands
            found[Reference(name, braced is not None)] = None
    return tuple(found)


def _quoted(text: str, start: int, quote: str, source: str, line: int) -> tuple[str, str, int]:
    """The value of a quoted string starting at `start`, the same with what other readers
    would not expand blanked out ("" in single quotes, `\\$` as no `$`), and the index
    after its closing quote."""
    out: list[str] = []
    expandable: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == quote:
            shown = "" if quote == "'" else "".join(expandable)
            return "".join(out), shown, index + 1
        if quote == '"' and char == "\\" and index + 1 < len(text):
            following = text[index + 1]
            out.append(_ESCAPES.get(following, "\\" + following))
            expandable.append(_ESCAPED_DOLLAR if following == "$" else out[-1])
            index += 2
            continue
        out.append(char)
        expandable.append(char)
        index += 1
    raise DotenvError(f"{source}, line {line}: the quoted value never closes ({quote} missing)")
