"""Cloud Build substitutions: which keys a build may use, their values, and applying them.

    `$KEY` / `${KEY}` in step name, args, env, dir, entrypoint, images and tags;
    `$$` is a literal `$`. With `options.dynamic_substitutions`, values are
    evaluated bash-style first (`${_A:-x}`, `${_A:0:7}`, `${_A^^}`).

Problems answer INVALID_ARGUMENT with the API's wording; `ALLOW_LOOSE` lets
missing and unused keys pass.
"""

from __future__ import annotations

import hashlib
import re

from google.cloud.devtools import cloudbuild_v1 as cb

from deployer_sandbox.common.rpc import invalid

USER_KEY = re.compile(r"^_[A-Z0-9_]+$")
# Built-ins a build may refer to. Only the first four have values for a build that
# no trigger started; the others expand to "" (pass your own `_COMMIT_SHA`), and a
# build a trigger started has them in its `substitutions` (`cloud_build.triggers`). The
# list is the documentation's "default substitutions for builds invoked by triggers"
# (configuring-builds/substitute-variable-values), which a request may also set.
BUILTINS = ("PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION")
EMPTY_BUILTINS = (
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "REVISION_ID",
    "COMMIT_SHA",
    "SHORT_SHA",
    "TRIGGER_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
)
_TEMPLATE = re.compile(r"\$\$|\$\{([A-Z_][A-Z0-9_]*)\}|\$([A-Z_][A-Z0-9_]*)")
_BASH = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _template_fields(build: cb.Build) -> list[str]:
    """Every field the API scans for `$KEY` / `${KEY}` templates."""
    fields = [*build.images, *build.tags]
    for step in build.steps:
        fields += [step.name, *step.args, *step.env, step.dir_, step.entrypoint]
    return fields


def _bash_eval(key: str, values: dict[str, str], seen: tuple[str, ...] = ()) -> str:
    """Evaluate substitution `key` bash-style (`${_A}`, `${_A:-x}`, `${_A:0:7}`, `${_A^^}`)."""
    if key in seen:
        raise invalid(
            f"invalid build: cycle in evaluating substitutions: {' -> '.join((*seen, key))}"
        )

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        value = _bash_eval(name, values, (*seen, key)) if name in values else ""
        operation = match.group(2) or ""
        if operation.startswith((":-", "-")):
            return value or operation.partition("-")[2]
        if operation in ("^^", ",,"):
            return value.upper() if operation == "^^" else value.lower()
        if operation.startswith(":") and re.fullmatch(r":\d+(:\d+)?", operation):
            start, _, length = operation[1:].partition(":")
            end = int(start) + int(length) if length else None
            return value[int(start) : end]
        if operation:
            raise invalid(f"invalid build: unsupported substitution expression {match.group(0)!r}")
        return value

    return _BASH.sub(one, values.get(key, ""))


def substitution_values(build: cb.Build, project: str, location: str) -> dict[str, str]:
    """Built-in and user substitutions, evaluated when `options.dynamic_substitutions` asks."""
    number = str(int(hashlib.sha256(project.encode()).hexdigest()[:10], 16))[:12]
    values = dict.fromkeys(EMPTY_BUILTINS, "")
    values |= {"PROJECT_ID": project, "BUILD_ID": build.id, "PROJECT_NUMBER": number}
    values |= {"LOCATION": location, **build.substitutions}
    if build.options.dynamic_substitutions:
        values = {key: _bash_eval(key, values) for key in values}
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    """Apply `$KEY` / `${KEY}` templates; `$$` is a literal `$`."""
    return _TEMPLATE.sub(
        lambda m: "$" if m.group(0) == "$$" else values.get(m.group(1) or m.group(2), ""), text
    )


def check_substitutions(build: cb.Build) -> None:
    """Raise INVALID_ARGUMENT for substitution problems, with the API's wording."""
    for key in build.substitutions:
        if not USER_KEY.match(key) and key not in EMPTY_BUILTINS:
            raise invalid(
                f'invalid build: invalid .substitutions field: substitution key "{key}" does not '
                f'respect format "{USER_KEY.pattern}" and is not an overridable built-in substitution'
            )
    used: set[str] = set()
    missing: list[str] = []
    for text in _template_fields(build):
        for match in _TEMPLATE.finditer(text):
            key = match.group(1) or match.group(2)
            if key is None:
                continue
            used.add(key)
            if key in build.substitutions or key in BUILTINS or key in EMPTY_BUILTINS:
                continue
            if not USER_KEY.match(key):
                raise invalid(
                    "invalid value for 'build.substitutions': "
                    f'key in the template "{key}" is not a valid built-in substitution'
                )
            missing.append(f'key in the template "{key}" is not matched in the substitution data')
    if build.options.dynamic_substitutions:
        # A substitution that only feeds another one's value is in use too.
        for value in build.substitutions.values():
            used.update(m.group(1) or m.group(3) for m in _BASH.finditer(value))
    unused = [
        f'key "{k}" in the substitution data is not matched in the template'
        for k in sorted(build.substitutions)
        if k not in used
    ]
    problems = missing + unused
    loose = build.options.substitution_option == cb.BuildOptions.SubstitutionOption.ALLOW_LOOSE
    if problems and not loose:
        raise invalid("invalid build: " + ";".join(problems))


def apply_substitutions(build: cb.Build, project: str, location: str) -> None:
    """Substitute into every step's name, dir, entrypoint, args and env, and into `images`."""
    values = substitution_values(build, project, location)
    for step in build.steps:
        step.name, step.dir_ = substitute(step.name, values), substitute(step.dir_, values)
        step.entrypoint = substitute(step.entrypoint, values)
        step.args = [substitute(arg, values) for arg in step.args]
        step.env = [substitute(entry, values) for entry in step.env]
    build.images = [substitute(image, values) for image in build.images]
