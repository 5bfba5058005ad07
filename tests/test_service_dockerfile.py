"""service/Dockerfile and service/.dockerignore agree, proved without a Docker engine.

The hand-written deploy this project replaces lost README.md to .dockerignore,
and the image build failed inside uv ("Readme file does not exist"). These
tests compute the build context the way BuildKit does (tests/dockerfile_context.py)
and check that every file the Dockerfile copies is in it, plus the properties
the deployer relies on: an exec-form command that honours $PORT, a non-root
user, a locked dependency install, and the commit baked in as APP_COMMIT.
"""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.dockerfile_context import (
    DockerIgnore,
    Stage,
    build_context,
    context_sources,
    missing_sources,
    parse_dockerfile,
    read_ignore_patterns,
)

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "service"


def final_stage() -> Stage:
    return parse_dockerfile((SERVICE / "Dockerfile").read_text())[-1]


# --- the service's Dockerfile and .dockerignore --------------------------------


def test_every_copied_file_is_in_the_build_context() -> None:
    assert missing_sources(SERVICE, SERVICE / "Dockerfile") == []


def test_the_context_keeps_what_uv_and_the_app_need() -> None:
    sources = {
        path for _, path in context_sources(parse_dockerfile((SERVICE / "Dockerfile").read_text()))
    }
    context = build_context(SERVICE, SERVICE / "Dockerfile")

    assert {"README.md", "pyproject.toml", "uv.lock", "app"} <= sources
    assert {"README.md", "pyproject.toml", "uv.lock", "app/__main__.py", "app/main.py"} <= context


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

    context = build_context(context_dir, context_dir / "Dockerfile")

    assert not [path for path in clutter if path in context]
    assert not [path for path in context if path.startswith("tests")]
    assert "README.md" in context


def test_the_origin_bug_is_caught(tmp_path: Path) -> None:
    context_dir = tmp_path / "service"
    shutil.copytree(SERVICE, context_dir, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    (context_dir / ".dockerignore").write_text(".venv\n__pycache__\n*.md\n")

    missing = missing_sources(context_dir, context_dir / "Dockerfile")

    assert len(missing) == 1
    assert missing[0].endswith(": README.md")


def test_command_is_exec_form_python_m_app_without_a_port() -> None:
    stages = parse_dockerfile((SERVICE / "Dockerfile").read_text())
    last = stages[-1].instructions[-1]

    # The local sandbox runs exactly this command, with its own interpreter for
    # `python`, and PORT in the environment.
    assert last.keyword == "CMD"
    assert last.exec_form
    assert last.arguments == ["python", "-m", "app"]
    assert not [arg for arg in last.arguments if re.search(r"\d{2,5}|port", arg, re.IGNORECASE)]
    assert not [i for i in stages[-1].instructions if i.keyword == "ENTRYPOINT"]


def test_final_stage_runs_as_a_created_non_root_user() -> None:
    stage = final_stage()
    users = [i.arguments[0] for i in stage.instructions if i.keyword == "USER"]
    creating = [i.raw for i in stage.instructions if i.keyword == "RUN" and "useradd" in i.raw]

    assert users, "the final stage sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert creating and re.search(rf"\b{re.escape(user)}\s*$", creating[0])


def test_dependencies_install_exactly_from_the_lock() -> None:
    stages = parse_dockerfile((SERVICE / "Dockerfile").read_text())
    syncs = [
        shlex.split(i.raw)
        for stage in stages
        for i in stage.instructions
        if i.keyword == "RUN" and "uv sync" in i.raw
    ]

    assert len(syncs) == 2
    for words in syncs:
        assert {"--frozen", "--no-dev"} <= set(words)
    # Dependencies first, without the project, so code changes keep that layer.
    assert "--no-install-project" in syncs[0]


def test_builder_uses_uv_with_a_cache_mount() -> None:
    builder = parse_dockerfile((SERVICE / "Dockerfile").read_text())[0]
    runs = [i for i in builder.instructions if i.keyword == "RUN" and "uv sync" in i.raw]

    assert builder.base == "python:3.11-slim"
    assert builder.name == "builder"
    assert all("type=cache,target=/root/.cache/uv" in i.flags.get("mount", "") for i in runs)
    assert any(
        i.keyword == "COPY" and i.flags.get("from", "").startswith("ghcr.io/astral-sh/uv:")
        for i in builder.instructions
    )


def test_commit_is_baked_in_as_app_commit() -> None:
    stage = final_stage()
    args = [i.raw for i in stage.instructions if i.keyword == "ARG"]
    envs = [i.raw for i in stage.instructions if i.keyword == "ENV"]

    assert stage.base == "python:3.11-slim"
    assert "COMMIT_SHA=unknown" in args
    assert "APP_COMMIT=$COMMIT_SHA" in envs
    assert any(env.startswith("PATH=/app/.venv/bin:$PATH") for env in envs)


# --- the .dockerignore matcher ---------------------------------------------------


def excluded(patterns: str, path: str) -> bool:
    return DockerIgnore.from_text(patterns).excludes(path)


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        # Examples of Docker's .dockerignore documentation.
        ("*/temp*", "somedir/temporary.txt", True),
        ("*/temp*", "somedir/temp", True),
        ("*/temp*", "temporary.txt", False),
        ("*/temp*", "a/b/temporary.txt", False),
        ("*/*/temp*", "somedir/subdir/temporary.txt", True),
        ("*/*/temp*", "somedir/temporary.txt", False),
        ("temp?", "tempa", True),
        ("temp?", "tempab", False),
        ("temp?", "dir/tempa", False),
        ("**/*.go", "main.go", True),
        ("**/*.go", "cmd/tool/main.go", True),
        ("**/*.go", "main.goo", False),
        ("*.md\n!README.md", "README.md", False),
        ("*.md\n!README.md", "CHANGES.md", True),
        ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
        ("*.md\n!README*.md\nREADME-secret.md", "README-public.md", False),
        ("*.md\nREADME-secret.md\n!README*.md", "README-secret.md", False),
        # A matching directory excludes everything below it.
        ("tests", "tests/unit/test_app.py", True),
        ("**/__pycache__", "app/__pycache__/main.cpython-311.pyc", True),
        # Leading "/" and "./" are dropped; patterns are cleaned.
        ("/app/secret.txt", "app/secret.txt", True),
        ("./tmp", "tmp/x", True),
        ("docs//old/../new/", "docs/new/page.html", True),
        # Comments start in the first column only; surrounding spaces are trimmed.
        ("# README.md", "# README.md", False),
        ("  README.md  ", "README.md", True),
        # `**` at the end, and literal `**` shortcuts.
        ("build/**", "build/a/b", True),
        ("**", "anything/at/all", True),
        ("**.log", "x/debug.log", True),
        ("**foo", "xfoo", True),
        ("**/foo/**", "a/foo/b", True),
        ("**/foo/**", "a/xfoo/b", False),
        ("build/**", "buildx", False),
        # Character classes and escapes follow Go's filepath.Match.
        ("file[0-9].txt", "file7.txt", True),
        ("file[^0-9].txt", "file7.txt", False),
        ("file[^0-9].txt", "filex.txt", True),
        (r"star\*.txt", "star*.txt", True),
        (r"star\*.txt", "starx.txt", False),
        # Dots are literal.
        ("*.py", "apy", False),
    ],
)
def test_ignore_matcher(patterns: str, path: str, expected: bool) -> None:
    assert excluded(patterns, path) is expected


