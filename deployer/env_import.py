"""`deployer env import`: a dotenv file into Secret Manager and the config, exactly.

The seed's deploy script flattened `.env.prod` into one `--set-env-vars` string
and lost every value holding a comma, a quote or `=`. Here each variable
becomes its own secret (`prod-mongodb-url` for `MONGODB_URL`), its bytes exactly
as `parse_dotenv` read them, and the environment's `[secrets]` table pins the
version just written. Values are compared and written, never printed.

Order of work, so a refusal changes nothing: parse and classify the file, check
the config edit would validate, then write the secrets, then the config (to a
temporary file, validated with `load_config`, renamed over the original).
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
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from deployer.config import RESERVED_ENV, RESERVED_ENV_PREFIXES, Config, load_config
from deployer.dotenv import parse_dotenv
from deployer.errors import ConfigError, DeployerError, DotenvError
from deployer.pipeline.ports import SecretProblem

MAX_VALUE_BYTES = 64 * 1024  # Secret Manager's payload limit
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{0,200}$")
_MANAGED_LABELS = {"managed-by": "deployer"}


# --- the slice of Secret Manager this needs -------------------------------------------


@dataclass(frozen=True)
class StoredSecret:
    """A secret as Secret Manager holds it: its latest enabled version and that version's bytes."""

    version: str | None  # None: no enabled version
    data: bytes | None


class SecretWriter(Protocol):
    def stored(self, project: str, secret: str) -> StoredSecret | None:
        """The latest enabled version (CRC32C checked), or None when the secret does not exist."""
        ...

    def create(self, project: str, secret: str, labels: Mapping[str, str]) -> None:
        """Create an empty secret with automatic replication."""
        ...

    def add_version(self, project: str, secret: str, data: bytes) -> str:
        """Add `data` as a new enabled version; its number."""
        ...


# --- the result ---------------------------------------------------------------------------


class Action(StrEnum):
    CREATE = "created"
    ADD = "new version"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ImportItem:
    name: str
    secret: str
    action: Action
    version: str | None = None  # known once written (or when unchanged)
    previous: str | None = None  # the reference the config had for `name`

    @property
    def ref(self) -> str:
        return f"{self.secret}:{self.version}" if self.version else self.secret


@dataclass(frozen=True)
class ImportResult:
    source: Path
    environment: str
    project: str
    config_path: Path
    items: tuple[ImportItem, ...]
    skipped: tuple[tuple[str, str], ...]  # (name, why)
    dry_run: bool
    config_changed: bool = False
    error: str = ""  # why the import stopped part way; the config is then unchanged

    @property
    def ok(self) -> bool:
        return not self.error


# --- the import ---------------------------------------------------------------------------


def secret_id(name: str, prefix: str) -> str:
    """The secret id for variable `name`: `prod-mongodb-url` for MONGODB_URL under prefix `prod`."""
    slug = name.lower().replace("_", "-")
    return f"{prefix}-{slug}" if prefix else slug


def import_env(
    dotenv_path: Path,
    environment: str,
    writer: SecretWriter,
    *,
    prefix: str | None = None,
    dry_run: bool = False,
    config_path: Path | str | None = None,
) -> ImportResult:
    """Move `dotenv_path` into Secret Manager and pin it in the config (see the module doc)."""
    config = load_config(config_path)
    settings = config.environment(environment)
    project = config.services[settings.service].project
    prefix = environment if prefix is None else prefix
    if not _PREFIX.match(prefix):
        raise ConfigError(f"--prefix {prefix!r}: use letters, digits, '-' and '_' only")
    values = _read_dotenv(dotenv_path)

    skipped: list[tuple[str, str]] = []
    chosen: dict[str, bytes] = {}
    for name, value in values.items():
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            skipped.append((name, "Cloud Run sets it itself"))
        elif value == "":
            skipped.append((name, "empty; Secret Manager stores no empty value (put it in `env`)"))
        else:
            chosen[name] = value.encode("utf-8")
    _refuse_conflicts(config, environment, dotenv_path, chosen, prefix)
    ids = {name: secret_id(name, prefix) for name in chosen}

    text = config.path.read_bytes().decode("utf-8")
    # Would the edited config validate? Checked with stand-in versions before anything is written.
    _validate(
        config.path, pin_secret_refs(text, environment, {n: f"{s}:1" for n, s in ids.items()})
    )

    planned: list[ImportItem] = []
    for name, data in chosen.items():
        previous = str(settings.secrets[name]) if name in settings.secrets else None
        stored = _stored(writer, project, ids[name])
        if stored is None:
            action, version = Action.CREATE, None
        elif stored.data == data:
            action, version = Action.UNCHANGED, stored.version
        else:
            action, version = Action.ADD, None
        planned.append(ImportItem(name, ids[name], action, version, previous))

    base = ImportResult(
        source=dotenv_path,
        environment=environment,
        project=project,
        config_path=config.path,
        items=tuple(planned),
        skipped=tuple(skipped),
        dry_run=dry_run,
    )
    if dry_run:
        return base

    done: list[ImportItem] = []
    for item in planned:
        try:
            if item.action == Action.CREATE:
                writer.create(project, item.secret, {**_MANAGED_LABELS, "environment": environment})
            if item.action != Action.UNCHANGED:
                item = ImportItem(
                    item.name,
                    item.secret,
                    item.action,
                    writer.add_version(project, item.secret, chosen[item.name]),
                    item.previous,
                )
        except SecretProblem as problem:
            return _replace(
                base,
                items=tuple(done),
                error=f"stopped at {item.name} ({item.secret}): {problem}. The secrets listed "
                "above were written; the config was not changed. Run the import again: "
                "what was written shows as unchanged.",
            )
        done.append(item)

    refs = {item.name: item.ref for item in done}
    edited = pin_secret_refs(text, environment, refs)
    if edited == text:
        return _replace(base, items=tuple(done))
    if config.path.read_bytes().decode("utf-8") != text:
        return _replace(
            base,
            items=tuple(done),
            error=f"{config.path} changed while importing; the config was not changed. "
            "Run the import again (the secrets show as unchanged).",
        )
    _write_atomically(config.path, edited)
    load_config(config.path)  # what the next deploy will read
    return _replace(base, items=tuple(done), config_changed=True)


