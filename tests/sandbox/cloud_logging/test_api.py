"""Cloud Logging in the sandbox: revisions' and builds' logs, read through the real client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from deployer_sandbox.common.images import Image
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import logging_v2, run_v2
from google.cloud.devtools import cloudbuild_v1 as cb

from deployer.adapters.cloud_logging import BuildLogs, RevisionLogs
from deployer.adapters.google_clients import google_client
from deployer.config import ServiceConfig, Source
from tests.conftest import REGION

LoggingClient = logging_v2.services.logging_service_v2.LoggingServiceV2Client
OP_TIMEOUT = 30
STDERR = "run.googleapis.com%2Fstderr"
SYSTEM = "run.googleapis.com%2Fvarlog%2Fsystem"
NPM_ERROR = "npm ERR! missing script: build\nnpm ERR! A complete log of this run can be found in:"


@dataclass(frozen=True)
class Crashed:
    """A service whose first revision serves and whose second crashed at start-up."""

    project: str
    service: str
    good: str
    broken: str

    def revision_filter(self, revision: str) -> str:
        return (
            'resource.type="cloud_run_revision" '
            f'AND resource.labels.service_name="{self.service}" '
            f'AND resource.labels.revision_name="{revision}"'
        )

    @property
    def parent(self) -> list[str]:
        return [f"projects/{self.project}"]


@pytest.fixture(scope="module")
def client(sandbox: Sandbox) -> Iterator[LoggingClient]:
    made = google_client(LoggingClient, sandbox.grpc_address)
    yield made
    made.transport.close()


@pytest.fixture(scope="module")
def crashed(sandbox: Sandbox) -> Crashed:
    repo_root = Path(__file__).resolve().parents[3]
    project = f"logging-{uuid.uuid4().hex[:8]}"
    service_id = f"api-{uuid.uuid4().hex[:6]}"
    repository = f"{REGION}-docker.pkg.dev/{project}/apps/api"
    digest = "sha256:" + uuid.uuid4().hex * 2
    sandbox.images.push(
        Image(repository, digest, repo_root / "service", ("python", "-m", "app"), {}, "abc"),
        [],
    )
    env = {"MONGODB_URL": "mongodb://db.invalid/app", "SECRET_KEY": "s3cret"}
    good, broken = f"{service_id}-good", f"{service_id}-broken"

    def template(revision: str, values: dict[str, str]) -> run_v2.RevisionTemplate:
        variables = [run_v2.EnvVar(name=k, value=v) for k, v in values.items()]
        container = run_v2.Container(image=f"{repository}@{digest}", env=variables)
        return run_v2.RevisionTemplate(revision=revision, containers=[container])

    services = google_client(run_v2.ServicesClient, sandbox.grpc_address)
    try:
        created = services.create_service(
            parent=f"projects/{project}/locations/{REGION}",
            service_id=service_id,
            service=run_v2.Service(template=template(good, env)),
        ).result(timeout=OP_TIMEOUT)
        created.template = template(broken, {"SECRET_KEY": "s3cret"})  # MONGODB_URL missing
        with pytest.raises(exceptions.FailedPrecondition):
            services.update_service(service=created).result(timeout=OP_TIMEOUT)
    finally:
        services.transport.close()
    return Crashed(project, service_id, good, broken)


@dataclass(frozen=True)
class Failed:
    """A build in the crashed service's project whose third step, `compile`, failed."""

    project: str
    build_id: str

    @property
    def filter(self) -> str:
        return f'resource.type="build" AND resource.labels.build_id="{self.build_id}"'


@pytest.fixture(scope="module")
def failed(sandbox: Sandbox, crashed: Crashed) -> Failed:
    steps = [
        cb.BuildStep(id="prepare", name="alpine"),
        cb.BuildStep(name="busybox"),  # no id: its lines are labelled `Step #1`
        cb.BuildStep(id="compile", name="node"),
        cb.BuildStep(id="never", name="alpine"),
    ]
    builds = google_client(cb.CloudBuildClient, sandbox.grpc_address)
    sandbox.faults.arm("build_fail", step="compile", message=NPM_ERROR)
    try:
        operation = builds.create_build(project_id=crashed.project, build=cb.Build(steps=steps))
        with pytest.raises(exceptions.Unknown):
            operation.result(timeout=OP_TIMEOUT)
        return Failed(crashed.project, operation.metadata.build.id)
    finally:
        sandbox.faults.clear()
        builds.transport.close()


