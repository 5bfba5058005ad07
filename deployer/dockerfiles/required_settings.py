"""The environment variables an app requires, read from its source, never imported.

Two sources, the first found wins:
- pydantic-settings `BaseSettings` subclasses in the image's Python files, read with
  `ast`. As pydantic-settings reads them (docs.pydantic.dev/latest/concepts/pydantic_settings/):
  a field is a variable named `env_prefix` + the field's name, matched without regard
  to case unless `case_sensitive=True`; an `alias` or `validation_alias`
  (`AliasChoices` offers several) names the variable instead, with no prefix. A field
  without a default is required, `Optional[...]`/`X | None` too (pydantic v2: "a field
  is required unless it has a default"). Settings classes that another settings class
  extends are bases, not read alone: the leaves are what an app instantiates.
- a `.env.example` or `.env.sample` in the build context: every name it lists.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

EXAMPLE_FILES = (".env.example", ".env.sample")
_DOTENV_NAME = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


@dataclass(frozen=True)
class RequiredVariable:
    """One required setting: any of `names` provides it."""

    names: tuple[str, ...]
    case_sensitive: bool
    origin: str  # "app/settings.py: Settings.mongodb_url"

    def provided_by(self, provided: Iterable[str]) -> bool:
        if self.case_sensitive:
            return bool(set(self.names) & set(provided))
        return bool({n.lower() for n in self.names} & {p.lower() for p in provided})

    @property
    def shown(self) -> str:
        return " or ".join(self.names if self.case_sensitive else [n.upper() for n in self.names])


@dataclass
class _Class:
    path: str
    node: ast.ClassDef
    bases: list[str]
    config: dict[str, object] = field(default_factory=dict)
    fields: dict[str, tuple[bool, tuple[str, ...]]] = field(default_factory=dict)


def from_dotenv_example(text: str, path: str) -> list[RequiredVariable]:
    """Every name a `.env.example` lists."""
    return [
        RequiredVariable((match[1],), True, path)
        for line in text.splitlines()
        if (match := _DOTENV_NAME.match(line))
    ]


def settings_variables(sources: Mapping[str, str]) -> tuple[list[RequiredVariable], set[str]]:
    """(required variables, every variable name read) of the settings classes in
    `sources` (path -> Python text); names read are lower-case unless case-sensitive."""
    classes = _classes(sources)
    settings = {name for name in classes if _is_settings(name, classes, set())}
    extended = {base for name in settings for base in classes[name].bases}
    required: list[RequiredVariable] = []
    read: set[str] = set()
    for name in sorted(settings - extended):
        config, fields = _resolved(name, classes, set())
        prefix = str(config.get("env_prefix") or "")
        sensitive = config.get("case_sensitive") is True
        for field_name, (is_required, aliases) in fields.items():
            names = aliases or (prefix + field_name,)
            read.update(n if sensitive else n.lower() for n in names)
            if is_required:
                origin = f"{classes[name].path}: {name}.{field_name}"
                required.append(RequiredVariable(names, sensitive, origin))
    return required, read


def _classes(sources: Mapping[str, str]) -> dict[str, _Class]:
    found: dict[str, _Class] = {}
    for path, text in sorted(sources.items()):
        try:
            tree = ast.parse(text, filename=path)
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                found[node.name] = _read_class(path, node)
    return found


def _is_settings(name: str, classes: Mapping[str, _Class], seen: set[str]) -> bool:
    if name in seen or name not in classes:
        return False
    seen.add(name)
    return any(
        base == "BaseSettings" or _is_settings(base, classes, seen) for base in classes[name].bases
    )


def _resolved(
    name: str, classes: Mapping[str, _Class], seen: set[str]
) -> tuple[dict[str, object], dict[str, tuple[bool, tuple[str, ...]]]]:
    """Config and fields with inheritance: bases first (the last base first, as the MRO
    lets the first base win), then the class's own."""
    config: dict[str, object] = {}
    fields: dict[str, tuple[bool, tuple[str, ...]]] = {}
    if name in seen or name not in classes:
        return config, fields
    seen.add(name)
    found = classes[name]
    for base in reversed(found.bases):
        base_config, base_fields = _resolved(base, classes, seen)
        config.update(base_config)
        fields.update(base_fields)
    config.update(found.config)
    fields.update(found.fields)
    return config, fields


