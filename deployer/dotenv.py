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
"""

from __future__ import annotations

import re

from deployer.errors import DotenvError

_NAME = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}


def parse_dotenv(text: str, source: str = "dotenv") -> dict[str, str]:
    """Parse dotenv `text` into an ordered name -> value mapping."""
    values: dict[str, str] = {}
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
            value, position = _quoted(text, position, quote, source, start_line)
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
            position = end + 1
        values[name] = value
        line += 1
    return values


def _quoted(text: str, start: int, quote: str, source: str, line: int) -> tuple[str, int]:
    """The value of a quoted string starting at `start`, and the index after its closing quote."""
    out: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == quote:
            return "".join(out), index + 1
        if quote == '"' and char == "\\" and index + 1 < len(text):
            following = text[index + 1]
            out.append(_ESCAPES.get(following, "\\" + following))
            index += 2
            continue
        out.append(char)
        index += 1
    raise DotenvError(f"{source}, line {line}: the quoted value never closes ({quote} missing)")