def entries(client: LoggingClient, crashed: Crashed, query: str, **fields: object) -> list:
    """Every entry (all pages) of a ListLogEntries request in the crashed service's project."""
    request = {"resource_names": crashed.parent, "filter": query, **fields}
    return list(client.list_log_entries(request=request))


def test_a_crashed_revisions_output_is_read_as_cloud_run_writes_it(client, crashed) -> None:
    found = entries(client, crashed, crashed.revision_filter(crashed.broken))

    texts = [entry.text_payload for entry in found]
    assert "mongodb_url" in texts and "  Field required [type=missing]" in "\n".join(texts)
    assert "s3cret" not in "\n".join(texts)
    first = found[0]
    assert first.resource.type == "cloud_run_revision"
    assert dict(first.resource.labels) == {
        "project_id": crashed.project,
        "location": REGION,
        "service_name": crashed.service,
        "revision_name": crashed.broken,
        "configuration_name": crashed.service,
    }
    assert first.log_name == f"projects/{crashed.project}/logs/{STDERR}"
    assert first.severity == 0  # DEFAULT: Cloud Run gives plain text lines no severity
    last = found[-1]
    assert (last.text_payload, last.severity) == ("Container called exit(1).", 400)
    assert last.log_name == f"projects/{crashed.project}/logs/{SYSTEM}"
    stamps = [entry.timestamp for entry in found]
    assert stamps == sorted(stamps)  # "timestamp asc" is the default
    assert len({entry.insert_id for entry in found}) == len(found)


def test_entries_belong_to_their_project_service_and_revision(client, crashed) -> None:
    good = entries(client, crashed, crashed.revision_filter(crashed.good))
    assert good and all(e.resource.labels["revision_name"] == crashed.good for e in good)
    assert not any("Field required" in e.text_payload for e in good)

    whole_service = entries(
        client, crashed, f'resource.labels.service_name="{crashed.service}"', page_size=1000
    )
    assert {e.resource.labels["revision_name"] for e in whole_service} == {
        crashed.good,
        crashed.broken,
    }
    elsewhere = client.list_log_entries(
        resource_names=["projects/some-other-project"],
        filter=crashed.revision_filter(crashed.broken),
    )
    assert list(elsewhere) == []
    other_project_label = entries(
        client,
        crashed,
        crashed.revision_filter(crashed.broken) + ' AND resource.labels.project_id="nope"',
    )
    assert other_project_label == []


