"""Read a repository's cloudbuild.yaml into a Cloud Build `Build`, as gcloud does.

The Cloud Build client library has no YAML loader. `gcloud builds submit`
parses the YAML, turns snake_case keys into the API's camelCase (except inside
map fields, whose keys are user data), builds the `Build` message, refuses
unknown fields, and then checks what the API would refuse later: a `source`
in the file, no steps, badly named substitutions. Doing the same here lets a
deploy fail before anything is uploaded, with the field and the fix named.
"""

import datetime
import json
import re
from collections.abc import Iterator
from typing import Any

import yaml
from google.cloud.devtools import cloudbuild_v1
from google.protobuf import json_format

__all__ = [
    "USER_SUBSTITUTION",
    "BuildConfigError",
    "load_build_config",
    "referenced_substitutions",
]

# Keys of user substitutions: the API reserves every other name for built-ins.
USER_SUBSTITUTION = re.compile(r"^_[A-Z0-9_]+$")

# Map fields: their keys are names chosen by the user (`_IMAGE`, `API_KEY`)
# and are sent exactly as written. Same list as gcloud's.
_MAP_FIELDS = frozenset({"substitutions", "secretEnv", "secret_env", "envMap", "env_map"})

# `$$` is an escaped dollar; `$_NAME` and `${_NAME...}` refer to a substitution.
_REFERENCE = re.compile(r"\$(?:\$|\{(_[A-Z0-9_]+)|(_[A-Z0-9_]+))")

_UNKNOWN_FIELD = re.compile(r'has no field named "(?P<field>[^"]+)" at "(?P<where>[^"]+)"')

_SCHEMA_URL = "https://cloud.google.com/build/docs/build-config-file-schema"


class BuildConfigError(ValueError):
    """The build config cannot be submitted; the message names the field and the fix."""


def load_build_config(text: str, *, name: str = "cloudbuild.yaml") -> cloudbuild_v1.Build:
    """Parse build config text (YAML or JSON) into a validated `Build`.

    `name` is only used in error messages. Raises `BuildConfigError`.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise BuildConfigError(f"{name}: not valid YAML: {_describe_yaml_error(error)}") from None
    if data is None:
        raise BuildConfigError(f"{name}: is empty; it needs at least a `steps` list")
    if not isinstance(data, dict):
        raise BuildConfigError(
            f"{name}: must be a mapping of build fields (steps, images, ...), "
            f"found a {_yaml_type(data)}"
        )

    fields = _snake_to_camel_keys(data, name)
    if "source" in fields:
        raise BuildConfigError(
            f"{name}: `source` is not allowed in a build config: the deployer sends "
            "the repository at the deployed commit as the source; remove the field"
        )
    _check_substitutions(fields.get("substitutions"), name)

    try:
        payload = json.dumps(fields, default=_not_json)
    except TypeError as error:
        raise BuildConfigError(f"{name}: {error}") from None
    try:
        build: cloudbuild_v1.Build = cloudbuild_v1.Build.from_json(
            payload, ignore_unknown_fields=False
        )
    except json_format.ParseError as error:
        raise BuildConfigError(_describe_parse_error(str(error), name)) from None

    if not build.steps:
        raise BuildConfigError(f"{name}: must list at least one step under `steps`")
    return build


def referenced_substitutions(build: cloudbuild_v1.Build) -> set[str]:
    """Names of the user substitutions (`$_NAME`, `${_NAME}`) the build's values use.

    Compare with `build.substitutions` plus what the submitter passes: Cloud
    Build fails a build that uses an undefined one.
    """
    data = cloudbuild_v1.Build.to_dict(build)
    return {
        match.group(1) or match.group(2)
        for value in _strings(data)
        for match in _REFERENCE.finditer(value)
        if match.group(1) or match.group(2)
    }


def _snake_to_camel_keys(value: Any, name: str) -> Any:
    """Rename mapping keys to camelCase, recursively, leaving map fields' contents alone."""
    if isinstance(value, dict):
        renamed: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise BuildConfigError(f"{name}: field names must be strings, found {key!r}")
            renamed[_snake_to_camel(key)] = (
                item if key in _MAP_FIELDS else _snake_to_camel_keys(item, name)
            )
        return renamed
    if isinstance(value, list):
        return [_snake_to_camel_keys(item, name) for item in value]
    return value


def _snake_to_camel(key: str) -> str:
    """`wait_for` -> `waitFor`; leading underscores are kept, as gcloud does."""
    parts = key.split("_")
    leading = next((i for i, part in enumerate(parts) if part), len(parts))
    if leading:
        parts = parts[leading:]
        if not parts:
            return "_" * (leading - 1)
        parts[0] = "_" * leading + parts[0]
    return "".join(parts[:1] + [part.capitalize() for part in parts[1:]])


def _check_substitutions(substitutions: Any, name: str) -> None:
    if substitutions is None:
        return
    if not isinstance(substitutions, dict):
        raise BuildConfigError(
            f"{name}: `substitutions` must be a mapping such as `_REGION: europe-west1`, "
            f"found a {_yaml_type(substitutions)}"
        )
    for key, value in substitutions.items():
        if not isinstance(key, str) or not USER_SUBSTITUTION.match(key):
            suggestion = "_" + re.sub(r"[^A-Z0-9_]", "_", str(key).upper()).lstrip("_")
            raise BuildConfigError(
                f"{name}: substitution key {key!r} must match {USER_SUBSTITUTION.pattern} "
                f"(user substitutions start with '_' and use A-Z, 0-9 and '_'; "
                f"other names are Cloud Build's built-ins); rename it, e.g. to {suggestion!r}"
            )
        if not isinstance(value, str):
            raise BuildConfigError(
                f"{name}: substitution {key} must be a string, found a {_yaml_type(value)}; "
                f"quote it: {key}: '{value}'"
            )


def _describe_parse_error(message: str, name: str) -> str:
    unknown = _UNKNOWN_FIELD.search(message)
    if unknown:
        return (
            f"{name}: unknown field {unknown['field']!r} in {unknown['where']}; "
            f"check its spelling against {_SCHEMA_URL} "
            "(snake_case keys are read as camelCase)"
        )
    first_line = message.splitlines()[0] if message else "invalid value"
    return f"{name}: does not match the Build schema: {first_line}"


def _describe_yaml_error(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = error.problem or "syntax error"
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(error)


def _yaml_type(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _not_json(value: Any) -> Any:
    # YAML reads unquoted dates and timestamps as such; the API wants strings.
    if isinstance(value, datetime.date | datetime.datetime):
        raise TypeError(f"value {value.isoformat()} was read as a date; quote it")
    raise TypeError(f"value {value!r} ({type(value).__name__}) is not allowed; quote it")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
