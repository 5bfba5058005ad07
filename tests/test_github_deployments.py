"""GitHub Deployments end to end: deploys through the chat front, the CLI and a resumed
worker, read back from the sandbox's GitHub over HTTP (its call record and PyGithub).

The deployer reads its token from Secret Manager over gRPC, calls the sandbox's GitHub
REST API through PyGithub, and tells the Slack thread when GitHub refused; nothing is
mocked. The last tests check the sandbox's own fidelity to GitHub's documented answers.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import github
import httpx
import pytest
from deployer_sandbox.harness.github_seed import serve_github
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.adapters.github_deployments import GitHubDeploymentsClient
from deployer.adapters.secret_writer import SecretManagerWriter
from deployer.config import ServiceConfig
from deployer.config_github import GitHub, repository_of
from deployer.front.github_deployments import GitHubDeployments
from deployer.pipeline.events import DeployFinished, Event, StageFinished, StageStarted
from deployer.pipeline.record import Outcome, Stage, StageResult, State
from deployer.store import open_store
from tests.engine_world import World, world_fixture  # noqa: F401
from tests.front_requests import send_http, slash_command
from tests.front_world import FrontWorld, in_process, make_front
from tests.git_repos import commit, git, new_repository
from tests.killed_runs import killed_deploy, wait_lease_out
from tests.store_contract import make_record
from tests.test_demo import sandbox_state  # noqa: F401  (a fixture)

TOKEN_SECRET = "github-token"


@pytest.fixture
def on_github(world: World, gcp: Sandbox) -> Iterator[World]:
    """The world's service on GitHub: `[github]` configured, its repository served by the
    sandbox's GitHub, a working token in the world's Secret Manager."""
    repository = f"acme/app-{uuid.uuid4().hex[:8]}"
    world.settings["github"] = {"token_secret": TOKEN_SECRET}
    world.reconfigure(service={"github_repository": repository})
    token = serve_github(gcp, world.config, world.repo)
    world.secret_values["github-token"] = token  # never to be seen in any output
    os.environ["DEPLOYER_GITHUB_API_URL"] = gcp.github_api_url
    yield world


@pytest.fixture
def front(on_github: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    with in_process(make_front(on_github, gcp), repo_root) as ready:
        yield ready


def repository_name(world: World) -> str:
    return str(world.settings["services.backend"]["github_repository"])


def calls(sandbox: Sandbox, repository: str) -> list[dict[str, Any]]:
    """The GitHub REST calls about `repository`, as `GET /_sandbox/github` lists them."""
    answer = httpx.get(f"{sandbox.http.url}/_sandbox/github", timeout=10)
    answer.raise_for_status()
    prefix = f"/repos/{repository}/"
    return [call for call in answer.json() if call["path"].startswith(prefix)]


def statuses_posted(sandbox: Sandbox, repository: str) -> list[dict[str, Any]]:
    """The bodies of the deployment statuses GitHub took, in the order it took them."""
    return [
        call["body"]
        for call in calls(sandbox, repository)
        if call["method"] == "POST" and call["path"].endswith("/statuses") and call["status"] == 201
    ]


def pygithub(sandbox: Sandbox, world: World) -> github.Repository.Repository:
    """The repository through PyGithub, as a person would look at it."""
    token = world.secret_values["github-token"]
    client = github.Github(
        auth=github.Auth.Token(token), base_url=sandbox.github_api_url, retry=None, lazy=True
    )
    return client.get_repo(repository_name(world))


def thread_permalink(front: FrontWorld, deploy_id: str) -> str:
    box = front.world.store().outbox_read(deploy_id)
    assert box is not None
    return str(json.loads(box.body)["permalink"])


def test_a_deploy_posts_queued_in_progress_success_with_the_service_and_thread_links(
    front: FrontWorld, gcp: Sandbox
) -> None:
    world = front.world
    repository = repository_name(world)
    world.commit("ship it")

    front.command("prod main")
    done = front.finished(front.newest().id)
    assert done.state == State.SUCCEEDED, done.error

    [create] = [c for c in calls(gcp, repository) if c["path"].endswith("/deployments")]
    assert create["method"] == "POST" and create["status"] == 201
    # Exactly the commit built, and GitHub's auto-merge and status checks turned off.
    assert create["body"]["ref"] == done.commit
    assert create["body"]["environment"] == "prod"
    assert create["body"]["auto_merge"] is False
    assert create["body"]["required_contexts"] == []
    assert create["body"]["payload"] == {"deploy_id": done.id, "ref": "main"}

    posted = statuses_posted(gcp, repository)
    assert [status["state"] for status in posted] == ["queued", "in_progress", "success"]
    success = posted[-1]
    assert success["environment_url"] == world.service().uri
    assert success["log_url"] == thread_permalink(front, done.id)
    assert all(s.get("log_url", success["log_url"]) == success["log_url"] for s in posted)

    # As GitHub shows it: one deployment of the commit to prod, its statuses newest first.
    [deployment] = list(pygithub(gcp, world).get_deployments())
    assert deployment.sha == done.commit and deployment.environment == "prod"
    shown = [(s.state, s.environment_url) for s in deployment.get_statuses()]
    assert shown[0] == ("success", world.service().uri)
    assert [state for state, _ in shown] == ["success", "in_progress", "queued"]
    assert "GitHub deployment status not posted" not in front.thread_text()


def test_a_failed_build_ends_the_deployment_in_failure(
    on_github: World, gcp: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    world = on_github
    world.commit("does not build")
    gcp.faults.arm("build_fail", step="build", message="npm ERR! missing script: build")

    code, out, _ = world.cli(capsys, "deploy", "prod")
    assert code == 1
    assert "GitHub deployment status not posted" not in out
    posted = statuses_posted(gcp, repository_name(world))
    assert [status["state"] for status in posted] == ["queued", "in_progress", "failure"]
    assert posted[-1]["description"].startswith("failed")


def test_a_deploy_that_fails_preflight_creates_no_deployment(
    on_github: World, gcp: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = on_github.cli(capsys, "deploy", "prod", "no-such-branch")
    assert code == 1
    code, _, _ = on_github.cli(capsys, "deploy", "prod", "--dry-run")
    assert code == 0
    assert calls(gcp, repository_name(on_github)) == []


def test_a_bad_token_is_refused_the_deploy_succeeds_and_the_thread_says_so_once(
    front: FrontWorld, gcp: Sandbox
) -> None:
    world = front.world
    repository = repository_name(world)
    bad = "ghp_" + secrets.token_hex(18)
    world.secret_values["github-token-bad"] = bad
    SecretManagerWriter(world.secret_manager).add_version(world.project, TOKEN_SECRET, bad.encode())

    front.command("prod main")
    done = front.finished(front.newest().id)
    assert done.state == State.SUCCEEDED, done.error

    refused = calls(gcp, repository)
    assert refused and all(call["status"] == 401 for call in refused)
    assert refused[0]["method"] == "POST" and refused[0]["path"].endswith("/deployments")
    assert len(refused) <= 3  # one try per status (queued, in_progress, success), not per stage
    text = front.thread_text()
    assert text.count("GitHub deployment status not posted: 401 Bad credentials") == 1
    everything = json.dumps(front.messages()) + json.dumps(refused)
    assert bad not in everything and world.secret_values["github-token"] not in everything


def test_a_resumed_deploy_sends_each_status_once_in_order(
    on_github: World, gcp: Sandbox, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = on_github
    repository = repository_name(world)
    world.commit("the first run dies while it builds")
    killed = killed_deploy(world, "build.running", repo_root)
    states = [status["state"] for status in statuses_posted(gcp, repository)]
    assert states == ["queued", "in_progress"]
    wait_lease_out(world)

    code, _, _ = world.cli(capsys, "worker", killed.id)  # a worker takes the deploy over
    assert code == 0
    done = world.store().get(killed.id)
    assert done is not None and done.state == State.SUCCEEDED, done
    creates = [c for c in calls(gcp, repository) if c["path"].endswith("/deployments")]
    assert len(creates) == 1
    posted = statuses_posted(gcp, repository)
    assert [status["state"] for status in posted] == ["queued", "in_progress", "success"]


# --- the sandbox's GitHub answers as GitHub documents -------------------------------------


@pytest.fixture
def github_repo(gcp: Sandbox, tmp_path: Path) -> tuple[github.Repository.Repository, Path]:
    """A repository on the sandbox's GitHub: `main` two commits ahead of `topic`, which
    merges cleanly; PyGithub with a working token."""
    path = tmp_path / "repo"
    new_repository(path, {"README.md": "hello\n"})
    git(path, "branch", "topic")
    commit(path, {"a.txt": "one\n"}, "main moves on")
    commit(path, {"b.txt": "two\n"}, "and on")
    name = f"acme/fidelity-{uuid.uuid4().hex[:8]}"
    gcp.http.github.register(name, path)
    token = gcp.http.github.issue_token()
    client = github.Github(
        auth=github.Auth.Token(token), base_url=gcp.github_api_url, retry=None, lazy=True
    )
    return client.get_repo(name), path


def test_a_ref_behind_the_default_branch_conflicts_under_github_defaults(
    github_repo: tuple[github.Repository.Repository, Path],
) -> None:
    repo, path = github_repo
    behind = git(path, "rev-parse", "topic")
    # A commit (or a tag) cannot take the merge auto_merge asks for: 409.
    with pytest.raises(github.GithubException) as refused:
        repo.create_deployment(behind, environment="prod")
    assert refused.value.status == 409
    assert refused.value.data["message"] == f"Conflict merging main into {behind}."
    # A branch that merges cleanly: GitHub merges and answers 202, creating no deployment.
    merged = repo.create_deployment("topic", environment="prod")
    assert merged.raw_data == {"message": "Auto-merged main into topic on deployment."}
    assert list(repo.get_deployments()) == []
    # What the deployer sends: a deployment of exactly that commit.
    created = repo.create_deployment(
        behind, environment="prod", auto_merge=False, required_contexts=[]
    )
    assert created.sha == behind and created.environment == "prod"


def test_failing_commit_statuses_block_a_deployment_unless_no_context_is_required(
    github_repo: tuple[github.Repository.Repository, Path],
) -> None:
    repo, path = github_repo
    head = git(path, "rev-parse", "main")
    repo.get_commit(head).create_status("failure", context="ci/tests")
    with pytest.raises(github.GithubException) as refused:
        repo.create_deployment("main", environment="prod")
    assert refused.value.status == 409
    assert refused.value.data["message"] == "Conflict: Commit status checks failed for main."
    created = repo.create_deployment("main", environment="prod", required_contexts=[])
    assert created.sha == head


def test_bad_credentials_and_bad_bodies_are_answered_as_github_does(
    gcp: Sandbox, github_repo: tuple[github.Repository.Repository, Path]
) -> None:
    repo, _ = github_repo
    url = f"{gcp.github_api_url}/repos/{repo.full_name}/deployments"
    anonymous = httpx.post(url, json={"ref": "main"}, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["message"] == "Requires authentication"
    wrong = httpx.post(
        url, json={"ref": "main"}, headers={"Authorization": "token ghp_nope"}, timeout=10
    )
    assert wrong.status_code == 401 and wrong.json()["message"] == "Bad credentials"
    with pytest.raises(github.GithubException) as unknown:
        repo.create_deployment("no-such-ref")
    assert unknown.value.status == 422
    assert unknown.value.data["message"] == "No ref found for: no-such-ref"
    deployment = repo.create_deployment("main", auto_merge=False, required_contexts=[])
    with pytest.raises(github.GithubException) as bad_state:
        deployment.create_status("done")
    assert bad_state.value.status == 422
    recorded = httpx.get(f"{gcp.http.url}/_sandbox/github", timeout=10).json()
    assert "ghp_nope" not in json.dumps(recorded)
    assert [c["status"] for c in recorded if c["path"] == f"/repos/{repo.full_name}/deployments"][
        :2
    ] == [401, 401]


def test_github_out_of_reach_is_told_once_and_the_deploy_goes_on(
    on_github: World, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as closed:  # a port nobody listens on: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    os.environ["DEPLOYER_GITHUB_API_URL"] = f"http://127.0.0.1:{port}/github"
    on_github.commit("while GitHub is down")

    started = time.monotonic()
    code, out, _ = on_github.cli(capsys, "deploy", "prod")
    assert code == 0, out
    assert out.count("GitHub deployment status not posted: GitHub unreachable") == 1
    assert time.monotonic() - started < 60


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("git_url", "expected"),
    [
        ("https://github.com/acme/content-api.git", "acme/content-api"),
        ("https://github.com/acme/content-api", "acme/content-api"),
        ("git@github.com:acme/content-api.git", "acme/content-api"),
        ("ssh://git@github.com/acme/content-api.git", "acme/content-api"),
        ("https://gitlab.com/acme/content-api.git", None),
        ("/srv/git/content-api", None),
    ],
)
def test_the_repository_is_derived_from_a_github_source(git_url: str, expected: str | None) -> None:
    service = ServiceConfig.model_validate(
        {
            "project": "demo-project",
            "region": "europe-west1",
            "service": "backend",
            "image": "europe-west1-docker.pkg.dev/demo-project/deployer/backend",
            "source": {"git": git_url},
        }
    )
    assert repository_of(service) == expected
    named = service.model_copy(update={"github_repository": "acme/other"})
    assert repository_of(named) == "acme/other"


def test_the_token_secret_is_short_in_the_services_project_or_a_full_name() -> None:
    short = GitHub.model_validate({"token_secret": "github-token:3"})
    assert short.token_secret.name("svc-project") == (
        "projects/svc-project/secrets/github-token/versions/3"
    )
    full = GitHub.model_validate({"token_secret": "projects/ops/secrets/gh/versions/latest"})
    assert full.token_secret.name("svc-project") == "projects/ops/secrets/gh/versions/latest"
    assert short.api_url == "https://api.github.com"
    os.environ["DEPLOYER_GITHUB_API_URL"] = "http://127.0.0.1:9/github/"
    assert short.effective_api_url() == "http://127.0.0.1:9/github"
    with pytest.raises(ValueError, match="not a secret reference"):
        GitHub.model_validate({"token_secret": "projects/ops/secrets"})


def test_the_demo_sandbox_mirrors_a_chat_deploy_into_github(
    sandbox_state: Any,  # noqa: F811  (the fixture, imported)
) -> None:
    """`deployer sandbox` as a user runs it: a signed `/deploy staging` goes to the worker
    job, which reads the token from Secret Manager and tells the sandbox's GitHub. (The
    demo's prod waits for an approver; staging deploys straight through.)"""
    state, demo = sandbox_state, sandbox_state["demo"]
    assert state["github_api"].endswith("/github")
    command = slash_command(
        state["slack_signing_secret"],
        "staging",
        user=demo["slack_user"],
        channel=demo["slack_channel"],
    )
    assert send_http(state["webhook"], command).status == 200
    deadline = time.monotonic() + 120
    prefix = f"/repos/{demo['github_repository']}/"
    while True:
        recorded = httpx.get(f"{state['control']}github", timeout=10).json()
        mine = [c for c in recorded if c["path"].startswith(prefix)]
        states = [c["body"]["state"] for c in mine if c["path"].endswith("/statuses")]
        if states and states[-1] in ("success", "failure", "error"):
            break
        assert time.monotonic() < deadline, f"no final status within 120 s: {recorded}"
        time.sleep(0.5)
    assert [c["status"] for c in mine] == [201, 201, 201, 201]
    assert mine[0]["body"]["ref"] == demo["commit"] and mine[0]["body"]["environment"] == "staging"
    assert states == ["queued", "in_progress", "success"]


