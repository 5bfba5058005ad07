"""Runs one Cloud Build build on its own thread: fetch the source, interpret the steps, push.

No container runs here. Steps whose builder is docker are interpreted (`build`,
`push`, `pull`, `tag`), also inside `bash -c` scripts (`docker pull X || exit 0`);
any other builder succeeds with a note in the log. `docker build` reads the
Dockerfile and keeps what running the image needs: the final stage's exec-form
CMD (after ENTRYPOINT) and its ENV, evaluated with the build args.

    QUEUED -> WORKING -> SUCCESS | FAILURE | TIMEOUT | CANCELLED | INTERNAL_ERROR

The runner owns its copy of the `Build` and hands snapshots to `publish` at every
change; the last snapshot has a terminal status.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from google.cloud.devtools import cloudbuild_v1 as cb
from google.protobuf.timestamp_pb2 import Timestamp

from deployer.sandbox.faults import Fault, Faults
from deployer.sandbox.images import Image, ImageStore, split_reference
from deployer.sandbox.sources import Checkout, SourceError, TreeStore

log = logging.getLogger(__name__)

Status = cb.Build.Status
FailureType = cb.Build.FailureInfo.FailureType
# Built by value so that type checkers see `Status` members, not ints.
QUEUED, WORKING, SUCCESS, FAILURE, INTERNAL_ERROR, TIMEOUT, CANCELLED = map(
    Status, (1, 2, 3, 4, 5, 6, 7)
)
TERMINAL = (SUCCESS, FAILURE, INTERNAL_ERROR, TIMEOUT, CANCELLED)
Publish = Callable[[cb.Build], None]
DOCKER_BUILDERS = ("gcr.io/cloud-builders/docker", "docker", "docker.io/library/docker")
SHELLS = ("bash", "sh", "/bin/bash", "/bin/sh", "/usr/bin/bash")
# The default error of an injected build failure, worded like BuildKit's.
FAULT_MESSAGE = 'ERROR: failed to solve: process "/bin/sh -c exit 1" did not complete successfully'
_VALUE_FLAGS = {"-t", "--tag", "-f", "--file", "--build-arg", "--cache-from", "--target"} | {
    "--network", "--platform", "--label", "--progress", "--secret", "--ssh", "--iidfile",
    "--add-host", "-o", "--output", "--cache-to", "--shm-size", "-m", "--memory",
}  # fmt: skip
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


class StepFailed(Exception):
    """A step exited non-zero; the message is what its log would end with."""


def now() -> Timestamp:
    """The current time as a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def copy_build(build: cb.Build) -> cb.Build:
    """A deep copy of a Build message."""
    copied: cb.Build = cb.Build.deserialize(cb.Build.serialize(build))
    return copied


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


