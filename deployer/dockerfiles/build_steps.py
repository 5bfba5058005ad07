"""The `docker build` steps of a Cloud Build config: where each one's Dockerfile and
context are, and whether it builds with BuildKit.

Cloud Build runs a step in `/workspace/<source dir>/<step dir>`
(cloud.google.com/build/docs/build-config-file-schema, "dir": relative to the
source's own `dir`). The Docker CLI reads `PATH` (the context) from that working
folder, and `-f`/`--file` from it too, not from the context: "When using a local
context directory, and the Dockerfile is specified with the -f/--file option, then it
is considered relative to the current directory and not the context directory"
(docker/cli, cli/command/image/build/context.go, GetContextFromLocalDir). Without
`-f` the Dockerfile is `PATH/Dockerfile`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from google.cloud.devtools import cloudbuild_v1

from deployer.dockerfiles.buildkit import CLOUD_BUILDERS_DOCKER, BuilderChoice, uses_buildkit

# Options of `docker build` / `docker buildx build` that take a value (docs.docker.com/
# reference/cli/docker/buildx/build/ and .../image/build/): the word after them is theirs,
# not the context.
_VALUED = frozenset(
    {
        *("--add-host", "--allow", "--annotation", "--attest", "--build-arg"),
        *("--build-context", "--builder", "--cache-from", "--cache-to", "--call"),
        *("--cgroup-parent", "--cpu-period", "--cpu-quota", "--cpu-shares", "-c"),
        *("--cpuset-cpus", "--cpuset-mems", "--file", "-f", "--iidfile", "--isolation"),
        *("--label", "--memory", "-m", "--memory-swap", "--metadata-file", "--network"),
        *("--output", "-o", "--platform", "--progress", "--secret", "--security-opt"),
        *("--shm-size", "--ssh", "--tag", "-t", "--target", "--ulimit"),
    }
)
_SUBSTITUTION = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)\}?")


@dataclass(frozen=True)
class DockerBuild:
    """One step that runs `docker build`: its name for people and what it builds."""

    index: int
    step_id: str
    image: str  # the builder image
    env: Mapping[str, str]
    args: tuple[str, ...]  # as given to docker, substitutions applied where known
    workdir: str  # repository-relative folder the step runs in ("" for the root)
    context: str | None  # repository-relative; None when not a folder (a URL, `-`)
    dockerfile: str | None  # repository-relative; None when it cannot be told
    target: str | None
    build_args: Mapping[str, str]
    builder: BuilderChoice

    @property
    def label(self) -> str:
        """`step "build" (steps[1])`: how a fix in the build config names it."""
        if self.step_id:
            return f'step "{self.step_id}" (steps[{self.index}])'
        return f"step steps[{self.index}]"


def docker_builds(
    build: cloudbuild_v1.Build, source_dir: str, substitutions: Mapping[str, str]
) -> list[DockerBuild]:
    """Every step of `build` that runs `docker build` or `docker buildx build` directly
    (a shell script that runs docker is not read)."""
    values = {**dict(build.substitutions), **substitutions}
    found = []
    for index, step in enumerate(build.steps):
        entrypoint = step.entrypoint
        if entrypoint not in ("", "docker") or (not entrypoint and not _docker_image(step.name)):
            continue
        args = tuple(_substitute(arg, values) for arg in step.args)
        words = _build_words(args)
        if words is None:
            continue
        env = dict(item.partition("=")[::2] for item in step.env)
        workdir = _join(source_dir, step.dir_)
        context, dockerfile, target, build_args = _read_words(words)
        context_path = _local(workdir, context)
        if dockerfile is None:
            file_path = (
                posixpath.join(context_path, "Dockerfile") if context_path is not None else None
            )
        else:
            file_path = _local(workdir, dockerfile)
        found.append(
            DockerBuild(
                index=index,
                step_id=step.id,
                image=step.name,
                env=env,
                args=args,
                workdir=workdir,
                context=context_path,
                dockerfile=file_path,
                target=target,
                build_args=build_args,
                builder=uses_buildkit(step.name, env, args),
            )
        )
    return found


def _docker_image(image: str) -> bool:
    name = image.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name.rpartition(":")[0]
    return name in (CLOUD_BUILDERS_DOCKER, "docker", "docker.io/library/docker", "library/docker")


def _build_words(args: Sequence[str]) -> list[str] | None:
    """The words after `build` (`docker build`, `docker image build`, `docker buildx build`)."""
    for prefix in (["build"], ["image", "build"], ["buildx", "build"], ["builder", "build"]):
        if list(args[: len(prefix)]) == prefix:
            return list(args[len(prefix) :])
    return None


def _read_words(words: list[str]) -> tuple[str | None, str | None, str | None, dict[str, str]]:
    """(context, -f value, --target, --build-arg NAME=VALUE) of `docker build`'s words."""
    context = dockerfile = target = None
    build_args: dict[str, str] = {}
    position = 0
    while position < len(words):
        word = words[position]
        if word.startswith("-") and word != "-":
            name, has_value, value = word.partition("=")
            if not has_value and name in _VALUED and position + 1 < len(words):
                position += 1
                value = words[position]
            elif not has_value and len(name) > 2 and name[1] in "fto" and name[0:2] != "--":
                name, value = name[:2], name[2:]  # `-fDockerfile`, as Go's pflag reads it
            if name in ("-f", "--file"):
                dockerfile = value
            elif name == "--target":
                target = value
            elif name == "--build-arg":
                key, has, given = value.partition("=")
                if has:
                    build_args[key] = given
        elif context is None:
            context = word
        position += 1
    return context, dockerfile, target, build_args


def _local(workdir: str, path: str | None) -> str | None:
    """`path` as the step reads it, repository-relative; None for a URL, stdin or `$...`."""
    if path is None or path == "-" or "://" in path or path.startswith("git@") or "$" in path:
        return None
    if path.startswith("/"):
        # Cloud Build's checkout is /workspace; anything else is not the repository.
        if not (path == "/workspace" or path.startswith("/workspace/")):
            return None
        path = path.removeprefix("/workspace").lstrip("/") or "."
        workdir = ""
    joined = posixpath.normpath(posixpath.join(workdir or ".", path))
    if joined == ".." or joined.startswith("../"):
        return None
    return "" if joined == "." else joined


def _join(source_dir: str, step_dir: str) -> str:
    joined = posixpath.normpath(posixpath.join(source_dir.strip("/") or ".", step_dir or "."))
    return "" if joined == "." else joined


def _substitute(text: str, values: Mapping[str, str]) -> str:
    """Cloud Build's `$_NAME` / `${_NAME}`, where the value is known (`$$` is a dollar)."""
    if "$" not in text:
        return text
    parts = text.split("$$")

    def one(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    return "$".join(_SUBSTITUTION.sub(one, part) for part in parts)
