"""Paging in every list method of the sandbox's Google APIs, through the real clients over gRPC.

As on Google's APIs, a page token is opaque: a token the sandbox did not issue is
INVALID_ARGUMENT in every list, never a silent restart from the first page.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import logging_v2, run_v2, secretmanager_v1
from google.cloud.devtools import cloudbuild_v1 as cb
from google.cloud.devtools import cloudbuild_v2 as v2

from deployer.adapters.google_clients import google_client
from tests.conftest import REGION

LoggingClient = logging_v2.services.logging_service_v2.LoggingServiceV2Client
NEVER_PUSHED = f"{REGION}-docker.pkg.dev/paging/none/app:latest"
OP_TIMEOUT = 30


def _base64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


BAD_TOKENS = {
    "not-base64": "not-a-token",
    "not-url-safe": "%%",
    "a-bare-offset": "5",  # what Cloud Run and Cloud Build v1 read before
    "offset-text": _base64(b"offset:2"),  # what Secret Manager read before
    "other-json": _base64(json.dumps({"page": 2}).encode()),
}


@dataclass
class World:
    """One client of each API and a project holding one of each parent a list needs."""

    project: str
    services: run_v2.ServicesClient
    revisions: run_v2.RevisionsClient
    jobs: run_v2.JobsClient
    executions: run_v2.ExecutionsClient
    secrets: secretmanager_v1.SecretManagerServiceClient
    builds: cb.CloudBuildClient
    repositories: v2.RepositoryManagerClient
    logs: LoggingClient

    @property
    def location(self) -> str:
        return f"projects/{self.project}/locations/{REGION}"

    def service(self, service_id: str) -> str:
        """A service whose image was never pushed: it exists at once, its revision fails."""
        container = run_v2.Container(image=NEVER_PUSHED)
        self.services.create_service(
            parent=self.location,
            service_id=service_id,
            service=run_v2.Service(template=run_v2.RevisionTemplate(containers=[container])),
        )
        return f"{self.location}/services/{service_id}"

    def job(self, job_id: str) -> str:
        container = run_v2.Container(image=NEVER_PUSHED, command=["true"])
        job = run_v2.Job(
            template=run_v2.ExecutionTemplate(template=run_v2.TaskTemplate(containers=[container]))
        )
        self.jobs.create_job(parent=self.location, job=job, job_id=job_id).result(OP_TIMEOUT)
        return f"{self.location}/jobs/{job_id}"

    def secret(self, secret_id: str) -> str:
        created = self.secrets.create_secret(
            parent=f"projects/{self.project}",
            secret_id=secret_id,
            secret={"replication": {"automatic": {}}},
        )
        return str(created.name)

    def connection(self, connection_id: str) -> str:
        self.repositories.create_connection(
            parent=self.location,
            connection_id=connection_id,
            connection=v2.Connection(github_config=v2.GitHubConfig(app_installation_id=1)),
        ).result(OP_TIMEOUT)
        return f"{self.location}/connections/{connection_id}"


@contextlib.contextmanager
def open_world(sandbox: Sandbox) -> Iterator[World]:
    """A world in a project of its own: the sandbox is shared by the session."""

    def client(kind: type[Any]) -> Any:
        return google_client(kind, sandbox.grpc_address)

    made = World(
        project=f"p-{uuid.uuid4().hex[:10]}",
        services=client(run_v2.ServicesClient),
        revisions=client(run_v2.RevisionsClient),
        jobs=client(run_v2.JobsClient),
        executions=client(run_v2.ExecutionsClient),
        secrets=client(secretmanager_v1.SecretManagerServiceClient),
        builds=client(cb.CloudBuildClient),
        repositories=client(v2.RepositoryManagerClient),
        logs=client(LoggingClient),
    )
    try:
        yield made
    finally:
        for each in vars(made).values():
            if not isinstance(each, str):
                each.transport.close()


@pytest.fixture(scope="module")
def world(sandbox: Sandbox) -> Iterator[World]:
    with open_world(sandbox) as made:
        yield made


@pytest.fixture(scope="module")
def parents(world: World) -> dict[str, str]:
    """The parent of each list that needs one to exist."""
    return {
        "service": world.service("paged"),
        "secret": world.secret("paged"),
        "connection": world.connection("paged"),
    }


# Each list method, called with `token` as its first request's page token.
LISTS: dict[str, Callable[[World, dict[str, str], str], object]] = {
    "ListServices": lambda w, p, token: w.services.list_services(
        request={"parent": w.location, "page_token": token}
    ),
    "ListRevisions": lambda w, p, token: w.revisions.list_revisions(
        request={"parent": p["service"], "page_token": token}
    ),
    "ListJobs": lambda w, p, token: w.jobs.list_jobs(
        request={"parent": w.location, "page_token": token}
    ),
    "ListExecutions": lambda w, p, token: w.executions.list_executions(
        request={"parent": f"{w.location}/jobs/-", "page_token": token}
    ),
    "ListSecrets": lambda w, p, token: w.secrets.list_secrets(
        request={"parent": f"projects/{w.project}", "page_token": token}
    ),
    "ListSecretVersions": lambda w, p, token: w.secrets.list_secret_versions(
        request={"parent": p["secret"], "page_token": token}
    ),
    "ListBuilds": lambda w, p, token: w.builds.list_builds(
        request={"project_id": w.project, "page_token": token}
    ),
    "ListBuildTriggers": lambda w, p, token: w.builds.list_build_triggers(
        request={"parent": w.location, "project_id": w.project, "page_token": token}
    ),
    "ListConnections": lambda w, p, token: w.repositories.list_connections(
        request={"parent": w.location, "page_token": token}
    ),
    "ListRepositories": lambda w, p, token: w.repositories.list_repositories(
        request={"parent": p["connection"], "page_token": token}
    ),
    "ListLogEntries": lambda w, p, token: w.logs.list_log_entries(
        request={"resource_names": [f"projects/{w.project}"], "page_token": token}
    ),
}


@pytest.mark.parametrize("token", list(BAD_TOKENS.values()), ids=list(BAD_TOKENS))
@pytest.mark.parametrize("method", list(LISTS))
def test_a_token_the_sandbox_did_not_issue_is_invalid(
    world: World, parents: dict[str, str], method: str, token: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        LISTS[method](world, parents, token)


# Lists whose items are cheap to make: how to make one, the response's field, how to list.
MADE: dict[str, tuple[Callable[[World, str], str], str, Callable[[World, int], Any]]] = {
    "ListServices": (
        World.service,
        "services",
        lambda w, size: w.services.list_services(request={"parent": w.location, "page_size": size}),
    ),
    "ListJobs": (
        World.job,
        "jobs",
        lambda w, size: w.jobs.list_jobs(request={"parent": w.location, "page_size": size}),
    ),
    "ListSecrets": (
        World.secret,
        "secrets",
        lambda w, size: w.secrets.list_secrets(
            request={"parent": f"projects/{w.project}", "page_size": size}
        ),
    ),
    "ListConnections": (
        World.connection,
        "connections",
        lambda w, size: w.repositories.list_connections(
            request={"parent": w.location, "page_size": size}
        ),
    ),
}


@pytest.mark.parametrize("method", list(MADE))
def test_pages_list_each_item_once(sandbox: Sandbox, method: str) -> None:
    make, field, listed = MADE[method]
    with open_world(sandbox) as world:
        names = sorted(make(world, f"item-{index}") for index in range(5))

        pages = [[item.name for item in getattr(page, field)] for page in listed(world, 2).pages]

    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(name for page in pages for name in page) == names