def _evaluate_dockerfile(
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
            known = {**stage.args, **stage.env}
            try:
                pairs = shlex.split(rest)
            except ValueError as error:
                raise StepFailed(
                    f"ERROR: failed to solve: dockerfile parse error: {error}"
                ) from None
            if pairs and "=" not in pairs[0]:  # legacy `ENV KEY value`
                pairs = [f"{pairs[0]}={' '.join(pairs[1:])}"]
            for pair in pairs:
                key, _, value = pair.partition("=")
                expanded, complete = _expand(value, known)
                if complete and key != "PATH":
                    stage.env[key] = expanded
                else:
                    stage.env.pop(key, None)
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


class _Docker:
    """The docker CLI and daemon of one build: local tags, builds, pushes and pulls."""

    def __init__(
        self,
        images: ImageStore,
        workspace: Path,
        checkout: Checkout | None,
        say: Callable[[str], None],
    ) -> None:
        self._images = images
        self._workspace = workspace
        self._checkout = checkout
        self._say = say
        self.local: dict[tuple[str, str], Image] = {}

    def run(self, step: cb.BuildStep, cwd: str) -> None:
        """Interpret one step in `cwd` (workspace-relative); raise `StepFailed` if it fails."""
        builder = split_reference(step.name)[0]
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
        if args[:2] == ["buildx", "build"]:
            args = args[1:]
        verb, rest = (args[0], args[1:]) if args else ("", [])
        if verb == "build":
            self._build(rest, cwd, env)
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

    def _build(self, args: list[str], cwd: str, env: dict[str, str]) -> None:
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
        text = file_path.read_bytes()
        cmd, image_env = _evaluate_dockerfile(text.decode(errors="replace"), build_args, target)
        tree = self._checkout.tree_id(context) if self._checkout else None
        digest = hashlib.sha256((tree or "no-source").encode() + b"\0" + text)
        for key, value in sorted(build_args.items()):
            digest.update(f"\0{key}={value}".encode())
        digest.update(f"\0{target or ''}".encode())
        image = Image(
            repository="",
            digest=f"sha256:{digest.hexdigest()}",
            context=self._workspace / context,
            cmd=cmd,
            env=image_env,
            commit=self._checkout.commit if self._checkout else None,
        )
        self._say(f"Successfully built {image.digest}")
        for tag in tags:
            repository, name = self._key(tag)
            self.local[(repository, name)] = replace(image, repository=repository)
            self._say(f"Successfully tagged {repository}:{name}")

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


class BuildRunner:
    """Executes one build on its own thread and publishes a snapshot at every change."""

    def __init__(
        self,
        build: cb.Build,
        *,
        images: ImageStore,
        trees: TreeStore,
        faults: Faults,
        publish: Publish,
    ) -> None:
        self._build = copy_build(build)
        self._images = images
        self._trees = trees
        self._faults = faults
        self._publish = publish
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._log: list[str] = []
        self._prefix = ""
        self.done = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name=f"build-{build.id[:8]}", daemon=True
        )

    def start(self) -> None:
        """Start executing on the runner's own thread."""
        self._thread.start()

    def cancel(self) -> None:
        """Ask the build to stop; it ends CANCELLED unless it already finished."""
        self._cancelled.set()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the runner's thread to end."""
        self._thread.join(timeout)

    def log_lines(self) -> list[str]:
        """The build's log so far."""
        with self._lock:
            return list(self._log)

    def _say(self, text: str) -> None:
        with self._lock:
            self._log.extend(f"{self._prefix}{line}" for line in text.splitlines() or [""])

    def _emit(self) -> None:
        self._publish(copy_build(self._build))

    def _finish(
        self, status: Status, detail: str = "", failure: cb.Build.FailureInfo | None = None
    ) -> None:
        build = self._build
        build.status, build.status_detail, build.finish_time = status, detail, now()
        if failure is not None:
            build.failure_info = failure
        self._prefix = ""
        self._say(f"{'DONE' if status == SUCCESS else 'ERROR: ' + (detail or Status(status).name)}")
        self._emit()

    def _main(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("build %s: runner failed", self._build.id)
            self._finish(INTERNAL_ERROR, "Internal error in the sandbox's build runner.")
        finally:
            self.done.set()

    def _fault_step(self, fault: Fault | None) -> int | None:
        """The index of the step a fault targets: `step` (index or id), else "build", else the last."""
        if fault is None:
            return None
        ids = [step.id for step in self._build.steps]
        wanted = fault.params.get("step")
        if isinstance(wanted, str) and wanted in ids:
            return ids.index(wanted)
        if isinstance(wanted, int | str) and str(wanted).isdigit() and int(wanted) < len(ids):
            return int(wanted)
        return ids.index("build") if "build" in ids else len(ids) - 1

    def _fetch(self) -> tuple[Path, Checkout | None, str]:
        """(workspace, checkout, source dir relative to the workspace) for this build's source."""
        git = self._build.source.git_source
        if not git.url:
            return self._trees.empty(), None, "."
        self._say(f"Fetching {git.url} {git.revision or 'HEAD'}")
        checkout = self._trees.checkout(git.url, git.revision)
        self._say(f"HEAD is now at {checkout.commit[:7]}")
        provenance = cb.GitSource(url=git.url, dir_=git.dir_, revision=checkout.commit)
        self._build.source_provenance = cb.SourceProvenance(resolved_git_source=provenance)
        return checkout.root, checkout, posixpath.normpath(git.dir_ or ".")

    def _run(self) -> None:
        build = self._build
        fail, hang = self._faults.take("build_fail"), self._faults.take("build_hang")
        fail_at, hang_at = self._fault_step(fail), self._fault_step(hang)
        fail_message = str(fail.params.get("message") or FAULT_MESSAGE) if fail else ""
        if self._cancelled.is_set():
            return self._finish(CANCELLED, "Build was cancelled.")
        build.status, build.start_time = WORKING, now()
        deadline = time.monotonic() + (cb.Build.pb(build).timeout.seconds or 3600)
        self._emit()
        started = now()
        try:
            workspace, checkout, source_dir = self._fetch()
        except SourceError as error:
            detail = f"failed to fetch source: {error}"
            return self._finish(
                FAILURE,
                detail,
                cb.Build.FailureInfo(type_=FailureType.FETCH_SOURCE_FAILED, detail=detail),
            )
        build.timing["FETCHSOURCE"] = cb.TimeSpan(start_time=started, end_time=now())
        docker, started = _Docker(self._images, workspace, checkout, self._say), now()
        for index, step in enumerate(build.steps):
            if self._cancelled.is_set():
                return self._finish(CANCELLED, "Build was cancelled.")
            if time.monotonic() >= deadline:
                return self._finish(TIMEOUT, "Build timed out.")
            self._prefix = f'Step #{index} - "{step.id}": ' if step.id else f"Step #{index}: "
            step.status = WORKING
            step.timing = step.pull_timing = cb.TimeSpan(start_time=now())
            self._emit()
            if index == hang_at:
                self._say("(sandbox fault build_hang: this step never ends)")
                cancelled = self._cancelled.wait(max(0.0, deadline - time.monotonic()))
                step.timing.end_time = now()
                step.status = CANCELLED if cancelled else TIMEOUT
                if cancelled:
                    return self._finish(CANCELLED, "Build was cancelled.")
                return self._finish(TIMEOUT, "Build timed out.")
            try:
                if index == fail_at:
                    raise StepFailed(fail_message)
                docker.run(step, self._step_dir(source_dir, step.dir_))
            except StepFailed as failed:
                self._say(str(failed))
                step.status, step.exit_code, step.timing.end_time = FAILURE, 1, now()
                if step.allow_failure:
                    continue
                detail = (
                    f'build step {index} "{step.name}" failed: step exited with non-zero status: 1'
                )
                failure = cb.Build.FailureInfo(
                    type_=FailureType.USER_BUILD_STEP, detail=f"Build step failure: {detail}"
                )
                return self._finish(FAILURE, detail, failure)
            step.status, step.timing.end_time = SUCCESS, now()
        self._prefix = ""
        build.timing["BUILD"] = cb.TimeSpan(start_time=started, end_time=now())
        build.results.build_step_images = [
            "sha256:" + hashlib.sha256(step.name.encode()).hexdigest() for step in build.steps
        ]
        if self._cancelled.is_set():
            return self._finish(CANCELLED, "Build was cancelled.")
        if build.images:
            started = now()
            try:
                build.results.images = docker.push_images(list(build.images))
            except LookupError as missing:
                detail = (
                    "failed to find one or more images after execution of build steps: "
                    + json.dumps(missing.args[0])
                )
                failure = cb.Build.FailureInfo(
                    type_=FailureType.PUSH_IMAGE_NOT_FOUND, detail=detail
                )
                return self._finish(FAILURE, detail, failure)
            build.timing["PUSH"] = cb.TimeSpan(start_time=started, end_time=now())
        return self._finish(SUCCESS)

    @staticmethod
    def _step_dir(source_dir: str, step_dir: str) -> str:
        """A step's working directory relative to the workspace (/workspace)."""
        if step_dir.startswith("/"):
            relative = posixpath.relpath(posixpath.normpath(step_dir), "/workspace")
        else:
            relative = posixpath.normpath(posixpath.join(source_dir, step_dir or "."))
        if relative == ".." or relative.startswith("../"):
            raise StepFailed(f"step dir {step_dir!r} is outside /workspace")
        return relative
