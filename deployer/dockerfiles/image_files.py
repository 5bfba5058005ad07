"""Which context files an image holds, and where, instruction by instruction.

A reading of the Dockerfile reference (docs.docker.com/reference/dockerfile/):
- COPY/ADD `<src>... <dest>`: a relative `dest` is relative to WORKDIR; with several
  sources, a wildcard, or a `dest` ending in `/`, `dest` is a folder; a folder source
  copies its contents, not itself. `--from=` copies from a stage (or an image: not
  context files).
- `RUN --mount=type=bind` (the default type) shows `source` (default: the context's
  root) at `target` for that RUN alone; a relative target is relative to WORKDIR, as
  BuildKit's dockerfile2llb resolves it.
- `$VAR`, `${VAR}`, `${VAR:-default}` in COPY, ADD and WORKDIR expand from ARG
  (build args win over defaults) and ENV. What cannot be expanded is not guessed.
Only what COPY, ADD and mounts bring from the context is modelled: what RUN makes is
not (the lint's questions are about context files).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from docker.utils.fnmatch import fnmatchcase

from deployer.dockerfiles.context import BuildContext
from deployer.dockerfiles.parse import Instruction, Parsed, Stage

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_WILDCARD = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class SourceUse:
    """A context path an instruction reads: COPY/ADD source or a bind mount's source."""

    instruction: Instruction
    written: str  # as in the Dockerfile
    path: str  # context-relative, cleaned ("" for the context's root)
    wildcard: bool


@dataclass
class StageFiles:
    """One stage as the build has made it so far."""

    workdir: str = "/"
    values: dict[str, str] = field(default_factory=dict)  # ARG and ENV, for expansion
    env: dict[str, str] = field(default_factory=dict)  # ENV alone: the running image's
    files: dict[str, str] = field(default_factory=dict)  # image path -> context path
    entrypoint: Instruction | None = None
    cmd: Instruction | None = None


RunVisitor = Callable[[Instruction, StageFiles, Mapping[str, str]], None]
"""Called for each RUN with the stage and the files bind mounts add for it alone."""


def expand(text: str, values: Mapping[str, str]) -> str | None:
    """`text` with its variables expanded; None when one is unknown."""
    unknown = False

    def one(match: re.Match[str]) -> str:
        nonlocal unknown
        name = match["braced"] or match["bare"]
        if name in values and values[name] != "":
            return values[name]
        if match["default"] is not None:
            return match["default"]
        if name in values:
            return ""
        unknown = True
        return ""

    expanded = _VARIABLE.sub(one, text)
    return None if unknown else expanded


def stages_built(parsed: Parsed, target: str | None, buildkit: bool) -> list[Stage]:
    """The stages a build runs: every stage up to the target with the legacy builder;
    with BuildKit only those the target needs (its FROM and `--from=` stages)."""
    last = parsed.stage(target) if target else parsed.stages[-1]
    if last is None:
        return list(parsed.stages)
    upto = [stage for stage in parsed.stages if stage.index <= last.index]
    if not buildkit:
        return upto
    needed: set[int] = set()
    pending = [last]
    while pending:
        stage = pending.pop()
        if stage.index in needed:
            continue
        needed.add(stage.index)
        references = [stage.base] + [
            value
            for instruction in stage.instructions
            for value in (instruction.flag("from"), *_mount_froms(instruction))
            if value
        ]
        pending.extend(found for ref in references if (found := parsed.stage(ref)) is not None)
    return [stage for stage in upto if stage.index in needed]


def _mount_froms(instruction: Instruction) -> list[str]:
    return [
        options["from"]
        for raw in instruction.flag_values("mount")
        if "from" in (options := mount_options(raw))
    ]


def mount_options(raw: str) -> dict[str, str]:
    """`type=bind,source=x,target=/y` as a mapping (a bare key is `true`)."""
    options: dict[str, str] = {}
    for item in raw.split(","):
        key, has, value = item.partition("=")
        options[key.strip().lower()] = value.strip() if has else "true"
    return options


