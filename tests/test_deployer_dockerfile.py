"""The deployer's own image (root Dockerfile): what the worker job runs, checked without Docker."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from tests.dockerfile_context import build_context, missing_sources, parse_dockerfile

ROOT = Path(__file__).resolve().parents[1]


def test_every_copied_file_is_in_the_build_context() -> None:
    assert missing_sources(ROOT, ROOT / "Dockerfile") == []


def test_the_context_holds_the_package_and_nothing_of_the_rest() -> None:
    context = build_context(ROOT, ROOT / "Dockerfile")
    assert {"pyproject.toml", "uv.lock", "README.md", "main.py", "deployer/cli.py"} <= context
    assert "sandbox/pyproject.toml" in context  # uv reads the workspace; nothing of it is installed
    assert not {path for path in context if path.startswith(("tests", "service", ".git", ".venv"))}
    assert not {path for path in context if path.startswith("sandbox/deployer_sandbox")}
    assert not {path for path in context if "__pycache__" in path}


def test_the_job_runs_deployer_worker_as_a_non_root_user() -> None:
    final = parse_dockerfile((ROOT / "Dockerfile").read_text())[-1]
    keywords = {i.keyword: i for i in final.instructions}
    # The job's override args (["worker", DEPLOY_ID]) follow the entrypoint.
    assert keywords["ENTRYPOINT"].arguments == ["deployer"]
    assert keywords["USER"].arguments == ["deployer"]
    # git resolves branches and tags to commits in preflight.
    assert "git" in shlex.split(keywords["RUN"].raw)


def test_dependencies_install_exactly_from_the_lock() -> None:
    builder = parse_dockerfile((ROOT / "Dockerfile").read_text())[0]
    syncs = [
        shlex.split(i.raw)
        for i in builder.instructions
        if i.keyword == "RUN" and "uv sync" in i.raw
    ]
    assert syncs and all("--frozen" in words and "--no-dev" in words for words in syncs)
    assert all(words[words.index("--package") + 1] == "deployer" for words in syncs)


def test_the_product_installs_no_sandbox_and_no_sample_service_dependency() -> None:
    """What the function and the worker image install: the product and its dependencies."""
    # `uv run` names itself in UV; uv on PATH otherwise.
    uv = os.environ.get("UV") or shutil.which("uv") or "uv"
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--package", "deployer", "--no-hashes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    names = {line.split("==")[0] for line in exported.splitlines() if "==" in line}
    assert {"slack-bolt", "google-cloud-run", "functions-framework"} <= names
    assert not names & {"fastapi", "pydantic-settings", "deployer-sandbox"}
    # uvicorn stays, for functions-framework's own sake (its ASGI mode), not the product's.
    lines = exported.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("uvicorn=="))
    via = []
    for line in lines[start + 1 :]:
        if not line.startswith("    #"):
            break
        via.append(line.removeprefix("    #").strip())
    assert set(via) - {"via"} <= {"functions-framework", "uvicorn-worker"}
