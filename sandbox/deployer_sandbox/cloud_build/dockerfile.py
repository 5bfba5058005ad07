"""What a Dockerfile says about running its image: the target stage's ENTRYPOINT + CMD and ENV.

Only ARG, ENV, ENTRYPOINT, CMD and FROM (for stages and their inheritance) are
read; every other instruction is ignored, as no container runs in the sandbox.
Values are expanded as Docker expands them, with the build args.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from deployer_sandbox.cloud_build.status import StepFailed

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def _expand(text: str, known: dict[str, str]) -> tuple[str, bool]:
    """Expand `$X`, `${X}`, `${X:-d}` as Docker does; also say whether all names were known."""
    complete = True

    def one(match: re.Match[str]) -> str:
        nonlocal complete
        name = match.group(1) or match.group(3)
        if name in known:
            return known[name] or (match.group(2) or "")
        if match.group(2) is not None:
            return match.group(2)
        complete = False
        return ""

    return _VAR.sub(one, text), complete


@dataclass
class _Stage:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)


def evaluate_dockerfile(
    text: str, build_args: dict[str, str], target: str | None
) -> tuple[tuple[str, ...], dict[str, str]]:
    """(ENTRYPOINT + CMD, ENV) of the target stage (default: the last), from ARG and ENV lines.

    ENV values that depend on the base image's environment (`PATH=/x:$PATH`) are
    left out: a revision runs with the sandbox's own environment, not the image's.
    """
    stages: dict[str, _Stage] = {}
    stage: _Stage | None = None
    for raw in re.sub(r"\\[ \t]*\r?\n", " ", text).splitlines():
        instruction, _, rest = raw.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            words = [word for word in rest.split() if not word.startswith("--")]
            base = stages.get(words[0].lower()) if words else None
            stage = _Stage(base.entrypoint, base.cmd, dict(base.env)) if base else _Stage()
            named = len(words) == 3 and words[1].upper() == "AS"
            stages[words[2].lower() if named else f"#{len(stages)}"] = stage
        elif stage is None or instruction.startswith("#"):
            continue  # comments, and global ARGs that only feed FROM lines
        elif instruction == "ARG":
            key, has_default, default = rest.partition("=")
            value = build_args.get(key.strip(), default.strip("\"'") if has_default else "")
            stage.args[key.strip()] = _expand(value, {**stage.args, **stage.env})[0]
        elif instruction == "ENV":
            _set_env(stage, rest)
        elif instruction in ("CMD", "ENTRYPOINT"):
            try:
                form = tuple(str(part) for part in json.loads(rest))
            except (ValueError, TypeError):
                form = ("/bin/sh", "-c", rest)
            if instruction == "ENTRYPOINT":
                stage.entrypoint, stage.cmd = form, ()
            else:
                stage.cmd = form
    if target:
        stage = stages.get(target.lower())
        if stage is None:
            raise StepFailed(f'ERROR: failed to solve: target stage "{target}" could not be found')
    if stage is None:
        raise StepFailed("ERROR: failed to solve: no build stage in current context")
    return stage.entrypoint + stage.cmd, stage.env


def _set_env(stage: _Stage, rest: str) -> None:
    """Apply one ENV line (`K=V ...` or the legacy `K V`) to `stage`."""
    known = {**stage.args, **stage.env}
    try:
        pairs = shlex.split(rest)
    except ValueError as error:
        raise StepFailed(f"ERROR: failed to solve: dockerfile parse error: {error}") from None
    if pairs and "=" not in pairs[0]:  # legacy `ENV KEY value`
        pairs = [f"{pairs[0]}={' '.join(pairs[1:])}"]
    for pair in pairs:
        key, _, value = pair.partition("=")
        expanded, complete = _expand(value, known)
        if complete and key != "PATH":
            stage.env[key] = expanded
        else:
            stage.env.pop(key, None)
