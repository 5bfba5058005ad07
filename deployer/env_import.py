"""`deployer env import`: a dotenv file into Secret Manager and the config, exactly.

The seed's deploy script flattened `.env.prod` into one `--set-env-vars` string
and lost every value holding a comma, a quote or `=`. Here each variable
becomes its own secret (`prod-mongodb-url` for `MONGODB_URL`), its bytes exactly
as `read_dotenv` read them, and the environment's `[secrets]` table pins the
version just written. Values are compared and written, never printed.
`${VAR}` and `$VAR` are kept as written, not expanded as other dotenv readers
would: each variable holding such a reference gets a warning naming only the
variables referred to.

Order of work, so a refusal changes nothing: parse and classify the file, check
the config edit would validate, then write the secrets, then the config (to a
temporary file, validated with `load_config`, renamed over the original; see
`config_edit`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from deployer.cli_ports import SecretWriter, StoredSecret
from deployer.config import RESERVED_ENV, RESERVED_ENV_PREFIXES, Config, load_config
from deployer.config_edit import pin_secret_refs, validate_config_text, write_config
from deployer.dotenv import Dotenv, read_dotenv
from deployer.errors import ConfigError, DeployerError, DotenvError
from deployer.pipeline.ports import SecretProblem

MAX_VALUE_BYTES = 64 * 1024  # Secret Manager's payload limit
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{0,200}$")
_MANAGED_LABELS = {"managed-by": "deployer"}


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
    warnings: tuple[str, ...] = ()  # about the file's contents; names only, never a value

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
    project = config.target(environment).project  # secrets live in the target's project
    prefix = environment if prefix is None else prefix
    if not _PREFIX.match(prefix):
        raise ConfigError(f"--prefix {prefix!r}: use letters, digits, '-' and '_' only")
    dotenv = _read_dotenv(dotenv_path)
    chosen, skipped = _choose(dotenv.values)
    _refuse_conflicts(config, environment, dotenv_path, chosen, prefix)
    ids = {name: secret_id(name, prefix) for name in chosen}

    text = config.path.read_bytes().decode("utf-8")
    # Would the edited config validate? Checked with stand-in versions before anything is written.
    validate_config_text(
        config.path, pin_secret_refs(text, environment, {n: f"{s}:1" for n, s in ids.items()})
    )
    planned = [
        _plan_item(writer, project, name, ids[name], data, settings.secrets)
        for name, data in chosen.items()
    ]
    base = ImportResult(
        source=dotenv_path,
        environment=environment,
        project=project,
        config_path=config.path,
        items=tuple(planned),
        skipped=tuple(skipped),
        dry_run=dry_run,
        warnings=reference_warnings(dotenv, chosen),
    )
    if dry_run:
        return base
    done, problem = _write(writer, project, environment, planned, chosen)
    if problem:
        return _replace(base, items=tuple(done), error=problem)
    return _pin(base, config.path, text, done)


def _choose(values: Mapping[str, str]) -> tuple[dict[str, bytes], list[tuple[str, str]]]:
    """The variables that become secrets (as bytes), and those skipped with why."""
    skipped: list[tuple[str, str]] = []
    chosen: dict[str, bytes] = {}
    for name, value in values.items():
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            skipped.append((name, "Cloud Run sets it itself"))
        elif value == "":
            skipped.append((name, "empty; Secret Manager stores no empty value (put it in `env`)"))
        else:
            chosen[name] = value.encode("utf-8")
    return chosen, skipped


def _plan_item(
    writer: SecretWriter,
    project: str,
    name: str,
    secret: str,
    data: bytes,
    pinned: Mapping[str, object],
) -> ImportItem:
    """What importing `name` as `secret` would do, from what Secret Manager holds now."""
    previous = str(pinned[name]) if name in pinned else None
    stored = _stored(writer, project, secret)
    if stored is None:
        action, version = Action.CREATE, None
    elif stored.data == data:
        action, version = Action.UNCHANGED, stored.version
    else:
        action, version = Action.ADD, None
    return ImportItem(name, secret, action, version, previous)


def _write(
    writer: SecretWriter,
    project: str,
    environment: str,
    planned: list[ImportItem],
    chosen: Mapping[str, bytes],
) -> tuple[list[ImportItem], str]:
    """Write the planned secrets in order; those written, and why it stopped ("" if it did not)."""
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
            return done, (
                f"stopped at {item.name} ({item.secret}): {problem}. The secrets listed "
                "above were written; the config was not changed. Run the import again: "
                "what was written shows as unchanged."
            )
        done.append(item)
    return done, ""


def _pin(base: ImportResult, path: Path, text: str, done: list[ImportItem]) -> ImportResult:
    """Pin the written versions in the config read as `text`, unless it changed meanwhile."""
    refs = {item.name: item.ref for item in done}
    edited = pin_secret_refs(text, base.environment, refs)
    if edited == text:
        return _replace(base, items=tuple(done))
    if path.read_bytes().decode("utf-8") != text:
        return _replace(
            base,
            items=tuple(done),
            error=f"{path} changed while importing; the config was not changed. "
            "Run the import again (the secrets show as unchanged).",
        )
    write_config(path, edited)
    load_config(path)  # what the next deploy will read
    return _replace(base, items=tuple(done), config_changed=True)


def _replace(result: ImportResult, **changes: Any) -> ImportResult:
    return ImportResult(**{**result.__dict__, **changes})


def _stored(writer: SecretWriter, project: str, secret: str) -> StoredSecret | None:
    try:
        return writer.stored(project, secret)
    except SecretProblem as problem:
        raise DeployerError(f"cannot read Secret Manager: {problem}; nothing was changed") from None


def _read_dotenv(path: Path) -> Dotenv:
    try:
        # Bytes, not text mode: a quoted multi-line value keeps its line ends exactly.
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DotenvError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise DotenvError(f"{path}: not UTF-8 text (byte {error.start})") from None
    return read_dotenv(text, source=str(path))


def reference_warnings(
    dotenv: Dotenv, chosen: Mapping[str, object], environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """One warning per imported variable whose value refers to another (`${B}`, `$B`),
    which is stored as written. Only referenced names are said, never the value; and a
    bare `$word` is named only when `word` is a variable of the file or of this process's
    environment: otherwise it may well be a piece of a password that holds a `$`."""
    environ = os.environ if environ is None else environ
    warnings = []
    for name, references in dotenv.references.items():
        if name not in chosen:
            continue  # skipped: not imported, so nothing is kept literally
        named = [
            str(ref)
            for ref in references
            if ref.braced or ref.name in dotenv.values or ref.name in environ
        ]
        unnamed = len(references) - len(named)
        parts = list(named)
        if unnamed:
            if unnamed == 1:
                parts.append("one more `$NAME`" if named else "a `$NAME`")
            else:
                parts.append(f"{unnamed} more `$NAME`s" if named else f"{unnamed} `$NAME`s")
        verb = "is" if len(references) == 1 else "are"
        warning = (
            f"{name}: value refers to {_and(parts)}, which {verb} kept literally (not expanded)"
        )
        if unnamed:
            warning += (
                "; a `$word` naming no variable of the file or of this environment is not "
                "shown: it may be part of the value"
            )
        warnings.append(warning)
    return tuple(warnings)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


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
    lines.extend(f"warning: {warning}" for warning in result.warnings)
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
