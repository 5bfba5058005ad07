"""service/Dockerfile and service/.dockerignore agree, proved without a Docker engine.

The hand-written deploy this project replaces lost README.md to .dockerignore,
and the image build failed inside uv ("Readme file does not exist"). These
tests read the Dockerfile with BuildKit's parser and the context with Docker's
matcher (`deployer.dockerfiles`, the deployer's own lint) and check that every file
the Dockerfile copies is in it, plus the properties the deployer relies on: an
exec-form command that honours $PORT, a non-root user, a locked dependency install,
and the commit baked in as APP_COMMIT.
"""

import re
import shlex
import shutil
from pathlib import Path

import pytest
from google.cloud.devtools import cloudbuild_v1

from deployer.build_config import load_build_config
from deployer.dockerfiles.build_steps import docker_builds
from deployer.dockerfiles.context import BuildContext, read_ignore_lines
from deployer.dockerfiles.lint import ImageReading, lint_build
from deployer.dockerfiles.parse import Stage, parse

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "service"


def stages() -> tuple[Stage, ...]:
    return parse((SERVICE / "Dockerfile").read_text()).stages


def lint_service(root: Path) -> ImageReading:
    """The deployer's lint of cloudbuild.yaml's build step over the repository at `root`."""
    build = load_build_config((ROOT / "cloudbuild.yaml").read_text())
    (step,) = docker_builds(build, "", {})
    read = lint_build(root, step, "cloudbuild.yaml")
    assert isinstance(read, ImageReading), read
    return read


def run_words(stage: Stage) -> list[list[str]]:
    return [shlex.split(" ".join(i.args)) for i in stage.instructions if i.keyword == "RUN"]


# --- the service's Dockerfile and .dockerignore --------------------------------


def test_every_copied_file_is_in_the_build_context() -> None:
    read = lint_service(ROOT)
    assert read.findings == []
    assert read.build.context == "service" and read.build.builder.buildkit


def test_the_context_keeps_what_uv_and_the_app_need() -> None:
    read = lint_service(ROOT)
    context = set(read.context.files())
    image = read.final.files  # image path -> context path, through the builder stage

    assert {"README.md", "pyproject.toml", "uv.lock", "app/__main__.py", "app/main.py"} <= context
    assert {"/app/app/__main__.py", "/app/app/main.py"} <= set(image)


