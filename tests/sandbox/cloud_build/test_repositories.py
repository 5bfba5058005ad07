"""Cloud Build 2nd-gen repositories in the sandbox: RepositoryManager, its git server,
builds from `connected_repository`, and triggers, through the real clients over gRPC."""

from __future__ import annotations

import base64
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud.devtools import cloudbuild_v1 as cb
from google.cloud.devtools import cloudbuild_v2 as v2

from tests.conftest import REGION, GoogleClients
from tests.git_repos import commit, git

Status = cb.Build.Status
FailureType = cb.Build.FailureInfo.FailureType
CONFIG = """\
steps:
- name: python
  entrypoint: python
  args: ["-c", "print('$COMMIT_SHA $SHORT_SHA $_GREETING')"]
substitutions:
  _GREETING: from-the-file
"""


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    commit(path, {"cloudbuild.yaml": CONFIG, "app/main.py": "print('v1')\n"}, "first")
    git(path, "tag", "v1")
    return path


def git_env(token: str = "") -> dict[str, str]:
    """git's environment: no prompt, no saved credentials, the token as a Basic header."""
    settings = [("credential.helper", "")]
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        settings.append(("http.extraHeader", f"Authorization: Basic {basic}"))
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    env["GIT_CONFIG_COUNT"] = str(len(settings))
    for index, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def remote_git(
    *args: str, token: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=git_env(token),
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def manager(google_clients: GoogleClients) -> v2.RepositoryManagerClient:
    return google_clients(v2.RepositoryManagerClient)


@pytest.fixture
def builds(google_clients: GoogleClients) -> cb.CloudBuildClient:
    return google_clients(cb.CloudBuildClient)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "app")


@pytest.fixture
def connected(gcp: Sandbox, project: str, repo: Path) -> v2.Repository:
    """`repo`, connected as `projects/P/locations/REGION/connections/github/repositories/app`."""
    return gcp.repositories.connect(project, REGION, "github", "app", repo)


def parent_of(project: str) -> str:
    return f"projects/{project}/locations/{REGION}"


# --- RepositoryManager ------------------------------------------------------------------


def test_connection_and_repository_are_created_through_operations(
    gcp: Sandbox, manager: v2.RepositoryManagerClient, project: str, repo: Path
) -> None:
    parent = parent_of(project)
    connection_id = f"gh-{uuid.uuid4().hex[:8]}"  # unique: the git server is the session's
    connection = manager.create_connection(
        parent=parent,
        connection_id=connection_id,
        connection=v2.Connection(github_config=v2.GitHubConfig(app_installation_id=42)),
    ).result(timeout=10)
    assert connection.name == f"{parent}/connections/{connection_id}"
    assert connection.installation_state.stage == v2.InstallationState.Stage.COMPLETE
    assert connection.etag and connection.create_time

    operation = manager.create_repository(
        parent=connection.name,
        repository=v2.Repository(remote_uri=f"file://{repo}"),
        repository_id="app",
    )
    created = operation.result(timeout=10)
    assert operation.metadata.target == created.name
    assert created.name == f"{connection.name}/repositories/app"
    assert created.remote_uri == f"{gcp.git_server.url}/{connection_id}/app.git"
    assert manager.get_repository(name=created.name) == created
    assert [r.name for r in manager.list_repositories(parent=connection.name)] == [created.name]
    assert [c.name for c in manager.list_connections(parent=parent)] == [connection.name]

    with pytest.raises(exceptions.AlreadyExists):
        manager.create_repository(
            parent=connection.name,
            repository=v2.Repository(remote_uri=str(repo)),
            repository_id="app",
        ).result(timeout=10)
    with pytest.raises(exceptions.NotFound):
        manager.create_repository(
            parent=f"{parent}/connections/nowhere",
            repository=v2.Repository(remote_uri=str(repo)),
            repository_id="app",
        )
    with pytest.raises(exceptions.InvalidArgument, match="repository_id"):
        manager.create_repository(
            parent=connection.name, repository=v2.Repository(remote_uri=str(repo))
        )
    with pytest.raises(exceptions.InvalidArgument, match="cannot reach"):
        manager.create_repository(
            parent=connection.name,
            repository=v2.Repository(remote_uri="https://github.com/acme/app.git"),
            repository_id="remote",
        )
    with pytest.raises(exceptions.NotFound):
        manager.get_repository(name=f"{connection.name}/repositories/missing")
    with pytest.raises(exceptions.InvalidArgument):
        manager.get_repository(name=f"{parent}/repositories/app")