def _replace(result: ImportResult, **changes: Any) -> ImportResult:
    return ImportResult(**{**result.__dict__, **changes})


def _stored(writer: SecretWriter, project: str, secret: str) -> StoredSecret | None:
    try:
        return writer.stored(project, secret)
    except SecretProblem as problem:
        raise DeployerError(f"cannot read Secret Manager: {problem}; nothing was changed") from None


def _read_dotenv(path: Path) -> dict[str, str]:
    try:
        # Bytes, not text mode: a quoted multi-line value keeps its line ends exactly.
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DotenvError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise DotenvError(f"{path}: not UTF-8 text (byte {error.start})") from None
    return parse_dotenv(text, source=str(path))


def _refuse_conflicts(
    config: Config, environment: str, source: Path, chosen: Mapping[str, bytes], prefix: str
) -> None:
    """Names the import cannot take: plain `env` values, id collisions, oversized values."""
    settings = config.environment(environment)
    plain = sorted(set(chosen) & set(settings.env))
    if plain:
        raise ConfigError(
            f"{', '.join(plain)} already set as plain values in environments.{environment}.env of "
            f"{config.path}; a variable comes from one place only. Remove "
            f"{'it' if len(plain) == 1 else 'them'} from `env` (or from {source}) and run again. "
            "Nothing was changed."
        )
    by_id: dict[str, list[str]] = {}
    for name in chosen:
        by_id.setdefault(secret_id(name, prefix), []).append(name)
    clashes = [f"{' and '.join(names)} -> {sid}" for sid, names in by_id.items() if len(names) > 1]
    if clashes:
        raise DotenvError(
            f"{source}: names that map to the same secret id: {'; '.join(clashes)}. "
            "Rename one of them. Nothing was changed."
        )
    bad = [sid for sid in by_id if not _SECRET_ID.match(sid)]
    if bad:
        raise DotenvError(
            f"{source}: secret ids longer than 255 characters: {', '.join(bad)}; "
            "shorten the names or --prefix. Nothing was changed."
        )
    large = [
        f"{name} ({len(data)} bytes)"
        for name, data in chosen.items()
        if len(data) > MAX_VALUE_BYTES
    ]
    if large:
        raise DotenvError(
            f"{source}: values larger than Secret Manager's 64 KiB: {', '.join(large)}. "
            "Nothing was changed."
        )


# --- editing deployer.toml as text ------------------------------------------------------

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


def _validate(path: Path, text: str) -> None:
    """ConfigError unless `text`, in `path`'s folder, is a valid config."""
    _write_atomically(path, text, replace=False)


def _write_atomically(path: Path, text: str, replace: bool = True) -> None:
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


# --- what the user reads -----------------------------------------------------------------


def render_import(result: ImportResult) -> list[str]:
    """The import's report: names, secret ids and versions; never a value."""
    head = f"env import {result.source} -> {result.environment} (project {result.project})"
    lines = [head + (": dry run, nothing changed" if result.dry_run else "")]
    width = max((len(item.name) for item in result.items), default=0)
    width = max([width, *(len(name) for name, _ in result.skipped)])
    for item in result.items:
        if result.dry_run:
            what = {
                Action.CREATE: "would create the secret",
                Action.ADD: "would add a new version",
                Action.UNCHANGED: "unchanged",
            }[item.action]
        else:
            what = str(item.action)
        if item.previous and item.previous != item.ref:
            what += f" (was {item.previous})"
        lines.append(f"  {item.name:<{width}}  {item.ref:<32} {what}")
    for name, why in result.skipped:
        lines.append(f"  {name:<{width}}  skipped: {why}")
    section = f"[environments.{result.environment}.secrets]"
    if result.error:
        lines.append(f"error: {result.error}")
    elif result.dry_run:
        lines.append(f"{result.config_path}: {section} would pin {len(result.items)} reference(s)")
    elif result.config_changed:
        lines.append(f"{result.config_path}: {section} pins {len(result.items)} reference(s)")
    else:
        lines.append(f"{result.config_path}: already pins these versions; not changed")
    return lines
