"""The Dockerfile lint of preflight, shared by the deploy and `deployer check`.

The repository at the commit being deployed is exported (through `Sources`, with the
build's own access), the build config's `docker build` steps are read, and each
one's Dockerfile is checked against its build context (`deployer.dockerfiles.lint`).
The image the last of them builds is then read for what the revision needs: the
variables its settings require, and the port its command listens on.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from google.cloud.devtools import cloudbuild_v1

from deployer.config import Environment, ServiceConfig
from deployer.dockerfiles.build_steps import docker_builds
from deployer.dockerfiles.lint import FAIL, OK, WARN, Finding, ImageReading, lint_build
from deployer.dockerfiles.listening import listening
from deployer.dockerfiles.required_settings import (
    EXAMPLE_FILES,
    RequiredVariable,
    from_dotenv_example,
    settings_variables,
)
from deployer.pipeline.ports import SourceProblem, Sources

# Set by Cloud Run in every revision (cloud.google.com/run/docs/container-contract#env-vars).
CLOUD_RUN_SETS = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})
_SOURCE_SUFFIXES = (".py", ".js", ".mjs", ".cjs", ".ts", ".go", ".rb", ".java", ".kt", ".sh")
_MAX_SOURCE_BYTES = 512 * 1024
_MAX_SOURCES = 3000
_TESTS = ("tests/", "test/")


@dataclass(frozen=True)
class ImageLint:
    """Every line of the lint, in order."""

    findings: tuple[Finding, ...]

    @property
    def failures(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.level == FAIL]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.level == WARN]


def lint_image(
    sources: Sources,
    service: ServiceConfig,
    settings: Environment,
    build: cloudbuild_v1.Build,
    commit: str,
    provided: Iterable[str],
    config_name: str,
    timeout: float,
) -> ImageLint:
    """Lint the build of `commit`. `provided`: the variable names the environment sets
    (env, secrets, env_from_secret); `config_name`: how a fix names the build config."""
    steps = docker_builds(build, service.source.dir, service.substitutions)
    if not steps:
        return ImageLint(
            (
                Finding(
                    WARN,
                    "dockerfile",
                    f"not checked: no step of {config_name} runs `docker "
                    "build` (a script that runs it is not read)",
                ),
            )
        )
    with tempfile.TemporaryDirectory(prefix="deployer-lint-") as folder:
        root = Path(folder)
        try:
            sources.export(service, commit, root, timeout)
        except SourceProblem as problem:
            return ImageLint((Finding(WARN, "dockerfile", f"not checked: {problem}"),))
        findings: list[Finding] = []
        image: ImageReading | None = None
        for step in steps:
            read = lint_build(root, step, config_name)
            if isinstance(read, Finding):
                findings.append(read)
                continue
            image = read
            findings.extend(read.findings)
            if not read.findings:
                findings.append(Finding(OK, f"dockerfile {step.dockerfile}", _proved(read)))
        if image is not None:
            findings.extend(_image_needs(image, settings, set(provided)))
    return ImageLint(tuple(findings))


def _proved(read: ImageReading) -> str:
    builder = "BuildKit" if read.build.builder.buildkit else "the legacy builder"
    return (
        f"{read.build.label} builds it with {builder} ({read.build.builder.reason}); "
        f"{read.sources} context source{'' if read.sources == 1 else 's'} present and not "
        "excluded by .dockerignore"
    )


def _image_needs(image: ImageReading, settings: Environment, provided: set[str]) -> list[Finding]:
    """The required variables and the listening port of the image `image` builds."""
    texts = _source_texts(image)
    python = {path: text for path, text in texts.items() if path.endswith(".py")}
    required, read = settings_variables(python)
    origin = "its settings classes"
    if not read:
        required, origin = _example(image.context.root), "its .env example"
    given = provided | CLOUD_RUN_SETS | set(image.final.env)
    missing = [variable for variable in required if not variable.provided_by(given)]
    findings = []
    if missing:
        whence = ", ".join(f"{v.shown} ({v.origin})" for v in missing)
        verb = "is" if len(missing) == 1 else "are"
        findings.append(
            Finding(
                FAIL,
                "required variables",
                f"{whence} {verb} required by the app and not set by the environment's env, "
                "secrets or env_from_secret: the revision would not start; fix: add "
                f"{'it' if len(missing) == 1 else 'them'} to the environment (`deployer env "
                "import`, or [environments.<name>.secrets])",
            )
        )
    elif required:
        findings.append(
            Finding(
                OK,
                "required variables",
                f"all {len(required)} that {origin} require are "
                f"set: {', '.join(sorted(v.shown for v in required))}",
            )
        )
    else:
        findings.append(
            Finding(
                OK,
                "required variables",
                "none found (no pydantic-settings class with required fields, no .env.example)",
            )
        )
    found = listening(image.final.entrypoint, image.final.cmd, settings.run.port, read, texts)
    findings.append(Finding(WARN if found.warning else OK, "port", found.message))
    return findings


def _example(root: Path) -> list[RequiredVariable]:
    for name in EXAMPLE_FILES:
        path = root / name
        if path.is_file():
            return from_dotenv_example(path.read_text(encoding="utf-8", errors="replace"), name)
    return []


def _source_texts(image: ImageReading) -> dict[str, str]:
    """The image's source files (repository path -> text): those the final stage holds, or,
    when it holds none (a RUN made them), every source file the context sends."""
    held = sorted(set(image.final.files.values()))
    candidates = [p for p in held if p.endswith(_SOURCE_SUFFIXES)]
    if not candidates:
        candidates = [p for p in image.context.files() if p.endswith(_SOURCE_SUFFIXES)]
    texts: dict[str, str] = {}
    for path in candidates[:_MAX_SOURCES]:
        name = path.rsplit("/", 1)[-1]
        if path.startswith(_TESTS) or "/tests/" in path or name.startswith("test_"):
            continue
        if name == "conftest.py":
            continue
        file = image.context.root / path
        try:
            if file.is_file() and file.stat().st_size <= _MAX_SOURCE_BYTES:
                shown = posixpath.join(image.build.context or "", path)
                texts[shown] = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    return texts