def _read_class(path: str, node: ast.ClassDef) -> _Class:
    bases = [_name(base) for base in node.bases]
    read = _Class(path, node, [base for base in bases if base])
    read.config.update(_literal_keywords(node.keywords))  # class S(BaseSettings, env_prefix=...)
    for item in node.body:
        if isinstance(item, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "model_config" for t in item.targets
        ):
            read.config.update(_config_value(item.value))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            name = item.target.id
            if name == "model_config":
                if item.value is not None:
                    read.config.update(_config_value(item.value))
            elif not name.startswith("_") and "ClassVar" not in ast.unparse(item.annotation):
                read.fields[name] = _field(item.annotation, item.value)
        elif isinstance(item, ast.ClassDef) and item.name == "Config":  # pydantic v1 style
            for statement in item.body:
                if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
                    value = _literal(statement.value)
                    if value is not None:
                        read.config[statement.targets[0].id] = value
    return read


def _field(annotation: ast.expr, value: ast.expr | None) -> tuple[bool, tuple[str, ...]]:
    """(required, aliases) of one annotated field."""
    calls = [value] if isinstance(value, ast.Call) and _name(value.func) == "Field" else []
    if isinstance(annotation, ast.Subscript) and _name(annotation.value) == "Annotated":
        metadata = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else []
        calls += [m for m in metadata if isinstance(m, ast.Call) and _name(m.func) == "Field"]
    aliases: tuple[str, ...] = ()
    for call in calls:
        for keyword in call.keywords:
            if keyword.arg in ("alias", "validation_alias"):
                aliases = _aliases(keyword.value) or aliases
    if value is None or (isinstance(value, ast.Constant) and value.value is Ellipsis):
        required = not any(_has_default(call) for call in calls)
    elif calls and value is calls[0]:
        required = not _has_default(calls[0])
    else:
        required = False
    return required, aliases


def _has_default(call: ast.Call) -> bool:
    if call.args and not (isinstance(call.args[0], ast.Constant) and call.args[0].value is ...):
        return True
    for keyword in call.keywords:
        if keyword.arg == "default_factory":
            return True
        if keyword.arg == "default":
            return not (isinstance(keyword.value, ast.Constant) and keyword.value.value is ...)
    return False


def _aliases(node: ast.expr) -> tuple[str, ...]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    if isinstance(node, ast.Call) and _name(node.func) in ("AliasChoices", "AliasPath"):
        names = []
        for arg in node.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.append(arg.value)
                if _name(node.func) == "AliasPath":
                    break  # AliasPath("a", 0): the variable is `a`
            elif isinstance(arg, ast.Call):
                names.extend(_aliases(arg)[:1])
        return tuple(names)
    return ()


def _config_value(node: ast.expr) -> dict[str, object]:
    if isinstance(node, ast.Call):  # SettingsConfigDict(...), ConfigDict(...), dict(...)
        return _literal_keywords(node.keywords)
    if isinstance(node, ast.Dict):
        return {
            key.value: value
            for key, raw in zip(node.keys, node.values, strict=True)
            if isinstance(key, ast.Constant) and isinstance(key.value, str)
            if (value := _literal(raw)) is not None
        }
    return {}


def _literal_keywords(keywords: list[ast.keyword]) -> dict[str, object]:
    return {k.arg: value for k in keywords if k.arg and (value := _literal(k.value)) is not None}


def _literal(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):  # Generic[...] bases
        return _name(node.value)
    return ""
