"""Interpreting a docker or shell build step: the docker CLI and daemon of one build.

    step -> `docker build|push|pull|tag ...`   (args parsed as the docker CLI parses them)
         -> `bash -c 'script'` / `script:`      (a mini-interpreter: `;`, `&&`, `||`,
                                                 `exit`, `set -e`, `true`, `false`, docker)
         -> any other builder                   (succeeds with a note in the log)

`docker build` builds an image tree as Docker would (`cloud_build.image_builder`), with
BuildKit or the legacy builder as the step would (`deployer.dockerfiles.buildkit`); tags
stay local to the build until pushed to the ImageStore.
"""

from __future__ import annotations

import posixpath
import shlex
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from google.cloud.devtools import cloudbuild_v1 as cb

from deployer.dockerfiles.buildkit import BuilderChoice, uses_buildkit
from deployer_sandbox.cloud_build.build_layers import LayerCache
from deployer_sandbox.cloud_build.image_builder import BuildRequest, ImageBuilder
from deployer_sandbox.cloud_build.sources import Checkout
from deployer_sandbox.cloud_build.status import StepFailed
from deployer_sandbox.common.images import Image, ImageStore, split_reference
from deployer_sandbox.common.protos import now

DOCKER_BUILDERS = ("gcr.io/cloud-builders/docker", "docker", "docker.io/library/docker")
SHELLS = ("bash", "sh", "/bin/bash", "/bin/sh", "/usr/bin/bash")
_VALUE_FLAGS = {"-t", "--tag", "-f", "--file", "--build-arg", "--cache-from", "--target"} | {
    "--network", "--platform", "--label", "--progress", "--secret", "--ssh", "--iidfile",
    "--add-host", "-o", "--output", "--cache-to", "--shm-size", "-m", "--memory",
}  # fmt: skip