def test_filters_on_severity_log_name_text_and_time(client, crashed) -> None:
    base = crashed.revision_filter(crashed.broken)

    warnings = entries(client, crashed, base + " AND severity>=WARNING")
    assert [e.text_payload for e in warnings] == ["Container called exit(1)."]
    # White space (a newline, as the Logs URL writes it) joins comparisons like AND.
    stderr = entries(
        client,
        crashed,
        base.replace(" AND ", "\n") + f'\nlogName="projects/{crashed.project}/logs/{STDERR}"',
    )
    assert stderr and all(e.severity == 0 for e in stderr)
    assert len(stderr) == len(entries(client, crashed, base)) - 1
    matching = entries(client, crashed, base + ' AND textPayload:"field required"')
    assert [e.text_payload for e in matching] == ["  Field required [type=missing]"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert entries(client, crashed, base + f' AND timestamp>="{future}"') == []
    assert entries(client, crashed, base + f' AND timestamp<"{future}"')


def test_newest_first_with_timestamp_desc(client, crashed) -> None:
    oldest_first = entries(client, crashed, crashed.revision_filter(crashed.broken))
    newest_first = entries(
        client, crashed, crashed.revision_filter(crashed.broken), order_by="timestamp desc"
    )

    assert [e.insert_id for e in newest_first] == [e.insert_id for e in reversed(oldest_first)]
    assert newest_first[0].text_payload == "Container called exit(1)."


def test_pages_follow_each_other_without_gaps_or_repeats(client, crashed) -> None:
    query = crashed.revision_filter(crashed.broken)
    everything = entries(client, crashed, query, order_by="timestamp desc")

    pager = client.list_log_entries(
        request={
            "resource_names": crashed.parent,
            "filter": query,
            "order_by": "timestamp desc",
            "page_size": 3,
        }
    )
    pages = [list(page.entries) for page in pager.pages]

    assert len(pages) == -(-len(everything) // 3)
    assert all(len(page) == 3 for page in pages[:-1])
    assert [e.insert_id for page in pages for e in page] == [e.insert_id for e in everything]


def test_one_page_answers_with_a_token_bound_to_its_request(client, crashed) -> None:
    query = crashed.revision_filter(crashed.broken)
    first = client.transport.list_log_entries(
        logging_v2.types.ListLogEntriesRequest(
            resource_names=crashed.parent, filter=query, page_size=2
        )
    )
    assert len(first.entries) == 2 and first.next_page_token

    with pytest.raises(exceptions.InvalidArgument, match="another filter"):
        list(
            client.list_log_entries(
                request={
                    "resource_names": crashed.parent,
                    "filter": crashed.revision_filter(crashed.good),
                    "page_token": first.next_page_token,
                }
            )
        )
    with pytest.raises(exceptions.InvalidArgument, match="page_token"):
        entries(client, crashed, query, page_token="not-a-token")


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ('resource.labels.service_name="a" OR resource.labels.service_name="b"', "'OR'"),
        ("NOT severity>=ERROR", "'NOT'"),
        ('(resource.type="cloud_run_revision")', "'('"),
        ('jsonPayload.message:"x"', "field 'jsonPayload.message'"),
        ('resource.labels.service_name:"api"', "only with = and !="),
        ("severity>=LOUD", "unknown severity"),
        ('timestamp>="yesterday"', "RFC 3339"),
        ('resource.type="cloud_run_revision" AND', "ends with AND"),
        ("just some words", "cannot read a comparison"),
    ],
)
def test_unsupported_filters_are_refused_with_a_clear_message(
    client, crashed, query: str, complaint: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="filter") as refused:
        entries(client, crashed, query)

    assert complaint in refused.value.message


def test_bad_request_fields_are_refused(client, crashed) -> None:
    query = crashed.revision_filter(crashed.broken)
    with pytest.raises(exceptions.InvalidArgument, match="resource_names"):
        list(client.list_log_entries(resource_names=[], filter=query))
    with pytest.raises(exceptions.InvalidArgument, match="not supported"):
        list(client.list_log_entries(resource_names=["organizations/1"], filter=query))
    with pytest.raises(exceptions.InvalidArgument, match="order_by"):
        entries(client, crashed, query, order_by="severity desc")
    with pytest.raises(exceptions.InvalidArgument, match="page_size"):
        list(
            client.list_log_entries(
                request={"resource_names": crashed.parent, "filter": query, "page_size": 1001}
            )
        )


# --- build logs ------------------------------------------------------------------------


def test_a_builds_log_is_read_as_cloud_build_writes_it(client, crashed, failed) -> None:
    found = entries(client, crashed, failed.filter)

    note = "(sandbox) builder {} is not run: no containers here; step succeeds"
    assert [(e.labels["build_step"], e.text_payload) for e in found] == [
        ('Step #0 - "prepare"', 'Step #0 - "prepare": ' + note.format("alpine")),
        ("Step #1", "Step #1: " + note.format("busybox")),
        ('Step #2 - "compile"', 'Step #2 - "compile": npm ERR! missing script: build'),
        ('Step #2 - "compile"', 'Step #2 - "compile": ' + NPM_ERROR.splitlines()[1]),
        ("MAIN", 'ERROR: build step 2 "node" failed: step exited with non-zero status: 1'),
    ]
    first = found[0]
    assert first.resource.type == "build"
    assert dict(first.resource.labels) == {
        "project_id": crashed.project,
        "build_id": failed.build_id,
    }
    assert all(e.log_name == f"projects/{crashed.project}/logs/cloudbuild" for e in found)
    assert all(e.severity == 200 for e in found)  # INFO
    stamps = [(entry.timestamp, entry.insert_id) for entry in found]
    assert stamps == sorted(stamps)
    assert len({entry.insert_id for entry in found}) == len(found)