@pytest.fixture(params=["sqlite", "firestore"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    os.environ["FIRESTORE_EMULATOR_HOST"] = request.getfixturevalue("firestore_emulator")
    return f"firestore://deployer-tests/t-{uuid.uuid4().hex[:12]}"


def test_runs_of_one_deploy_share_its_deployment_through_the_store(
    gcp: Sandbox, github_repo: tuple[github.Repository.Repository, Path], any_store_url: str
) -> None:
    """Two runs of one deploy (a worker that died, the one that took over) in two
    processes' worth of objects: one deployment, each status once, in order; the state
    kept is no work for the outbox."""
    repo, path = github_repo
    head = git(path, "rev-parse", "main")
    record = make_record()
    record.ref, record.commit, record.state = "main", head, State.RUNNING
    record.stages.append(StageResult(Stage.PREFLIGHT, Outcome.SUCCEEDED, time.time(), 0.1, "ok"))
    token = gcp.http.github.issue_token()
    told: list[Event] = []

    def run() -> GitHubDeployments:
        return GitHubDeployments(
            open_store(any_store_url),
            repo.full_name,
            lambda: GitHubDeploymentsClient(token, gcp.github_api_url),
            told.append,
            lambda _: "https://sandbox.slack.com/archives/C1/p1",
        )

    first = run()
    first(StageFinished(record, record.stages[0]))
    first(StageStarted(record, Stage.BUILD))
    second = run()  # the first died; this one resumes from preflight
    second(StageFinished(record, record.stages[0]))
    second(StageStarted(record, Stage.BUILD))
    record.state, record.service_url = State.SUCCEEDED, "http://127.0.0.1:9"
    second(DeployFinished(record))
    second(DeployFinished(record))

    [deployment] = list(repo.get_deployments())
    assert deployment.sha == head
    assert [s.state for s in deployment.get_statuses()] == ["success", "in_progress", "queued"]
    assert told == []
    store = open_store(any_store_url)
    assert store.outbox_due(time.time() + 3600, 100) == []
    kept = store.outbox_read(f"github-deployment:{record.id}")
    assert kept is not None and json.loads(kept.body)["deployment_id"] == deployment.id