class DockerSteps:
    """The docker CLI and daemon of one build: local tags, builds, pushes and pulls."""

    def __init__(
        self,
        images: ImageStore,
        workspace: Path,
        checkout: Checkout | None,
        say: Callable[[str], None],
        *,
        space: Path,
    ) -> None:
        """`space`: where builds make their trees (`work/`) and keep images (`images/`)."""
        self._images = images
        self._space = space
        self._cache = LayerCache()
        self._builder_image = ""
        self._workspace = workspace
        self._checkout = checkout
        self._say = say
        self.local: dict[tuple[str, str], Image] = {}

    def run(self, step: cb.BuildStep, cwd: str) -> None:
        """Interpret one step in `cwd` (workspace-relative); raise `StepFailed` if it fails."""
        builder = split_reference(step.name)[0]
        self._builder_image = step.name
        env = dict(entry.partition("=")[::2] for entry in step.env)
        if step.script:
            self._script(step.script, cwd, env, errexit=False)
        elif step.entrypoint in SHELLS:
            flags = [i for i, a in enumerate(step.args) if a.startswith("-") and "c" in a]
            if not flags or flags[0] + 1 >= len(step.args):
                self._say(f"(sandbox) script files are not run here: {shlex.join(step.args)}")
                return
            errexit = any(a.startswith("-") and "e" in a for a in step.args[: flags[0] + 1])
            self._script(step.args[flags[0] + 1], cwd, env, errexit)
        elif builder in DOCKER_BUILDERS and step.entrypoint in ("", "docker"):
            self._command(list(step.args), cwd, env)
        else:
            self._say(
                f"(sandbox) builder {step.name} is not run: no containers here; step succeeds"
            )

    def _script(self, script: str, cwd: str, env: dict[str, str], errexit: bool) -> None:
        lexer = shlex.shlex(script.replace("\n", ";"), posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        commands: list[tuple[list[str], str]] = [([], ";")]
        for token in lexer:
            if token in (";", "&&", "||"):
                commands.append(([], token))
            else:
                commands[-1][0].append(token)
        error: StepFailed | None = None
        for argv, operator in commands:
            if not argv or (operator == "&&" and error) or (operator == "||" and not error):
                continue
            if argv[0] == "exit":
                code = argv[1] if len(argv) > 1 else ("1" if error else "0")
                if code == "0":
                    return
                raise error or StepFailed(f"script exited with status {code}")
            if argv[:2] == ["set", "-e"] or (argv[0] == "set" and "e" in "".join(argv[1:])):
                errexit = True
            try:
                error = None
                if argv[0] == "docker":
                    self._command(argv[1:], cwd, env)
                elif argv[0] == "false":
                    raise StepFailed("false exited with status 1")
                elif argv[0] not in ("true", ":", "echo", "set"):
                    self._say(f"(sandbox) `{argv[0]}` is not run here; treated as success")
            except StepFailed as failed:
                self._say(str(failed))
                error = failed
                if errexit and operator != "||":
                    raise
        if error:
            raise error

    def _command(self, args: list[str], cwd: str, env: dict[str, str]) -> None:
        choice = uses_buildkit(self._builder_image, env, args)
        if args[:2] in (["buildx", "build"], ["buildx", "b"]):
            args = ["build", *args[2:]]
        verb, rest = (args[0], args[1:]) if args else ("", [])
        if verb == "build":
            self._build(rest, cwd, env, choice)
        elif verb == "push":
            self._push(
                [a for a in rest if not a.startswith("-")], "-a" in rest or "--all-tags" in rest
            )
        elif verb == "pull":
            self._pull([a for a in rest if not a.startswith("-")])
        elif verb == "tag" and len(rest) == 2:
            self.local[self._key(rest[1])] = replace(
                self._local(rest[0]), repository=self._key(rest[1])[0]
            )
        else:
            self._say(f"(sandbox) docker {verb} is accepted and does nothing here")

    def _key(self, reference: str) -> tuple[str, str]:
        repository, tag, _ = split_reference(reference)
        return repository, tag or "latest"

    def _local(self, reference: str) -> Image:
        image = self.local.get(self._key(reference))
        if image is None:
            raise StepFailed(f"Error response from daemon: No such image: {reference}")
        return image

    def _path(self, cwd: str, relative: str) -> str | None:
        """Workspace-relative form of `relative` seen from `cwd`, or None if it leaves the workspace."""
        joined = posixpath.normpath(posixpath.join(cwd, relative))
        return None if joined == ".." or joined.startswith("../") else joined

    def _build(self, args: list[str], cwd: str, env: dict[str, str], choice: BuilderChoice) -> None:
        tags: list[str] = []
        build_args: dict[str, str] = {}
        dockerfile: str | None = None
        target: str | None = None
        positional: list[str] = []
        words = iter(args)
        for word in words:
            flag, has_value, value = word.partition("=")
            if flag in _VALUE_FLAGS:
                value = value if has_value else next(words, "")
                if flag in ("-t", "--tag"):
                    tags.append(value)
                elif flag in ("-f", "--file"):
                    dockerfile = value
                elif flag == "--target":
                    target = value
                elif flag == "--build-arg":
                    key, has, given = value.partition("=")
                    build_args[key] = given if has else env.get(key, "")
            elif not word.startswith("-"):
                positional.append(word)
        if len(positional) != 1:
            raise StepFailed('ERROR: "docker buildx build" requires exactly 1 argument.')
        context = self._path(cwd, positional[0])
        if context is None or not (self._workspace / context).is_dir():
            raise StepFailed(f'ERROR: unable to prepare context: path "{positional[0]}" not found')
        file_rel = (
            self._path(cwd, dockerfile) if dockerfile else posixpath.join(context, "Dockerfile")
        )
        file_path = self._workspace / file_rel if file_rel else None
        if file_path is None or not file_path.is_file():
            raise StepFailed(
                "ERROR: failed to solve: failed to read dockerfile: "
                f"open /workspace/{posixpath.normpath(file_rel or dockerfile or '')}: "
                "no such file or directory"
            )
        self._say(f"(sandbox) {choice.reason}")
        request = BuildRequest(
            context=self._workspace / context,
            dockerfile=file_path,
            build_args=build_args,
            target=target,
            builder=choice,
            space=self._space / "work" / uuid.uuid4().hex,
            images=self._space / "images",
            commit=self._checkout.commit if self._checkout else None,
            tags=tuple(":".join(self._key(tag)) for tag in tags),
        )
        image = ImageBuilder(request, self._say, self._cache).build()
        for tag in tags:
            repository, name = self._key(tag)
            self.local[(repository, name)] = replace(image, repository=repository)

    def _push(self, references: list[str], all_tags: bool) -> None:
        for reference in references:
            repository, tag = self._key(reference)
            keys = (
                [k for k in self.local if k[0] == repository] if all_tags else [(repository, tag)]
            )
            if not keys or keys[0] not in self.local:
                raise StepFailed(f"An image does not exist locally with the tag: {reference}")
            for key in keys:
                self._images.push(self.local[key], [key[1]])
                self._say(f"{key[1]}: digest: {self.local[key].digest} size: 1024")

    def _pull(self, references: list[str]) -> None:
        for reference in references:
            image = self._images.resolve(reference)
            if image is None:
                raise StepFailed(
                    f"Error response from daemon: manifest for {reference} not found: "
                    "manifest unknown: Requested entity was not found."
                )
            self.local[self._key(reference)] = image
            self._say(f"Status: Downloaded newer image for {reference}")

    def push_images(self, names: list[str]) -> list[cb.BuiltImage]:
        """Push the build's `images` after its steps; raise `LookupError` naming missing ones."""
        missing = [name for name in names if self._key(name) not in self.local]
        if missing:
            raise LookupError(missing)
        results = []
        for name in names:
            started, image = now(), self.local[self._key(name)]
            self._images.push(image, [self._key(name)[1]])
            timing = cb.TimeSpan(start_time=started, end_time=now())
            results.append(cb.BuiltImage(name=name, digest=image.digest, push_timing=timing))
        return results