def test_the_context_leaves_out_local_clutter_and_secrets(tmp_path: Path) -> None:
    context_dir = tmp_path / "service"
    shutil.copytree(
        SERVICE, context_dir, ignore=shutil.ignore_patterns(".venv", "__pycache__", ".*_cache")
    )
    clutter = [
        ".venv/bin/python",
        "app/__pycache__/main.cpython-311.pyc",
        "tests/__pycache__/test_app.cpython-311.pyc",
        ".pytest_cache/README.md",
        ".env",
        ".env.prod",
        "NOTES.md",
        ".git/HEAD",
    ]
    for path in clutter:
        (context_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (context_dir / path).write_text("x")

    context = set(BuildContext(context_dir).files())

    assert not [path for path in clutter if path in context]
    assert not [path for path in context if path.startswith("tests")]
    assert "README.md" in context


def test_the_origin_bug_is_caught(tmp_path: Path) -> None:
    shutil.copytree(SERVICE, tmp_path / "service", ignore=shutil.ignore_patterns(".venv"))
    shutil.copy(ROOT / "cloudbuild.yaml", tmp_path)
    (tmp_path / "service" / ".dockerignore").write_text(".venv\n__pycache__\n*.md\n")

    messages = [finding.message for finding in lint_service(tmp_path).findings]

    assert len(messages) == 2
    assert messages[0].startswith("line 23 COPY README.md: README.md is excluded")
    assert "by .dockerignore line 3 (*.md)" in messages[0]
    assert "`uv sync` installs the project of pyproject.toml" in messages[1]


def test_command_is_exec_form_python_m_app_without_a_port() -> None:
    last = stages()[-1].instructions[-1]

    # The local sandbox runs exactly this command, and PORT is in the environment.
    assert last.keyword == "CMD"
    assert last.json
    assert list(last.args) == ["python", "-m", "app"]
    assert not [arg for arg in last.args if re.search(r"\d{2,5}|port", arg, re.IGNORECASE)]
    assert not [i for i in stages()[-1].instructions if i.keyword == "ENTRYPOINT"]


def test_final_stage_runs_as_a_created_non_root_user() -> None:
    stage = stages()[-1]
    users = [i.args[0] for i in stage.instructions if i.keyword == "USER"]
    creating = [w for w in run_words(stage) if "useradd" in w]

    assert users, "the final stage sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert creating and creating[0][-1] == user


def test_dependencies_install_exactly_from_the_lock() -> None:
    syncs = [
        words for stage in stages() for words in run_words(stage) if words[:2] == ["uv", "sync"]
    ]

    assert len(syncs) == 2
    for words in syncs:
        assert {"--frozen", "--no-dev"} <= set(words)
    # Dependencies first, without the project, so code changes keep that layer.
    assert "--no-install-project" in syncs[0]


def test_builder_uses_uv_with_a_cache_mount() -> None:
    builder = stages()[0]
    runs = [i for i in builder.instructions if i.keyword == "RUN" and "uv sync" in i.args[0]]

    assert builder.base == "python:3.11-slim"
    assert builder.name == "builder"
    assert all("type=cache,target=/root/.cache/uv" in i.flag_values("mount") for i in runs)
    assert any(
        i.keyword == "COPY" and (i.flag("from") or "").startswith("ghcr.io/astral-sh/uv:")
        for i in builder.instructions
    )


def test_commit_is_baked_in_as_app_commit() -> None:
    stage = stages()[-1]
    args = [" ".join(i.args) for i in stage.instructions if i.keyword == "ARG"]
    envs = dict(
        pair
        for i in stage.instructions
        if i.keyword == "ENV"
        for pair in zip(i.args[::2], i.args[1::2], strict=True)
    )

    assert stage.base == "python:3.11-slim"
    assert "COMMIT_SHA=unknown" in args
    assert envs["APP_COMMIT"] == "$COMMIT_SHA"
    assert envs["PATH"].startswith("/app/.venv/bin:$PATH")


# --- Docker's .dockerignore rules, as the shared matcher applies them ----------------


def excluded(patterns: str, path: str, tmp_path: Path) -> bool:
    (tmp_path / ".dockerignore").write_text(patterns)
    return BuildContext(tmp_path).excluded(path)


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        # Examples of Docker's .dockerignore documentation.
        ("*/temp*", "somedir/temporary.txt", True),
        ("*/temp*", "temporary.txt", False),
        ("*/*/temp*", "somedir/subdir/temporary.txt", True),
        ("temp?", "tempa", True),
        ("temp?", "tempab", False),
        ("**/*.go", "main.go", True),
        ("**/*.go", "cmd/tool/main.go", True),
        ("*.md\n!README.md", "README.md", False),
        ("*.md\n!README.md", "CHANGES.md", True),
        ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
        ("*.md\n!README*.md\nREADME-secret.md", "README-public.md", False),
        # A matching directory excludes everything below it.
        ("tests", "tests/unit/test_app.py", True),
        ("**/__pycache__", "app/__pycache__/main.cpython-311.pyc", True),
        # Leading "/" and "./" are dropped; patterns are cleaned.
        ("/app/secret.txt", "app/secret.txt", True),
        ("./tmp", "tmp/x", True),
        # Comments start in the first column only.
        ("# README.md", "README.md", False),
        # The Dockerfile and .dockerignore are always sent.
        ("*", "Dockerfile", False),
        ("*", ".dockerignore", False),
    ],
)
def test_ignore_matcher(patterns: str, path: str, expected: bool, tmp_path: Path) -> None:
    assert excluded(patterns, path, tmp_path) is expected


def test_the_excluding_line_is_named() -> None:
    context = BuildContext(SERVICE)
    line = context.excluding_line("NOTES.md")
    assert line is not None and line.text == "*.md"
    assert (SERVICE / ".dockerignore").read_text().splitlines()[line.number - 1] == "*.md"
    assert context.excluding_line("README.md") is None
    assert read_ignore_lines("\ufeff# c\n\n  a  \n")[0].text == "a"


def test_wildcard_sources_must_match_something(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "requirements-dev.txt").write_text("x")
    (tmp_path / "app" / "Dockerfile").write_text(
        "FROM scratch\nCOPY requirements-*.txt /\nCOPY *.lock /\n"
    )
    build = cloudbuild_v1.Build(steps=[{"name": "docker", "dir_": "app", "args": ["build", "."]}])
    (step,) = docker_builds(build, "", {})
    read = lint_build(tmp_path, step, "cloudbuild.yaml")

    assert isinstance(read, ImageReading)
    assert [f.message.split(":")[0] for f in read.findings] == ["line 3 COPY *.lock"]
