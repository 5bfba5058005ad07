"""The instructions of a stage after FROM: COPY/ADD, RUN, and those that make the config.

Each updates the stage's cache key with what it does and reads, and changes the tree
(now, or when it is next materialized: `build_layers.StageFs`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from deployer.dockerfiles.parse import Instruction
from deployer_sandbox.cloud_build import copy_steps
from deployer_sandbox.cloud_build.base_images import DOCKER_DEFAULT_PATH, tool_image_files
from deployer_sandbox.cloud_build.build_layers import cache_key
from deployer_sandbox.cloud_build.image_trees import in_tree
from deployer_sandbox.cloud_build.run_steps import (
    RunContext,
    RunFailed,
    run_commands,
    runs_anything,
)
from deployer_sandbox.cloud_build.shell_words import expand_word

if TYPE_CHECKING:
    from deployer_sandbox.cloud_build.image_builder import ImageBuilder, StageState

_NOTED = ("LABEL", "MAINTAINER", "STOPSIGNAL", "HEALTHCHECK", "VOLUME", "ONBUILD")


def declare_args(
    instruction: Instruction,
    args: dict[str, str],
    build_args: dict[str, str],
    env: dict[str, str],
    global_args: dict[str, str] | None = None,
) -> None:
    """Apply `ARG NAME[=default] ...`: a build arg wins, then the default, then the global
    ARG of that name (re-declared in the stage); without any the name stays unset."""
    for word in instruction.args:
        name, has_default, default = word.partition("=")
        if name in build_args:
            args[name] = build_args[name]
        elif has_default:
            args[name] = expand_word(default, {**args, **env})
        elif global_args is not None and name in global_args:
            args[name] = global_args[name]


def config(builder: ImageBuilder, state: StageState, instruction: Instruction) -> None:
    """ENV, ARG, WORKDIR, USER, EXPOSE, CMD, ENTRYPOINT, SHELL (and noted ones)."""
    keyword, words = instruction.keyword, list(instruction.args)
    known = state.words_env()
    if keyword == "ENV":
        # Every value of one ENV line sees the environment before the line.
        pairs = list(zip(words[::2], words[1::2], strict=False))
        state.env.update({key: expand_word(value, known) for key, value in pairs})
    elif keyword == "ARG":
        declare_args(
            instruction, state.args, builder.request.build_args, state.env, builder.global_env
        )
    elif keyword == "WORKDIR":
        path = expand_word(words[0], known)
        state.workdir = copy_steps.destination(path, state.workdir, 1)[0]
        workdir = state.workdir
        state.fs.change(lambda tree: in_tree(tree, workdir).mkdir(parents=True, exist_ok=True))
    elif keyword == "USER":
        state.user = expand_word(words[0], known)
        builder.log.note(
            f"(sandbox) USER {state.user} noted: processes run as the sandbox's own user"
        )
    elif keyword == "EXPOSE":
        state.exposed += tuple(expand_word(word, known) for word in words)
        builder.log.note(f"(sandbox) EXPOSE {' '.join(words)} noted: documentation only")
    elif keyword in ("CMD", "ENTRYPOINT"):
        form = tuple(words) if instruction.json else (*state.shell, " ".join(words))
        if keyword == "CMD":
            state.cmd, state.cmd_set = form, True
        else:
            state.entrypoint = form
            if not state.cmd_set:
                # moby dispatchers.go (dispatchEntrypoint): an ENTRYPOINT resets the CMD
                # inherited from the base image, not one set earlier in this stage.
                state.cmd = ()
    elif keyword == "SHELL":
        state.shell = tuple(words)
    elif keyword in _NOTED:
        builder.log.note(f"(sandbox) {keyword} noted: it changes nothing here")
    state.key = cache_key(state.key, keyword, json.dumps([instruction.flags, words]))
    builder.log.done(state.key)


def _tool_image_copy(
    builder: ImageBuilder, image: str, sources: list[str], dest: str, dest_is_dir: bool
) -> tuple[Callable[[Path], None], str]:
    """COPY --from=<image>: the host's stand-ins for a tool image's files, linked in place."""
    provided = tool_image_files(image)
    if not provided:
        raise builder.fail(
            f"{image}: the sandbox pulls no images; COPY --from=<image> works with the tool "
            "images it provides (ghcr.io/astral-sh/uv)"
        )
    links: dict[str, Path] = {}
    for source in sources:
        path = "/" + source.strip("/")
        if path not in provided:
            raise builder.copy_error(copy_steps.SourceMissing(path, image))
        name = path.rsplit("/", 1)[-1]
        links[f"{dest.rstrip('/')}/{name}" if dest_is_dir else dest] = provided[path]
    for at, host in links.items():
        builder.log.note(
            f"(sandbox) {image} is not pulled: the host's {host.name} ({host}) is linked at {at}"
        )

    def apply(tree: Path) -> None:
        for at, host in links.items():
            target = in_tree(tree, at)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() or target.is_symlink():
                target.unlink()
            target.symlink_to(host)

    return apply, json.dumps({k: str(v) for k, v in links.items()})


def copy(builder: ImageBuilder, state: StageState, instruction: Instruction) -> None:
    """COPY and ADD, from the context, an earlier stage or a tool image."""
    known = state.words_env()
    words = [expand_word(word, known) for word in instruction.args]
    sources, dest = words[:-1], words[-1]
    origin = instruction.flag("from")
    context = None
    try:
        if instruction.keyword == "ADD" and any(
            "://" in s or s.startswith("git@") for s in sources
        ):
            raise builder.fail(
                f"(sandbox) ADD {' '.join(sources)}: the sandbox does not download; "
                "COPY the file from the build context instead"
            )
        dest_path, dest_is_dir = copy_steps.destination(dest, state.workdir, len(sources))
        stage = builder.stage_by_reference(origin) if origin else None
        if origin and stage is None:
            operation, reads = _tool_image_copy(builder, origin, sources, dest_path, dest_is_dir)
        else:
            if stage is not None:
                found = copy_steps.tree_sources(stage.fs.readable(), sources, origin or "")
                reads = stage.key + json.dumps(sources)
            else:
                context = builder.context
                found = copy_steps.context_sources(context, sources)
                reads = copy_steps.reads_hash(found, context)
            copy_steps.destination(dest, state.workdir, len(found))
            # Hard links from an earlier stage, unless --chown/--chmod change the inodes.
            link = stage is not None and not (
                instruction.flag("chown") or instruction.flag("chmod")
            )
            extract = instruction.keyword == "ADD"
            placing = copy_steps.place(found, dest_path, dest_is_dir, context, extract, link)
            state.fs.shared = state.fs.shared or link
            operation = _with_ownership(builder, placing, dest_path, instruction)
    except copy_steps.SourceMissing as missing:
        raise builder.copy_error(missing) from None
    except copy_steps.CopyRefused as refused:
        raise builder.fail(str(refused)) from None
    state.key = cache_key(
        state.key, instruction.keyword, json.dumps([instruction.flags, sources, dest_path]), reads
    )
    state.fs.change(operation)
    builder.log.done(state.key)


def _with_ownership(
    builder: ImageBuilder, placing: Callable[[Path], None], dest: str, instruction: Instruction
) -> Callable[[Path], None]:
    chown, chmod = instruction.flag("chown"), instruction.flag("chmod")
    if instruction.flag("link") is not None:
        builder.log.note("(sandbox) --link noted: layers are not rebased here")
    if not chown and not chmod:
        return placing

    def apply(tree: Path) -> None:
        placing(tree)
        for note in copy_steps.apply_ownership(tree, dest, chown, chmod):
            builder.log.note(note)

    return apply


def _mounts(
    builder: ImageBuilder, state: StageState, instruction: Instruction
) -> tuple[dict[str, Path], str]:
    """RUN --mount (BuildKit): image path -> host path, and the content the mounts read."""
    binds: dict[str, Path] = {}
    reads: list[str] = []
    for number, spec in enumerate(instruction.flag_values("mount")):
        fields = dict(part.partition("=")[::2] for part in spec.split(","))
        kind = fields.get("type", "bind")
        target = fields.get("target") or fields.get("dst") or fields.get("destination") or ""
        at = copy_steps.destination(expand_word(target, state.words_env()), state.workdir, 1)[0]
        if kind == "cache":
            binds[at] = builder.cache.mount_dir(fields.get("id") or at)
        elif kind == "tmpfs":
            binds[at] = Path(tempfile.mkdtemp(dir=builder.request.space))
        elif kind == "bind":
            source = fields.get("source") or fields.get("src") or "."
            origin = fields.get("from")
            stage = builder.stage_by_reference(origin) if origin else None
            try:
                if stage is not None:
                    found = copy_steps.tree_sources(stage.fs.readable(), [source], origin or "")
                    reads.append(stage.key + source)
                    context = None
                else:
                    context = builder.context
                    found = copy_steps.context_sources(context, [source])
                    reads.append(copy_steps.reads_hash(found, context))
            except copy_steps.SourceMissing as missing:
                raise builder.copy_error(missing) from None
            # A copy: the mount shows only what the context sends, and writes go nowhere.
            copied = builder.request.space / "mounts" / str(number)
            copied.mkdir(parents=True, exist_ok=True)
            if found[0].is_dir:
                copy_steps.place(found, "/", True, context, extract=False)(copied)
                binds[at] = copied
            else:
                shutil.copy2(found[0].path, copied / "file")
                binds[at] = copied / "file"
        else:
            builder.log.note(f"(sandbox) --mount=type={kind} is not provided here")
    return binds, "\0".join(reads)


def run(builder: ImageBuilder, state: StageState, instruction: Instruction) -> None:
    """RUN: Python installs for real inside the image, cached by key; the rest noted."""
    env = {**state.args, **state.env}
    env.setdefault("PATH", DOCKER_DEFAULT_PATH)
    env.setdefault("HOME", "/root")
    if instruction.heredocs:
        text, argv = instruction.heredocs[0], None
    elif instruction.json:
        text, argv = None, list(instruction.args)
    else:
        text, argv = " ".join(instruction.args), None
    binds, reads = _mounts(builder, state, instruction)
    shown = " ".join([*state.shell, text]) if text is not None else " ".join(argv or [])
    key = cache_key(
        state.key, "RUN", json.dumps([instruction.flags, text, argv, sorted(env.items())]), reads
    )
    real = runs_anything(text, argv, env)
    if real and (snapshot := builder.cache.snapshot(key)) is not None:
        state.fs.restore(snapshot)
        state.key = key
        builder.log.cached(key)
        return
    tree = state.fs.unshare() if real else state.fs.readable()
    builder.log.running(key)
    try:
        context = RunContext(tree, state.workdir, env, builder.log.output, binds)
        context.standin_cache = builder.cache.mount_dir("uv standing in for pip")
        run_commands(text, argv, context)
    except RunFailed as failed:
        if builder.log.buildkit:
            raise builder.fail(
                f'process "{shown}" did not complete successfully: exit code: {failed.code}'
            ) from None
        raise builder.fail(
            f"The command '{shown}' returned a non-zero code: {failed.code}"
        ) from None
    if real:
        builder.cache.save(key, tree)
    state.key = key
    builder.log.done(key)