def trace(
    parsed: Parsed,
    stages: list[Stage],
    context: BuildContext,
    build_args: Mapping[str, str],
    on_source: Callable[[SourceUse], None],
    on_run: RunVisitor,
) -> dict[int, StageFiles]:
    """Walk `stages` in order, reporting each context source and each RUN; the files of
    each stage (by index) at its end."""
    sent = [path for path in context.files() if not (context.root / path).is_dir()]
    globals_ = _declare({}, parsed.global_args, build_args)
    done: dict[int, StageFiles] = {}
    for stage in stages:
        parent = parsed.stage(stage.base)
        base = done.get(parent.index) if parent is not None and parent.index < stage.index else None
        state = (
            StageFiles(
                base.workdir,
                dict(base.env),
                dict(base.env),
                dict(base.files),
                base.entrypoint,
                base.cmd,
            )
            if base
            else StageFiles()
        )
        for instruction in stage.instructions:
            keyword = instruction.keyword
            if keyword == "ARG":
                state.values = _declare(state.values, (instruction,), build_args, globals_)
            elif keyword == "ENV":
                pairs = instruction.args
                for name, value in zip(pairs[::2], pairs[1::2], strict=False):
                    value = expand(_unquote(value), state.values) or ""
                    state.values[name] = state.env[name] = value
            elif keyword == "WORKDIR" and instruction.args:
                path = expand(instruction.args[0], state.values)
                if path is not None:
                    state.workdir = posixpath.normpath(posixpath.join(state.workdir, path))
            elif keyword in ("COPY", "ADD"):
                _copy(instruction, state, done, parsed, sent, on_source)
            elif keyword == "RUN":
                on_run(instruction, state, _mounted(instruction, state, sent, on_source))
            elif keyword == "ENTRYPOINT":
                state.entrypoint, state.cmd = instruction, None  # ENTRYPOINT resets CMD
            elif keyword == "CMD":
                state.cmd = instruction
        done[stage.index] = state
    return done


def _declare(
    values: dict[str, str],
    args: tuple[Instruction, ...],
    build_args: Mapping[str, str],
    globals_: Mapping[str, str] | None = None,
) -> dict[str, str]:
    out = dict(values)
    for instruction in args:
        for word in instruction.args:
            name, has, default = word.partition("=")
            if name in build_args:
                out[name] = build_args[name]
            elif has:
                out[name] = expand(_unquote(default), out) or ""
            elif globals_ is not None and name in globals_:
                out[name] = globals_[name]
    return out


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _copy(
    instruction: Instruction,
    state: StageFiles,
    done: Mapping[int, StageFiles],
    parsed: Parsed,
    sent: list[str],
    on_source: Callable[[SourceUse], None],
) -> None:
    words = [expand(word, state.values) for word in instruction.args]
    if len(words) < 2 or words[-1] is None or instruction.heredocs:
        return
    sources, dest = words[:-1], words[-1]
    dest = posixpath.join(state.workdir, dest)
    into_folder = dest.endswith("/") or len(sources) > 1
    reference = instruction.flag("from")
    if reference is not None:
        stage = parsed.stage(reference)
        if stage is not None and stage.index in done:
            _copy_from_stage(done[stage.index], [s for s in sources if s], dest, state)
        return
    for written, source in zip(instruction.args[:-1], sources, strict=True):
        if source is None or source.startswith("<<"):
            continue
        if instruction.keyword == "ADD" and re.match(r"^(https?://|git@|git://)", source):
            continue  # fetched, not read from the context
        path = _clean(source)
        wildcard = bool(_WILDCARD.search(path))
        on_source(SourceUse(instruction, written, path, wildcard))
        matched = [p for p in sent if fnmatchcase(p, path)] if wildcard else [path]
        for one in matched:
            _place(one, sent, dest, into_folder or wildcard, state)


def _place(path: str, sent: list[str], dest: str, into_folder: bool, state: StageFiles) -> None:
    below = [p for p in sent if path == "" or p.startswith(path + "/")]
    if below:  # a folder: its contents
        for item in below:
            relative = item[len(path) + 1 :] if path else item
            state.files[posixpath.normpath(posixpath.join(dest, relative))] = item
    elif path in sent:
        target = posixpath.join(dest, posixpath.basename(path)) if into_folder else dest
        state.files[posixpath.normpath(target)] = path


def _copy_from_stage(source: StageFiles, paths: list[str], dest: str, state: StageFiles) -> None:
    for wanted in paths:
        root = posixpath.normpath(posixpath.join("/", wanted))
        for image_path, context_path in source.files.items():
            if image_path == root:
                state.files[posixpath.normpath(dest.rstrip("/") or "/")] = context_path
            elif image_path.startswith(root.rstrip("/") + "/"):
                relative = image_path[len(root.rstrip("/")) + 1 :]
                state.files[posixpath.normpath(posixpath.join(dest, relative))] = context_path


def _mounted(
    instruction: Instruction,
    state: StageFiles,
    sent: list[str],
    on_source: Callable[[SourceUse], None],
) -> dict[str, str]:
    """The files bind mounts from the context add for this RUN, by image path."""
    files: dict[str, str] = {}
    for raw in instruction.flag_values("mount"):
        options = mount_options(raw)
        if options.get("type", "bind") != "bind" or "from" in options:
            continue
        written = options.get("source", options.get("src", "."))
        target = options.get("target", options.get("dst", options.get("destination")))
        path = _clean(written)
        on_source(SourceUse(instruction, written, path, False))
        if target is None:
            continue
        mount = StageFiles(workdir=state.workdir)
        _place(path, sent, posixpath.join(state.workdir, target), False, mount)
        files.update(mount.files)
    return files


def _clean(source: str) -> str:
    cleaned = posixpath.normpath("/" + source).lstrip("/")
    return "" if cleaned in (".", "") else cleaned
