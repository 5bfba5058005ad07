"""`docker build`, evaluated as Docker evaluates a Dockerfile, into a real image tree.

Instructions run in order, stage by stage: the target stage and what it depends on
with BuildKit (which skips unused stages), every stage up to the target with the
legacy builder. FROM starts from an earlier stage or a base image
(`cloud_build.base_images`); ARG and ENV are expanded as Docker expands them; WORKDIR
is created; COPY and ADD follow Docker's rules (`cloud_build.copy_steps`); RUN runs
what the sandbox can run inside the image (`cloud_build.run_steps`); USER, EXPOSE,
ENTRYPOINT, CMD and SHELL make the image's config. Every instruction has a cache key
(`cloud_build.build_layers`); a cached RUN is not run again.

The image is the target stage's tree, moved to `<images>/<digest>`; its digest is
its content's.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deployer.dockerfiles.buildkit import BuilderChoice, buildkit_only, legacy_refusal
from deployer.dockerfiles.context import BuildContext
from deployer.dockerfiles.parse import DockerfileError, Instruction, Parsed, Stage, parse
from deployer_sandbox.cloud_build import copy_steps, stage_steps
from deployer_sandbox.cloud_build.base_images import base_image
from deployer_sandbox.cloud_build.build_layers import LayerCache, StageFs, cache_key
from deployer_sandbox.cloud_build.build_log import BuildLog
from deployer_sandbox.cloud_build.image_trees import remove_tree, tree_digest
from deployer_sandbox.cloud_build.shell_words import expand_word
from deployer_sandbox.cloud_build.status import StepFailed
from deployer_sandbox.common import rootfs
from deployer_sandbox.common.images import Image

_FS_STEPS = ("FROM", "COPY", "ADD", "RUN", "WORKDIR")


@dataclass(frozen=True)
class BuildRequest:
    """One `docker build`: its context, Dockerfile, args, target and builder."""

    context: Path
    dockerfile: Path
    build_args: dict[str, str]
    target: str | None
    builder: BuilderChoice
    space: Path  # where this build's stage trees are made (removed afterwards)
    images: Path  # where built images' trees are kept, by digest
    commit: str | None = None
    tags: tuple[str, ...] = ()


@dataclass
class StageState:
    """A stage being built: its tree, cache key and config so far."""

    label: str
    fs: StageFs
    key: str
    env: dict[str, str]
    args: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    cmd_set: bool = False
    user: str | None = None
    exposed: tuple[str, ...] = ()
    shell: tuple[str, ...] = ("/bin/sh", "-c")

    def words_env(self) -> dict[str, str]:
        """What `$X` means in an instruction: ENV over ARG (Dockerfile reference, ARG)."""
        return {**self.args, **self.env}

    def config(self) -> dict[str, object]:
        return {
            "entrypoint": list(self.entrypoint),
            "cmd": list(self.cmd),
            "env": self.env,
            "workdir": self.workdir,
            "user": self.user,
            "exposed": list(self.exposed),
        }


def _dependencies(parsed: Parsed, target: Stage, global_env: dict[str, str]) -> set[int]:
    """Indexes of the stages `target` needs (FROM and COPY/RUN --from), itself included."""
    needed, todo = set(), [target]
    while todo:
        stage = todo.pop()
        if stage.index in needed:
            continue
        needed.add(stage.index)
        references = [expand_word(stage.base, global_env)]
        for instruction in stage.instructions:
            references += [v for v in instruction.flag_values("from")]
            for mount in instruction.flag_values("mount"):
                references += [p[5:] for p in mount.split(",") if p.startswith("from=")]
        for reference in references:
            found = parsed.stage(reference)
            if found is not None and found.index < stage.index:
                todo.append(found)
    return needed


class ImageBuilder:
    """Builds one image; `build()` returns it (without a repository) or raises StepFailed."""

    def __init__(
        self, request: BuildRequest, say: Callable[[str], None], cache: LayerCache
    ) -> None:
        self.request = request
        self.log = BuildLog(say, request.builder.buildkit)
        self.cache = cache
        self.stages: dict[int, StageState] = {}
        self.parsed: Parsed | None = None
        self.context = BuildContext(request.context, self._dockerfile_in_context())
        self.global_env: dict[str, str] = {}

    def _dockerfile_in_context(self) -> str:
        try:
            return self.request.dockerfile.relative_to(self.request.context).as_posix()
        except ValueError:
            return "Dockerfile"

    def fail(self, message: str) -> StepFailed:
        return StepFailed(self.log.failed(message))

    def build(self) -> Image:
        text = self.request.dockerfile.read_text(encoding="utf-8", errors="replace")
        try:
            self.parsed = parsed = parse(text)
        except DockerfileError as error:
            raise StepFailed(
                f"ERROR: failed to solve: {error}" if self.log.buildkit else str(error)
            ) from None
        self.log.header(self.request.dockerfile.name, len(text.encode()), self._context_size())
        if not self.log.buildkit:
            self._refuse_legacy_heredocs(parsed)
        for arg in parsed.global_args:
            stage_steps.declare_args(arg, self.global_env, self.request.build_args, {})
        target = parsed.stages[-1]
        if self.request.target:
            found = parsed.stage(self.request.target)
            if found is None:
                raise StepFailed(
                    f'ERROR: failed to solve: target stage "{self.request.target}" could not be found'
                )
            target = found
        if self.log.buildkit:
            chosen = _dependencies(parsed, target, self.global_env)
        else:
            chosen = set(range(target.index + 1))
        legacy_total = sum(1 + len(parsed.stages[i].instructions) for i in chosen)
        counter = [0, legacy_total]
        try:
            for stage in parsed.stages:
                if stage.index in chosen:
                    self._build_stage(stage, counter)
            return self._export(self.stages[target.index])
        finally:
            remove_tree(self.request.space)

    def _context_size(self) -> int:
        total = 0
        for name in self.context.files():
            path = self.context.root / name
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        return total

    def _refuse_legacy_heredocs(self, parsed: Parsed) -> None:
        for stage in parsed.stages:
            for instruction in stage.instructions:
                if instruction.heredocs:
                    raise StepFailed(legacy_refusal(instruction, "a heredoc"))

    def _label(self, stage: Stage) -> str:
        return stage.name or f"stage-{stage.index}"

    def _build_stage(self, stage: Stage, counter: list[int]) -> None:
        steps = [stage.start, *stage.instructions]
        fs_total = sum(1 for i in steps if i.keyword in _FS_STEPS)
        fs_index = 0
        for instruction in steps:
            counter[0] += 1
            if instruction.keyword in _FS_STEPS:
                fs_index += 1
            label = f"{self._label(stage)} {fs_index}/{fs_total}"
            self.log.step(
                instruction.keyword, label, f"{counter[0]}/{counter[1]}", instruction.original
            )
            syntax = buildkit_only(instruction)
            if syntax is not None and not self.log.buildkit:
                raise StepFailed(legacy_refusal(instruction, syntax))
            if instruction.keyword == "FROM":
                self.stages[stage.index] = self._from(stage)
            else:
                self._instruction(self.stages[stage.index], instruction)

    def _from(self, stage: Stage) -> StageState:
        reference = expand_word(stage.base, self.global_env)
        tree = self.request.space / f"stage-{stage.index}"
        earlier = self.parsed.stage(reference) if self.parsed else None
        if earlier is not None and earlier.index < stage.index and earlier.index in self.stages:
            parent = self.stages[earlier.index]
            state = StageState(
                self._label(stage), parent.fs.fork(tree), parent.key, dict(parent.env)
            )
            state.workdir, state.entrypoint, state.cmd = (
                parent.workdir,
                parent.entrypoint,
                parent.cmd,
            )
            state.user, state.exposed, state.shell = parent.user, parent.exposed, parent.shell
            self.log.done(state.key)
            return state
        base = base_image(reference)
        for note in base.notes:
            self.log.note(note)
        fs = StageFs(tree)
        fs.restore(base.laid_down(self.cache.bases))
        state = StageState(self._label(stage), fs, cache_key("FROM", base.identity), dict(base.env))
        state.cmd = base.cmd
        self.log.done(state.key)
        return state

    def _instruction(self, state: StageState, instruction: Instruction) -> None:
        keyword = instruction.keyword
        if keyword in ("COPY", "ADD"):
            stage_steps.copy(self, state, instruction)
        elif keyword == "RUN":
            stage_steps.run(self, state, instruction)
        else:
            stage_steps.config(self, state, instruction)

    def stage_by_reference(self, reference: str) -> StageState | None:
        """An earlier stage of this build that `--from=` names, if it is one."""
        found = self.parsed.stage(reference) if self.parsed else None
        return self.stages.get(found.index) if found is not None else None

    def copy_error(self, missing: copy_steps.SourceMissing) -> StepFailed:
        """Docker's words for a COPY source that is not there."""
        path = missing.path
        if self.log.buildkit:
            ref = uuid.uuid5(uuid.NAMESPACE_URL, missing.origin).hex[:25]
            shown_path = "/" + path.lstrip("/") if path != "." else "/"
            return self.fail(
                "failed to compute cache key: failed to calculate checksum of ref "
                f'{ref}::{ref[::-1]}: "{shown_path}": not found'
            )
        if missing.origin == "context":
            return StepFailed(
                "COPY failed: file not found in build context or excluded by .dockerignore: "
                f"stat {path}: file does not exist"
            )
        return StepFailed(f"COPY failed: stat {path}: file does not exist")

    def _export(self, state: StageState) -> Image:
        # Without a mount namespace a revision writes into the tree itself: its own files.
        tree = state.fs.materialize() if rootfs.unavailable() is None else state.fs.unshare()
        config = state.config()
        digest = tree_digest(tree, config)
        final = self.request.images / digest.removeprefix("sha256:")
        self.request.images.mkdir(parents=True, exist_ok=True)
        if not final.exists():
            try:
                tree.rename(final)
            except OSError:
                if not final.exists():
                    raise
        self.log.exported(digest, list(self.request.tags))
        return Image(
            repository="",
            digest=digest,
            context=final,
            cmd=state.cmd,
            env=dict(state.env),
            commit=self.request.commit,
            root=True,
            entrypoint=state.entrypoint,
            workdir=state.workdir,
            user=state.user,
            exposed=state.exposed,
        )


def config_json(state: StageState) -> str:
    return json.dumps(state.config(), sort_keys=True)


def join_workdir(workdir: str, path: str) -> str:
    return posixpath.normpath(posixpath.join(workdir, path))
