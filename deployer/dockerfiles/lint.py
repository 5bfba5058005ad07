"""Lint one `docker build` step before a build is spent: what Docker itself would refuse.

- BuildKit-only syntax in a step that builds with the legacy builder (the rule is
  `buildkit.uses_buildkit`): moby's legacy builder stops with "the --mount option
  requires BuildKit".
- A COPY/ADD source or bind-mount source missing from the context, or excluded by
  `.dockerignore`: Docker stops with `"/README.md": not found` (BuildKit) or
  "COPY failed: file not found in build context or excluded by .dockerignore" (legacy).
  A wildcard must match at least one file: "When using a wildcard ... at least one
  file must match" (docs.docker.com/reference/dockerfile/#copy, BuildKit's
  `no source files were specified`).
- A project installed in the image whose pyproject names files the image lacks
  (`project_install`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from docker.utils.fnmatch import fnmatchcase

from deployer.dockerfiles.build_steps import DockerBuild
from deployer.dockerfiles.buildkit import buildkit_only, legacy_refusal
from deployer.dockerfiles.context import BuildContext
from deployer.dockerfiles.image_files import SourceUse, StageFiles, stages_built, trace
from deployer.dockerfiles.parse import DockerfileError, Instruction, Stage, parse
from deployer.dockerfiles.project_install import MissingProjectFile, installs, missing_files

FAIL, WARN, OK = "FAIL", "warn", "ok"


@dataclass(frozen=True)
class Finding:
    """One line of the lint: FAIL stops the deploy, warn is said, ok is what was proved."""

    level: str  # FAIL, warn or ok
    subject: str
    message: str

    @property
    def failed(self) -> bool:
        return self.level == FAIL


@dataclass
class ImageReading:
    """What the lint learnt of one build, for the checks that read the running image."""

    build: DockerBuild
    context: BuildContext
    final: StageFiles
    findings: list[Finding] = field(default_factory=list)
    sources: int = 0  # context sources checked


def lint_build(root: Path, build: DockerBuild, config_name: str) -> ImageReading | Finding:
    """The reading of `build` over the repository exported at `root`; a Finding alone
    when its Dockerfile cannot be read at all."""
    subject = f"dockerfile {build.dockerfile or '?'}"
    if build.context is None or build.dockerfile is None:
        return Finding(
            WARN,
            f"dockerfile ({build.label})",
            "not checked: its context or -f is not a folder "
            "of the repository (a URL, stdin, or a substitution with no value)",
        )
    folder = root / build.context
    dockerfile = root / build.dockerfile
    if not folder.is_dir():
        return Finding(
            FAIL,
            subject,
            f"the build context {build.context or '.'}/ of "
            f"{build.label} is not a folder of the repository",
        )
    try:
        parsed = parse(dockerfile.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Finding(
            FAIL,
            subject,
            f"{build.label} names {build.dockerfile}, which is not "
            "in the repository at this commit",
        )
    except (OSError, UnicodeDecodeError, DockerfileError) as error:
        return Finding(FAIL, subject, f"cannot be read: {error}")
    relative = posixpath.relpath(build.dockerfile, build.context or ".")
    context = BuildContext(folder, relative if not relative.startswith("..") else "Dockerfile")
    findings: list[Finding] = []
    stages = stages_built(parsed, build.target, build.builder.buildkit)
    if not build.builder.buildkit:
        findings.extend(_buildkit(stages_instructions(stages), build, subject, config_name))
    uses: list[SourceUse] = []
    missing: list[MissingProjectFile] = []

    tools: dict[int, str] = {}

    def on_run(instruction: Instruction, state: StageFiles, mounted: Mapping[str, str]) -> None:
        for tool, project in installs(instruction, state.workdir):
            image = {**state.files, **mounted}
            missing.extend(missing_files(instruction, tool, project, image, folder))
            tools[id(instruction)] = tool

    done = trace(parsed, stages, context, build.build_args, uses.append, on_run)
    findings.extend(_sources(uses, context, build, subject))
    findings.extend(_project(missing, context, build, subject, tools))
    final = done[stages[-1].index]
    return ImageReading(build, context, final, findings, len(uses))


def stages_instructions(stages: list[Stage]) -> list[Instruction]:
    """Every instruction of `stages`, FROM lines included, in order."""
    return [instruction for stage in stages for instruction in (stage.start, *stage.instructions)]


def _buildkit(
    instructions: list[Instruction], build: DockerBuild, subject: str, config_name: str
) -> list[Finding]:
    used = [(i, syntax) for i in instructions if (syntax := buildkit_only(i)) is not None]
    if not used:
        return []
    first, syntax = used[0]
    lines = ", ".join(f"line {i.line} ({i.keyword} {s})" for i, s in used)
    setting = build.env.get("DOCKER_BUILDKIT")
    if setting is not None:
        fix = f"change DOCKER_BUILDKIT={setting} to DOCKER_BUILDKIT=1 in the env of {build.label}"
    elif build.env:
        fix = f"add 'DOCKER_BUILDKIT=1' to the env of {build.label}"
    else:
        fix = f"add `env: ['DOCKER_BUILDKIT=1']` to {build.label}"
    return [
        Finding(
            FAIL,
            subject,
            f"BuildKit-only syntax at {lines}, but {build.label} builds without BuildKit "
            f'({build.builder.reason}); Docker would stop: "{legacy_refusal(first, syntax)}"; '
            f"fix: in {config_name}, {fix}",
        )
    ]


def _sources(
    uses: list[SourceUse], context: BuildContext, build: DockerBuild, subject: str
) -> list[Finding]:
    where = f"{build.context}/" if build.context else "the repository's root"
    sent = None
    findings = []
    for use in uses:
        what = f"line {use.instruction.line} {use.instruction.keyword} {use.written}"
        if use.wildcard:
            sent = sent if sent is not None else context.files()
            if not any(fnmatchcase(path, use.path) for path in sent):
                findings.append(
                    Finding(
                        FAIL,
                        subject,
                        f"{what}: the pattern matches no file of the build "
                        f"context {where}, and Docker requires at least one",
                    )
                )
            continue
        if use.path == "":
            continue
        line = context.excluding_line(use.path)
        if line is not None:
            findings.append(
                Finding(
                    FAIL,
                    subject,
                    f"{what}: {use.path} is excluded from the build context "
                    f"{where} by .dockerignore line {line.number} ({line.text}); Docker "
                    f'would stop: "{use.path}": not found; fix: remove or narrow that '
                    f"line, or add !{use.path} after it",
                )
            )
        elif not context.contains(use.path):
            findings.append(
                Finding(
                    FAIL,
                    subject,
                    f"{what}: {use.path} is not in the build context "
                    f'{where} at this commit; Docker would stop: "{use.path}": not found; '
                    "fix: commit it, or fix the path (relative to the context)",
                )
            )
    return findings


def _project(
    missing: list[MissingProjectFile],
    context: BuildContext,
    build: DockerBuild,
    subject: str,
    tools: Mapping[int, str],
) -> list[Finding]:
    findings = []
    for item in missing:
        tool = tools.get(id(item.instruction), "the install")
        why = _why_absent(item.context_path, context)
        findings.append(
            Finding(
                FAIL,
                subject,
                f"line {item.instruction.line} `{tool}` installs the project "
                f'of {item.pyproject}, whose {item.key} = "{item.wanted}" will not be in the '
                f'image: {why}; the build backend would stop (hatchling: "Readme file does '
                'not exist")',
            )
        )
    return findings


def _why_absent(path: str, context: BuildContext) -> str:
    line = context.excluding_line(path)
    if line is not None:
        return (
            f"{path} is excluded by .dockerignore line {line.number} ({line.text}); fix: "
            f"add !{path} after it"
        )
    if not (context.root / path).exists():
        return f"{path} is not in the build context; fix: commit it or fix the pyproject.toml"
    return f"{path} is not copied before that line; fix: COPY it with pyproject.toml"