def test_ignore_file_reading_normalises_patterns() -> None:
    text = "\ufeff# comment\n\n  /a/b/  \n! ./c\nx/./y/../z\n #not a comment\n"

    assert read_ignore_patterns(text) == ["a/b", "!c", "x/z", "#not a comment"]


def test_ignore_rejects_a_lone_exclamation_mark() -> None:
    with pytest.raises(ValueError, match="illegal exclusion"):
        DockerIgnore.from_text("!")


def test_excluded_directory_is_pruned_unless_an_exception_reaches_inside(tmp_path: Path) -> None:
    for path in ("docs/keep.md", "docs/drop.txt", "build/out/keep.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    (tmp_path / ".dockerignore").write_text("docs\n!docs/keep.md\nbuild\n")

    context = build_context(tmp_path)

    assert {"docs", "docs/keep.md"} <= context
    assert "docs/drop.txt" not in context
    assert not [path for path in context if path.startswith("build")]


# --- the Dockerfile reader --------------------------------------------------------


def test_dockerfile_reader_handles_continuations_flags_and_forms() -> None:
    text = """# syntax=docker/dockerfile:1
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
# a comment
COPY --chown=app:app --chmod=644 \\
    # a comment inside a continuation
    one.txt \\

    two.txt /dest/
COPY ["with space.txt", "/dest/"]
COPY --from=build /x /y
ADD https://example.com/file.tar.gz /tmp/
RUN --mount=type=bind,source=uv.lock,target=uv.lock --mount=type=cache,target=/c true
CMD ["python", "-m", "app"]
"""
    stages = parse_dockerfile(text)
    copy = stages[0].instructions[0]

    assert len(stages) == 1 and stages[0].name == "build"
    assert copy.flags == {"chown": "app:app", "chmod": "644"}
    assert copy.arguments == ["one.txt", "two.txt", "/dest/"]
    assert copy.line == 5
    assert context_sources(stages) == [
        (5, "one.txt"),
        (5, "two.txt"),
        (10, "with space.txt"),
        (13, "uv.lock"),
    ]
    assert stages[0].instructions[-1].exec_form


def test_dockerfile_reader_honours_the_escape_directive() -> None:
    stages = parse_dockerfile("# escape=`\nFROM scratch\nCOPY a `\n  b /\n")

    assert stages[0].instructions[0].arguments == ["a", "b", "/"]


def test_wildcard_sources_must_match_something(tmp_path: Path) -> None:
    (tmp_path / "requirements-dev.txt").write_text("x")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY requirements-*.txt /\nCOPY *.lock /\n")

    assert missing_sources(tmp_path, tmp_path / "Dockerfile") == ["line 3: *.lock"]


def test_continuation_joins_lines_without_adding_a_space() -> None:
    stages = parse_dockerfile("FROM scratch\nCOPY conf\\\nig.toml /\n")

    assert stages[0].instructions[0].arguments == ["config.toml", "/"]
