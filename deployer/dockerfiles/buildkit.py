"""Whether a docker step builds with BuildKit, and what only BuildKit understands.

One rule for the sandbox's builder and for `deployer check`:

- `docker buildx build` always uses BuildKit (buildx is BuildKit's client).
- `DOCKER_BUILDKIT` decides for `docker build`: "1"/"true" on, "0"/"false" off
  (docs.docker.com/build/buildkit/#getting-started).
- Otherwise the builder image decides. Docker Engine 23.0 made BuildKit the default
  builder on Linux (docs.docker.com/engine/release-notes/23.0/, "Set Buildx and
  BuildKit as the default builder on Linux"); the official `docker:` images ship
  buildx, so `docker:23` and later, and `docker:latest`, use it. Cloud Build's
  `gcr.io/cloud-builders/docker` built with the legacy builder in the failures our
  users met, and its tags do not say which engine they hold, so it counts as legacy
  at every tag: the stricter reading (API-NOTES: `env: ['DOCKER_BUILDKIT=1']`).

The legacy builder refuses BuildKit-only syntax with the message moby's
builder/dockerfile gives: "the --mount option requires BuildKit. Refer to
https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit
enabled".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deployer.dockerfiles.parse import Instruction

CLOUD_BUILDERS_DOCKER = "gcr.io/cloud-builders/docker"
# Docker Hub's official image, however it is spelled.
_OFFICIAL_DOCKER = ("docker", "docker.io/library/docker", "library/docker", "docker.io/docker")
# Flags only BuildKit's frontend knows, per instruction.
_BUILDKIT_FLAGS = {
    "RUN": ("mount", "network", "security"),
    "COPY": ("chmod", "link", "parents", "exclude"),
    "ADD": ("chmod", "link", "checksum", "keep-git-dir", "exclude"),
}


@dataclass(frozen=True)
class BuilderChoice:
    """Whether the step builds with BuildKit, and the reason, quotable in a message."""

    buildkit: bool
    reason: str


def _split_image(image: str) -> tuple[str, str | None]:
    name, _, _digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        return name, tag
    return name, None


def uses_buildkit(
    builder_image: str, env: Mapping[str, str], docker_args: Sequence[str]
) -> BuilderChoice:
    """Whether `docker <docker_args>` in a step run from `builder_image` with `env` uses BuildKit."""
    if list(docker_args[:2]) == ["buildx", "build"] or list(docker_args[:2]) == ["buildx", "b"]:
        return BuilderChoice(True, "`docker buildx build` always builds with BuildKit")
    setting = env.get("DOCKER_BUILDKIT", "").strip().lower()
    if setting in ("1", "true"):
        return BuilderChoice(True, f"the step sets DOCKER_BUILDKIT={env['DOCKER_BUILDKIT']}")
    if setting in ("0", "false"):
        return BuilderChoice(False, f"the step sets DOCKER_BUILDKIT={env['DOCKER_BUILDKIT']}")
    name, tag = _split_image(builder_image)
    if name == CLOUD_BUILDERS_DOCKER:
        return BuilderChoice(
            False, f"{builder_image} builds with Docker's legacy builder unless DOCKER_BUILDKIT=1"
        )
    if name in _OFFICIAL_DOCKER:
        major = re.match(r"(\d+)", tag or "")
        if major is None or int(major.group(1)) >= 23:
            return BuilderChoice(
                True, f"{builder_image} is Docker 23 or later: BuildKit by default"
            )
        return BuilderChoice(False, f"{builder_image} is older than Docker 23: legacy builder")
    return BuilderChoice(False, f"{builder_image} is not a known docker builder: legacy assumed")


def buildkit_only(instruction: Instruction) -> str | None:
    """The BuildKit-only syntax `instruction` uses ("--mount", "a heredoc"), or None."""
    for flag in _BUILDKIT_FLAGS.get(instruction.keyword, ()):
        if instruction.flag(flag) is not None:
            return f"--{flag}"
    if instruction.heredocs:
        return "a heredoc"
    return None


def legacy_refusal(instruction: Instruction, syntax: str) -> str:
    """Docker's own words when the legacy builder meets BuildKit-only `syntax`."""
    if syntax.startswith("--"):
        return (
            f"the {syntax} option requires BuildKit. Refer to "
            "https://docs.docker.com/go/buildkit/ to learn how to build images with "
            "BuildKit enabled"
        )
    # The legacy parser reads a heredoc's body as instructions of their own.
    body = (instruction.heredocs[0].split() or ["EOF"]) if instruction.heredocs else ["EOF"]
    return (
        f"dockerfile parse error on line {instruction.line + 1}: "
        f"unknown instruction: {body[0].upper()}"
    )
