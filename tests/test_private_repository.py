"""The code of a private repository: a Cloud Build connection reads it, an anonymous URL cannot.

The sandbox's connected repositories are served by a git server that, like
GitHub for a private repository, refuses anonymous reads and accepts a read token
from RepositoryManager.FetchReadToken as the Basic-auth password.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud.devtools import cloudbuild_v1

from deployer import cli
from deployer.adapters.source_repositories import CloudBuildSources
from deployer.config import load_config
from deployer.pipeline.ports import SourceProblem
from deployer.pipeline.record import State
from tests.conftest import REGION
from tests.engine_world import World, close_world, make_world


@pytest.fixture
def private(gcp: Sandbox, tmp_path: Path, repo_root: Path) -> Iterator[tuple[World, str, str]]:
    """A world whose repository is connected to Cloud Build; (world, repository, remote_uri)."""
    world = make_world(gcp, tmp_path / "world", repo_root, deploy_first=False)
    connected = gcp.repositories.connect(
        world.project, REGION, "github", f"app-{uuid.uuid4().hex[:8]}", world.repo
    )
    world.reconfigure(service={"source": {"git": None, "connected_repository": connected.name}})
    try:
        yield world, str(connected.name), str(connected.remote_uri)
    finally:
        close_world(world)


def _anonymous_ls_remote(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "credential.helper=", "ls-remote", url],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )


def test_a_connected_repository_deploys_end_to_end(private: tuple[World, str, str]) -> None:
    world, repository, remote = private
    # The remote is private: git alone cannot read it.
    refused = _anonymous_ls_remote(remote)
    assert refused.returncode != 0 and world.head() not in refused.stdout

    record, events = world.deploy("main")
    assert record.state == State.SUCCEEDED, record.error
    assert record.commit == world.head()
    build = world.builds.get_build(
        name=f"projects/{world.project}/locations/{REGION}/builds/{record.build_id}"
    )
    assert build.source.connected_repository.repository == repository
    assert build.source.connected_repository.revision == world.head()
    assert build.source_provenance.resolved_connected_repository.revision == world.head()
    assert world.serving() == [(record.candidate_revision, 100)]
    # A read token reads the repository and nothing else keeps it.
    said = "\n".join([events.text.getvalue(), world.records_text()])
    assert "ghs_" not in said and "x-access-token" not in said


def test_an_anonymous_url_of_a_private_repository_is_named_as_such(
    private: tuple[World, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, _, remote = private
    world.reconfigure(service={"source": {"connected_repository": None, "git": remote}})
    os.environ["DEPLOYER_CONFIG"] = str(world.config_path)
    try:
        assert cli.main(["check", "prod"]) == 1
    finally:
        os.environ.pop("DEPLOYER_CONFIG")
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "ref HEAD" in line)
    assert line.lstrip().startswith("FAIL")
    assert f"{remote} cannot be read anonymously" in line
    assert "source.connected_repository" in line

    record, _ = world.deploy("main")
    assert record.state == State.FAILED
    assert "cannot be read anonymously" in (record.error or "")
    assert record.build_id is None  # refused before anything was built


def test_a_trigger_builds_the_resolved_commit_with_its_own_config(
    private: tuple[World, str, str],
) -> None:
    world, repository, _ = private
    trigger = world.builds.create_build_trigger(
        parent=f"projects/{world.project}/locations/{REGION}",
        project_id=world.project,
        trigger=cloudbuild_v1.BuildTrigger(
            name="deploy-backend",
            repository_event_config=cloudbuild_v1.RepositoryEventConfig(
                repository=repository,
                push=cloudbuild_v1.PushFilter(branch="^main$"),
            ),
            filename="cloudbuild.yaml",
        ),
        timeout=30,
    )
    world.reconfigure(service={"source": {"connected_repository": None, "trigger": trigger.id}})
    commit = world.commit("a change the trigger builds")

    record, _ = world.deploy("main")
    assert record.state == State.SUCCEEDED, record.error
    assert record.commit == commit
    build = world.builds.get_build(
        name=f"projects/{world.project}/locations/{REGION}/builds/{record.build_id}"
    )
    assert build.build_trigger_id == trigger.id
    assert build.source_provenance.resolved_connected_repository.revision == commit
    assert world.serving() == [(record.candidate_revision, 100)]


def test_a_local_path_is_a_sandbox_convenience_only(tmp_path: Path, world_config: Path) -> None:
    service = load_config(world_config).services["backend"]
    sources = CloudBuildSources(local_paths=False)
    with pytest.raises(
        SourceProblem, match=r"a path on this machine .* Cloud Build cannot fetch it"
    ):
        sources.resolve(service, "main", timeout=5)


@pytest.fixture
def world_config(tmp_path: Path, repo_root: Path) -> Path:
    path = tmp_path / "deployer.toml"
    path.write_text(
        f"""
[services.backend]
project = "p-local"
region = "{REGION}"
service = "backend"
image = "{REGION}-docker.pkg.dev/p-local/deployer/backend"
source = {{ git = "." }}

[environments.prod]
service = "backend"
""",
        encoding="utf-8",
    )
    return path


def test_the_read_token_reads_the_connected_repository(private: tuple[World, str, str]) -> None:
    world, _, _ = private
    service = world.config.services["backend"]
    sources = world.platform.sources
    assert sources.resolve(service, "main", timeout=10) == world.head()
    found = sources.build_config(service, world.head(), timeout=10)
    assert found.text == (world.repo / "cloudbuild.yaml").read_text()
    assert found.origin.startswith(f"cloudbuild.yaml at {world.head()[:12]} in projects/")
    with pytest.raises(SourceProblem, match=r"build config ci/missing\.yaml not found at"):
        sources.build_config(
            service.model_copy(update={"build_config": "ci/missing.yaml"}),
            world.head(),
            timeout=10,
        )
