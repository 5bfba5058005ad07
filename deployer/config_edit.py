"""Editing deployer.toml as text: pin `[environments.ENV.secrets]` references, keep all else.

`pin_secret_refs` changes only the lines it must, then checks with `tomllib`
that the result means the old document plus those references; `write_config`
validates a text with `load_config` before renaming it over the config.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.config import load_config
from deployer.errors import ConfigError

_HEADER = re.compile(r"^[ \t]*\[(?P<array>\[)?(?P<key>[^\[\]]*)\](?(array)\])[ \t]*(?:#.*)?$")
_KEY_PART = re.compile(
    r"[ \t]*(?:\"(?P<basic>(?:[^\"\\]|\\.)*)\"|'(?P<literal>[^']*)'|(?P<bare>[A-Za-z0-9_-]+))[ \t]*"
)
_ASSIGN = re.compile(
    r"^(?P<indent>[ \t]*)(?P<key>\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)[ \t]*=[ \t]*(?P<value>.*?)(?P<nl>\r?\n)?$"
)
_SIMPLE_STRING = re.compile(r"(?:\"[^\"\\\n]*\"|'[^'\n]*')(?P<rest>[ \t]*(?:#.*)?)")


@dataclass(frozen=True)
class _Header:
    line: int
    path: tuple[str, ...] | None  # None: a key the editor cannot read
    array: bool


def _key_path(text: str) -> tuple[str, ...] | None:
    parts: list[str] = []
    for piece in _split_dotted(text):
        match = _KEY_PART.fullmatch(piece)
        if match is None:
            return None
        if match["basic"] is not None:
            try:
                parts.append(json.loads(f'"{match["basic"]}"'))
            except json.JSONDecodeError:
                return None
        else:
            parts.append(match["literal"] if match["literal"] is not None else match["bare"])
    return tuple(parts)


def _split_dotted(text: str) -> Iterator[str]:
    """Split a dotted key at dots outside quotes."""
    start, quote = 0, ""
    for index, char in enumerate(text):
        if quote:
            if char == quote and not (quote == '"' and text[index - 1] == "\\"):
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == ".":
            yield text[start:index]
            start = index + 1
    yield text[start:]


def _headers(lines: list[str]) -> list[_Header]:
    """Table headers, skipping lines inside multi-line strings."""
    found: list[_Header] = []
    open_delimiter = ""
    for index, line in enumerate(lines):
        if not open_delimiter:
            match = _HEADER.match(line.rstrip("\r\n"))
            if match:
                found.append(_Header(index, _key_path(match["key"]), bool(match["array"])))
                continue
        for delimiter in re.findall(r"\"\"\"|'''", line):
            if not open_delimiter:
                open_delimiter = delimiter
            elif delimiter == open_delimiter:
                open_delimiter = ""
    return found


def _unquote(key: str) -> str:
    return key[1:-1] if key[:1] in "\"'" else key


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def pin_secret_refs(text: str, environment: str, refs: Mapping[str, str]) -> str:
    """`text` with `NAME = "ref"` set in `[environments.ENV.secrets]`, everything else kept."""
    if not refs:
        return text
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += newline
    headers = _headers(lines)
    ends = [h.line for h in headers[1:]] + [len(lines)]
    sections = {h.path: (h.line, end) for h, end in zip(headers, ends, strict=True) if not h.array}
    remaining = dict(refs)
    table = sections.get(("environments", environment, "secrets"))
    if table is not None:
        start, end = table
        last = start
        for index in range(start + 1, end):
            match = _ASSIGN.match(lines[index])
            if match is None or not _is_content(lines[index]):
                continue
            last = index
            name = _unquote(match["key"])
            if name not in remaining:
                continue
            value = _SIMPLE_STRING.fullmatch(match["value"])
            if value is None:
                raise ConfigError(
                    f"environments.{environment}.secrets.{name} is not written as a one-line "
                    'string; make it `NAME = "secret-id"` and run again. Nothing was changed.'
                )
            ref = remaining.pop(name)
            lines[index] = (
                f'{match["indent"]}{match["key"]} = "{ref}"{value["rest"]}{match["nl"] or ""}'
            )
        added = [f'{name} = "{ref}"{newline}' for name, ref in remaining.items()]
        lines[last + 1 : last + 1] = added
    else:
        block = [
            newline,
            f"[environments.{environment}.secrets]{newline}",
            *[f'{name} = "{ref}"{newline}' for name, ref in remaining.items()],
        ]
        owner = sections.get(("environments", environment))
        if owner is None:
            lines.extend(block)
        else:
            start, end = owner
            last = max((i for i in range(start, end) if _is_content(lines[i])), default=start)
            lines[last + 1 : last + 1] = block
    edited = "".join(lines)
    _check_meaning(text, edited, environment, refs)
    return edited


def _check_meaning(before: str, after: str, environment: str, refs: Mapping[str, str]) -> None:
    """The edit must mean exactly: the old document plus these secret references."""
    expected: dict[str, Any] = tomllib.loads(before)
    table = expected["environments"][environment].setdefault("secrets", {})
    if not isinstance(table, dict):
        table = {}
    table.update(refs)
    try:
        meaning = tomllib.loads(after)
    except tomllib.TOMLDecodeError:
        meaning = None
    if meaning != expected:
        lines = "\n".join(f'  {name} = "{ref}"' for name, ref in refs.items())
        raise ConfigError(
            f"cannot edit environments.{environment}.secrets safely in this file's layout "
            f"(written inline, or as dotted keys?). Move it into its own "
            f"[environments.{environment}.secrets] table, or add these lines there by hand:\n"
            f"{lines}\nNothing was changed in the config."
        )


def validate_config_text(path: Path, text: str) -> None:
    """ConfigError unless `text`, in `path`'s folder, is a valid config."""
    write_config(path, text, replace=False)


def write_config(path: Path, text: str, replace: bool = True) -> None:
    """Write `text` beside `path`, validate it with `load_config`, then rename it over `path`."""
    target = path.resolve()
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, stat.S_IMODE(target.stat().st_mode))
        try:
            load_config(temporary)
        except ConfigError as error:
            reason = str(error).removeprefix(f"{temporary}: ")
            raise ConfigError(
                f"{path}: the edited config would not be valid ({reason}); it was not changed"
            ) from None
        if replace:
            os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