def test_connect_is_idempotent(gcp: Sandbox, project: str, repo: Path, tmp_path: Path) -> None:
    first = gcp.repositories.connect(project, REGION, "github", "app", repo)
    assert gcp.repositories.connect(project, REGION, "github", "app", repo) == first
    other = make_repo(tmp_path / "other")
    with pytest.raises(Exception, match="already exists"):
        gcp.repositories.connect(project, REGION, "github", "app", other)
    # The same pair in another project serves another local repository at another URL.
    elsewhere = gcp.repositories.connect(f"{project}-b", REGION, "github", "app", other)
    assert elsewhere.remote_uri != first.remote_uri


def test_lists_page_and_refuse_a_bad_page_token(
    gcp: Sandbox,
    manager: v2.RepositoryManagerClient,
    builds: cb.CloudBuildClient,
    project: str,
    repo: Path,
) -> None:
    for name in ("a", "b", "c"):
        gcp.repositories.connect(project, REGION, "github", name, repo)
    connection = f"{parent_of(project)}/connections/github"
    first = manager.list_repositories(
        request=v2.ListRepositoriesRequest(parent=connection, page_size=2)
    )
    assert [r.name.rsplit("/", 1)[1] for r in first] == ["a", "b", "c"]  # the pager follows
    with pytest.raises(exceptions.InvalidArgument):
        manager.list_repositories(
            request=v2.ListRepositoriesRequest(parent=connection, page_token="not-a-token")
        )
    with pytest.raises(exceptions.InvalidArgument):
        manager.list_connections(
            request=v2.ListConnectionsRequest(parent=parent_of(project), page_token="%%")
        )
    with pytest.raises(exceptions.InvalidArgument):
        builds.list_build_triggers(
            request=cb.ListBuildTriggersRequest(
                parent=parent_of(project), project_id=project, page_token="nope"
            )
        )


def test_deletes_and_disabled_connections(
    gcp: Sandbox, manager: v2.RepositoryManagerClient, project: str, repo: Path
) -> None:
    connected = gcp.repositories.connect(project, REGION, "gone", "app", repo)
    connection = connected.name.rsplit("/repositories/", 1)[0]
    token = manager.fetch_read_token(repository=connected.name).token
    with pytest.raises(exceptions.FailedPrecondition):
        manager.delete_connection(name=connection).result(timeout=10)
    with pytest.raises(exceptions.Aborted):
        manager.delete_repository(
            request=v2.DeleteRepositoryRequest(name=connected.name, etag="stale")
        )
    manager.delete_repository(name=connected.name).result(timeout=10)
    assert remote_git("ls-remote", connected.remote_uri, token=token).returncode != 0
    manager.delete_connection(name=connection).result(timeout=10)
    with pytest.raises(exceptions.NotFound):
        manager.get_connection(name=connection)

    disabled = manager.create_connection(
        parent=parent_of(project),
        connection_id="off",
        connection=v2.Connection(github_config=v2.GitHubConfig(), disabled=True),
    ).result(timeout=10)
    with pytest.raises(exceptions.FailedPrecondition):
        manager.create_repository(
            parent=disabled.name, repository=v2.Repository(remote_uri=str(repo)), repository_id="a"
        )


# --- the git server -----------------------------------------------------------------------