def test_a_builds_entries_filter_by_step_text_and_type(client, crashed, failed) -> None:
    step = entries(
        client, crashed, failed.filter + ' AND labels.build_step="Step #2 - \\"compile\\""'
    )
    assert [e.text_payload.partition(": ")[2] for e in step] == NPM_ERROR.splitlines()
    assert entries(client, crashed, failed.filter + ' AND labels.build_step="Step #1"')
    errors = entries(client, crashed, failed.filter + ' AND textPayload:"npm err!"')
    assert [e.insert_id for e in errors] == [e.insert_id for e in step]
    newest_first = entries(client, crashed, failed.filter, order_by="timestamp desc")
    assert newest_first[0].labels["build_step"] == "MAIN"

    whole_project = entries(client, crashed, f'resource.labels.project_id="{crashed.project}"')
    assert {e.resource.type for e in whole_project} == {"build", "cloud_run_revision"}
    revisions_only = entries(client, crashed, 'resource.type="cloud_run_revision"')
    assert revisions_only and all(not e.labels for e in revisions_only)
    # A label an entry lacks equals no value: revisions have no build_id, builds no service.
    everything = entries(client, crashed, 'resource.labels.build_id!="x"', page_size=1000)
    assert len(everything) == len(whole_project)
    service_builds = f'resource.labels.service_name="{crashed.service}" resource.type="build"'
    assert entries(client, crashed, service_builds) == []
    assert entries(client, crashed, 'resource.labels.build_id="not-a-build"') == []
    elsewhere = client.list_log_entries(resource_names=["projects/else"], filter=failed.filter)
    assert list(elsewhere) == []


def test_build_logs_tail_is_a_steps_newest_lines_without_their_prefix(
    client, crashed, failed
) -> None:
    logs = BuildLogs(client)
    config = _config(crashed)

    step = logs.tail(config, failed.build_id, 20, 10, step='Step #2 - "compile"')
    assert step == NPM_ERROR.splitlines()
    assert logs.tail(config, failed.build_id, 1, 10, step='Step #2 - "compile"') == [
        NPM_ERROR.splitlines()[-1]
    ]
    whole = logs.tail(config, failed.build_id, 2, 10)
    assert whole == [
        'Step #2 - "compile": npm ERR! A complete log of this run can be found in:',
        'ERROR: build step 2 "node" failed: step exited with non-zero status: 1',
    ]
    assert logs.tail(config, failed.build_id, 20, 10, step='Step #3 - "never"') == []
    since = datetime.now(UTC) + timedelta(hours=1)
    assert logs.tail(config, failed.build_id, 20, 10, since=since) == []


# --- the deployer's reader -----------------------------------------------------------


def _config(crashed: Crashed) -> ServiceConfig:
    return ServiceConfig(
        project=crashed.project,
        region=REGION,
        service=crashed.service,
        source=Source(git="https://example.invalid/app.git"),
        image=f"{REGION}-docker.pkg.dev/{crashed.project}/apps/api",
    )


def test_revision_logs_tail_is_the_newest_lines_newest_last(client, crashed) -> None:
    logs = RevisionLogs(client)

    tail = logs.tail(_config(crashed), crashed.broken, lines=4, timeout=10)

    everything = [
        e.text_payload for e in entries(client, crashed, crashed.revision_filter(crashed.broken))
    ]
    assert tail == everything[-4:]
    assert tail[-1] == "Container called exit(1)."
    assert logs.tail(_config(crashed), crashed.broken, lines=0, timeout=10) == []
    since = datetime.now(UTC) + timedelta(hours=1)
    assert logs.tail(_config(crashed), crashed.broken, 20, 10, since=since) == []


def test_revision_logs_answer_nothing_when_the_api_fails(
    crashed, unreachable_logging: LoggingClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert (
        RevisionLogs(unreachable_logging).tail(_config(crashed), crashed.broken, 20, timeout=1)
        == []
    )

    assert "reading the logs of revision" in caplog.text


def test_build_logs_answer_nothing_when_the_api_fails(
    crashed, failed, unreachable_logging: LoggingClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert (
        BuildLogs(unreachable_logging).tail(_config(crashed), failed.build_id, 20, timeout=1) == []
    )

    assert f"reading the logs of build {failed.build_id} failed" in caplog.text