def test_reads_need_a_token_of_that_repository(
    gcp: Sandbox,
    manager: v2.RepositoryManagerClient,
    connected: v2.Repository,
    project: str,
    repo: Path,
    tmp_path: Path,
) -> None:
    url = connected.remote_uri
    anonymous = remote_git("ls-remote", url)
    assert anonymous.returncode != 0
    assert "could not read Username" in anonymous.stderr

    answer = manager.fetch_read_token(repository=connected.name)
    token = answer.token
    assert token.startswith("ghs_") and len(token) == 40
    lifetime = answer.expiration_time.timestamp() - time.time()
    assert 3500 < lifetime <= 3600

    listed = remote_git("ls-remote", url, token=token)
    assert listed.returncode == 0, listed.stderr
    head = git(repo, "rev-parse", "HEAD")
    assert f"{head}\trefs/heads/main" in listed.stdout
    assert "refs/tags/v1" in listed.stdout

    first = head
    commit(repo, {"app/main.py": "print('v2')\n"})
    clone = tmp_path / "clone"
    git(tmp_path, "init", "-q", str(clone))
    fetched = remote_git(
        "fetch", "--depth=1", "--filter=blob:none", url, first, token=token, cwd=clone
    )
    assert fetched.returncode == 0, fetched.stderr
    shown = remote_git("show", f"{first}:app/main.py", token=token, cwd=clone)
    assert shown.stdout == "print('v1')\n"

    pushed = remote_git("push", url, f"{first}:refs/heads/pushed", token=token, cwd=clone)
    assert pushed.returncode != 0 and "403" in pushed.stderr

    other = gcp.repositories.connect(project, REGION, "github", "other", make_repo(tmp_path / "o"))
    not_mine = manager.fetch_read_token(repository=other.name).token
    refused = remote_git("ls-remote", url, token=not_mine)
    assert refused.returncode != 0 and head not in refused.stdout
    assert token not in refused.stderr + refused.stdout


def test_an_expired_token_is_refused(gcp: Sandbox, connected: v2.Repository) -> None:
    served = gcp.repositories.served(connected.name)
    expired, _ = gcp.git_server.issue_token(served.owner, served.repo, lifetime_s=0)
    refused = remote_git("ls-remote", connected.remote_uri, token=expired)
    assert refused.returncode != 0 and "could not read Username" in refused.stderr


def test_fetch_git_refs_names_branches_and_tags(
    manager: v2.RepositoryManagerClient, connected: v2.Repository, repo: Path
) -> None:
    git(repo, "branch", "release")
    Ref = v2.FetchGitRefsRequest.RefType
    branches = manager.fetch_git_refs(
        request=v2.FetchGitRefsRequest(repository=connected.name, ref_type=Ref.BRANCH)
    )
    assert list(branches.ref_names) == ["refs/heads/main", "refs/heads/release"]
    tags = manager.fetch_git_refs(
        request=v2.FetchGitRefsRequest(repository=connected.name, ref_type=Ref.TAG)
    )
    assert list(tags.ref_names) == ["refs/tags/v1"]
    with pytest.raises(exceptions.InvalidArgument):
        manager.fetch_git_refs(repository=connected.name)
    with pytest.raises(exceptions.NotFound):
        manager.fetch_git_refs(
            request=v2.FetchGitRefsRequest(repository=connected.name + "-missing", ref_type=Ref.TAG)
        )


# --- builds -----------------------------------------------------------------------------


def connected_build(repository: str, revision: str) -> cb.Build:
    return cb.Build(
        source=cb.Source(
            connected_repository=cb.ConnectedRepository(
                repository=repository, revision=revision, dir_="app"
            )
        ),
        steps=[cb.BuildStep(name="python", entrypoint="python", args=["main.py"])],
    )


def test_builds_from_a_connected_repository(
    gcp: Sandbox, builds: cb.CloudBuildClient, connected: v2.Repository, project: str, repo: Path
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    build = builds.create_build(
        parent=parent_of(project), project_id=project, build=connected_build(connected.name, "main")
    ).result(timeout=30)
    assert build.status == Status.SUCCESS
    resolved = build.source_provenance.resolved_connected_repository
    assert (resolved.repository, resolved.revision, resolved.dir_) == (connected.name, head, "app")
    assert f"Fetching {connected.remote_uri} main" in gcp.builds.logs(build.id)


def test_connected_repository_builds_are_checked(
    builds: cb.CloudBuildClient, connected: v2.Repository, project: str
) -> None:
    def create(build: cb.Build, parent: str = parent_of(project)) -> None:
        builds.create_build(parent=parent, project_id=project, build=build)

    with pytest.raises(exceptions.NotFound):
        create(connected_build(connected.name.replace("/app", "/missing"), "main"))
    with pytest.raises(exceptions.InvalidArgument):
        create(connected_build("acme/app", "main"))
    with pytest.raises(exceptions.InvalidArgument, match="revision"):
        create(connected_build(connected.name, ""))
    with pytest.raises(exceptions.InvalidArgument, match="location"):
        create(
            connected_build(connected.name, "main"), parent=f"projects/{project}/locations/global"
        )


def test_the_private_url_as_a_git_source_fails_to_fetch(
    builds: cb.CloudBuildClient, connected: v2.Repository, project: str
) -> None:
    build = cb.Build(
        source=cb.Source(git_source=cb.GitSource(url=connected.remote_uri, revision="main")),
        steps=[cb.BuildStep(name="python", args=["-c", "print(1)"])],
    )
    operation = builds.create_build(parent=parent_of(project), project_id=project, build=build)
    with pytest.raises(exceptions.GoogleAPICallError):
        operation.result(timeout=30)
    failed = builds.get_build(name=operation.metadata.build.name)
    assert failed.status == Status.FAILURE
    assert failed.failure_info.type_ == FailureType.FETCH_SOURCE_FAILED
    assert "could not read Username" in failed.status_detail


# --- triggers ---------------------------------------------------------------------------


def create_trigger(
    builds: cb.CloudBuildClient, project: str, repository: str, **fields: object
) -> cb.BuildTrigger:
    trigger = cb.BuildTrigger(
        name=f"deploy-{uuid.uuid4().hex[:8]}",
        repository_event_config=cb.RepositoryEventConfig(
            repository=repository, push=cb.PushFilter(branch="^main$")
        ),
        **fields,
    )
    return builds.create_build_trigger(
        parent=parent_of(project), project_id=project, trigger=trigger
    )


def run_trigger(builds: cb.CloudBuildClient, name: str, source: cb.RepoSource) -> Any:
    """RunBuildTrigger by the trigger's resource name; the operation."""
    return builds.run_build_trigger(request=cb.RunBuildTriggerRequest(name=name, source=source))


def test_a_trigger_builds_the_commit_it_is_run_at(
    builds: cb.CloudBuildClient, connected: v2.Repository, project: str, repo: Path
) -> None:
    first = git(repo, "rev-parse", "HEAD")
    commit(repo, {"cloudbuild.yaml": CONFIG.replace("$_GREETING", "changed $_GREETING")})
    trigger = create_trigger(
        builds, project, connected.name, filename="cloudbuild.yaml",
        substitutions={"_GREETING": "from-the-trigger"},
    )  # fmt: skip
    assert trigger.id and trigger.name.startswith("deploy-")
    assert trigger.resource_name == f"{parent_of(project)}/triggers/{trigger.id}"
    by_name = builds.get_build_trigger(
        request=cb.GetBuildTriggerRequest(
            name=f"{parent_of(project)}/triggers/{trigger.name}", project_id=project
        )
    )
    assert by_name.id == trigger.id
    listed = builds.list_build_triggers(
        request=cb.ListBuildTriggersRequest(parent=parent_of(project), project_id=project)
    )
    assert [t.id for t in listed] == [trigger.id]

    # The deployer's own request (adapters/cloud_build.py): name, ids and a RepoSource.
    operation = builds.run_build_trigger(
        request=cb.RunBuildTriggerRequest(
            name=trigger.resource_name,
            project_id=project,
            trigger_id=trigger.id,
            source=cb.RepoSource(project_id=project, commit_sha=first),
        )
    )
    started = operation.metadata.build
    assert started.id and started.log_url and started.build_trigger_id == trigger.id
    build = operation.result(timeout=30)
    assert build.status == Status.SUCCESS
    assert build.source.connected_repository.revision == first
    assert build.source_provenance.resolved_connected_repository.revision == first
    # The file at that commit, the trigger's substitution over the file's.
    assert build.steps[0].args == ["-c", f"print('{first} {first[:7]} from-the-trigger')"]
    assert build.substitutions["COMMIT_SHA"] == first
    assert build.substitutions["TRIGGER_NAME"] == trigger.name
    assert build.substitutions["TRIGGER_BUILD_CONFIG_PATH"] == "cloudbuild.yaml"
    # GitHub's owner/name: the remote's path (another owner than `github` when that
    # pair serves another repository of the session's sandbox).
    assert connected.remote_uri.endswith(f"/{build.substitutions['REPO_FULL_NAME']}.git")
    assert build.substitutions["REPO_NAME"] == "app"
    assert build.substitutions["BRANCH_NAME"] == ""


def test_an_inline_trigger_runs_on_a_branch_with_the_request_substitutions(
    builds: cb.CloudBuildClient, connected: v2.Repository, project: str, repo: Path
) -> None:
    inline = cb.Build(
        steps=[cb.BuildStep(name="python", args=["-c", "print('$BRANCH_NAME $REF_NAME $_TARGET')"])]
    )
    trigger = create_trigger(
        builds,
        project,
        connected.name,
        build=inline,
        # Unused: a triggered build is ALLOW_LOOSE.
        substitutions={"_TARGET": "staging", "_UNUSED": "x"},
    )
    build = run_trigger(
        builds,
        trigger.resource_name,
        cb.RepoSource(branch_name="main", substitutions={"_TARGET": "prod"}),
    ).result(timeout=30)
    assert build.steps[0].args == ["-c", "print('main main prod')"]
    assert build.substitutions["COMMIT_SHA"] == git(repo, "rev-parse", "HEAD")
    assert build.substitutions["TRIGGER_BUILD_CONFIG_PATH"] == ""


def test_trigger_refusals(
    builds: cb.CloudBuildClient, connected: v2.Repository, project: str, repo: Path
) -> None:
    missing_file = create_trigger(builds, project, connected.name, filename="ci/none.yaml")
    with pytest.raises(exceptions.FailedPrecondition, match=r"ci/none\.yaml"):
        run_trigger(builds, missing_file.resource_name, cb.RepoSource(branch_name="main"))
    commit(repo, {"broken.yaml": "steps: [\n"})
    broken = create_trigger(builds, project, connected.name, filename="broken.yaml")
    with pytest.raises(exceptions.InvalidArgument, match=r"broken\.yaml"):
        run_trigger(builds, broken.resource_name, cb.RepoSource(branch_name="main"))
    with pytest.raises(exceptions.InvalidArgument, match="not found"):
        run_trigger(builds, broken.resource_name, cb.RepoSource(branch_name="nowhere"))
    with pytest.raises(exceptions.NotFound):
        run_trigger(builds, f"{parent_of(project)}/triggers/{uuid.uuid4()}", cb.RepoSource())
    with pytest.raises(exceptions.NotFound):
        create_trigger(
            builds, project, connected.name.replace("/app", "/missing"), filename="cloudbuild.yaml"
        )
    with pytest.raises(exceptions.InvalidArgument):
        create_trigger(builds, project, connected.name)  # neither filename nor build
    with pytest.raises(exceptions.AlreadyExists):
        builds.create_build_trigger(
            parent=parent_of(project),
            project_id=project,
            trigger=cb.BuildTrigger(
                name=broken.name, filename="cloudbuild.yaml",
                repository_event_config=cb.RepositoryEventConfig(
                    repository=connected.name, push=cb.PushFilter(branch=".*")
                ),
            ),
        )  # fmt: skip
