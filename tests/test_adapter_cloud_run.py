"""The Cloud Run adapter against the sandbox, through the real `run_v2` clients."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from deployer_sandbox.common.images import Image
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from deployer.adapters.cloud_logging import RevisionLogs
from deployer.adapters.cloud_run import CloudRunServices
from deployer.adapters.google_clients import google_client
from deployer.config import RunSettings, ServiceConfig, Source
from deployer.pipeline.ports import CandidateSpec, PinnedSecret, ServiceState, TrafficShare
from tests.conftest import REGION
from tests.run_world import invoker

TIMEOUT = 30.0
MONGODB_URL = "mongodb://db.invalid:27017/app"


@dataclass
class World:
    """One test's own project and service, first revision serving 100 %."""

    gcp: Sandbox
    services: run_v2.ServicesClient
    revisions: run_v2.RevisionsClient
    adapter: CloudRunServices
    config: ServiceConfig
    first: str  # the first revision's short name
    secret: str  # id of the SECRET_KEY secret (versions 1 and 2)
    repo_root: Path

    @property
    def name(self) -> str:
        c = self.config
        return f"projects/{c.project}/locations/{c.region}/services/{c.service}"

    def image(self, commit: str) -> str:
        """Push the sample service as built from `commit`; its reference by digest."""
        repository = f"{REGION}-docker.pkg.dev/{self.config.project}/apps/api"
        image = Image(
            repository=repository,
            digest="sha256:" + uuid.uuid4().hex * 2,
            context=self.repo_root / "service",
            cmd=("python", "-m", "app"),
            env={"APP_COMMIT": commit},
            commit=commit,
        )
        self.gcp.images.push(image, [])
        return image.uri

    def spec(
        self, revision: str, env: Mapping[str, str] | None = None, **settings: Any
    ) -> CandidateSpec:
        return CandidateSpec(
            revision=revision,
            image=self.image("c0ffee"),
            env={"MONGODB_URL": MONGODB_URL} if env is None else env,
            secret_env={"SECRET_KEY": PinnedSecret(self.secret, "2")},
            settings=RunSettings(**settings),
            labels={"deployer-deploy": "d-1", "deployer-commit": "c0ffee"},
            annotations={"deployer/requester": "U123"},
            tag="candidate",
        )

    def keep(self) -> ServiceState:
        state = self.adapter.current(self.config)
        assert state is not None
        return state

    def candidate(self, suffix: str = "cand", **settings: Any) -> str:
        """Start a healthy candidate, wait for it; its short name."""
        revision = f"{self.config.service}-{suffix}"
        operation = self.adapter.start_candidate(
            self.config, self.spec(revision, **settings), self.keep()
        )
        outcome = self.adapter.wait(self.config, operation, TIMEOUT)
        assert outcome.ok, outcome.message
        return revision

    def serving(self) -> list[tuple[str, int]]:
        return sorted((s.revision, s.percent) for s in self.keep().serving())


def health(world: World, url: str) -> dict[str, Any]:
    # The adapter's `create` leaves the IAM policy alone: the service is private, and takes
    # an ID token for its own URL, whichever of its URLs is called.
    response = httpx.get(f"{url}/health", headers=invoker(world.gcp, world.keep().uri), timeout=10)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def world(gcp: Sandbox, repo_root: Path) -> Iterator[World]:
    project = f"adapter-run-{uuid.uuid4().hex[:8]}"
    service_id = f"api-{uuid.uuid4().hex[:6]}"
    secret = "secret-key"
    gcp.secrets.create_secret_with_value(project, secret, b"first-value")
    gcp.secrets.create_secret_with_value(project, secret, b"second-value")
    services = google_client(run_v2.ServicesClient)
    revisions = google_client(run_v2.RevisionsClient)
    config = ServiceConfig(
        project=project,
        region=REGION,
        service=service_id,
        source=Source(git="https://example.invalid/app.git"),
        image=f"{REGION}-docker.pkg.dev/{project}/apps/api",
    )
    w = World(
        gcp,
        services,
        revisions,
        CloudRunServices(services, revisions),
        config,
        "",
        secret,
        repo_root,
    )
    first = f"{service_id}-first"
    template = run_v2.RevisionTemplate(
        revision=first,
        labels={"team": "core"},
        session_affinity=True,  # not managed by the deployer: must survive a rollout
        containers=[
            run_v2.Container(
                image=w.image("0ld0ld"),
                env=[
                    run_v2.EnvVar(name="MONGODB_URL", value=MONGODB_URL),
                    run_v2.EnvVar(name="LEFTOVER", value="from the first revision"),
                    run_v2.EnvVar(
                        name="SECRET_KEY",
                        value_source=run_v2.EnvVarSource(
                            secret_key_ref=run_v2.SecretKeySelector(secret=secret, version="1")
                        ),
                    ),
                ],
            )
        ],
    )
    services.create_service(
        parent=f"projects/{project}/locations/{REGION}",
        service_id=service_id,
        service=run_v2.Service(template=template),
    ).result(timeout=TIMEOUT)
    w.first = first
    yield w
    services.transport.close()
    revisions.transport.close()


def test_current_reports_traffic_with_latest_resolved(world: World) -> None:
    state = world.keep()

    assert state.name == world.name
    assert state.uri.startswith("http")
    assert [(s.revision, s.percent, s.tag) for s in state.traffic] == [(world.first, 100, "")]
    assert state.latest_ready_revision == state.latest_created_revision == world.first
    assert state.etag


def test_current_of_a_missing_service_is_none(gcp: Sandbox) -> None:
    config = ServiceConfig(
        project="adapter-run-missing",
        region=REGION,
        service="nowhere",
        source=Source(git="https://example.invalid/app.git"),
        image=f"{REGION}-docker.pkg.dev/adapter-run-missing/apps/api",
    )

    assert CloudRunServices().current(config) is None


def test_candidate_answers_on_its_tag_url_while_the_service_serves_the_old_revision(
    world: World,
) -> None:
    revision = f"{world.config.service}-cand"
    operation = world.adapter.start_candidate(world.config, world.spec(revision), world.keep())

    outcome = world.adapter.wait(world.config, operation, TIMEOUT)

    assert outcome.ok and not outcome.timed_out, outcome.message
    assert outcome.state is not None
    shares = {(s.revision, s.percent, s.tag) for s in outcome.state.traffic}
    assert shares == {(world.first, 100, ""), (revision, 0, "candidate")}
    tag_url = next(s.uri for s in outcome.state.traffic if s.tag == "candidate")
    assert health(world, tag_url)["version"] == {"commit": "c0ffee", "revision": revision}
    assert health(world, outcome.state.uri)["version"]["revision"] == world.first
    assert outcome.state.latest_created_revision == revision


def test_candidate_env_is_replaced_and_its_secret_pinned_to_a_version(world: World) -> None:
    revision = world.candidate()

    container = world.revisions.get_revision(name=f"{world.name}/revisions/{revision}").containers[
        0
    ]

    assert [(e.name, e.value) for e in container.env if e.value] == [("MONGODB_URL", MONGODB_URL)]
    secrets = [(e.name, e.value_source.secret_key_ref) for e in container.env if not e.value]
    assert secrets == [("SECRET_KEY", run_v2.SecretKeySelector(secret=world.secret, version="2"))]


def test_candidate_carries_the_settings_and_keeps_unmanaged_fields(world: World) -> None:
    revision = world.candidate(
        memory="1Gi", cpu="2", concurrency=40, min_instances=1, max_instances=3, request_timeout=60
    )

    got = world.revisions.get_revision(name=f"{world.name}/revisions/{revision}")

    container = got.containers[0]
    assert dict(container.resources.limits) == {"memory": "1Gi", "cpu": "2"}
    assert [p.container_port for p in container.ports] == [8080]
    assert (got.scaling.min_instance_count, got.scaling.max_instance_count) == (1, 3)
    assert got.max_instance_request_concurrency == 40
    assert got.timeout.total_seconds() == 60  # type: ignore[attr-defined]
    assert got.labels["deployer-commit"] == "c0ffee" and got.labels["team"] == "core"
    assert got.annotations["deployer/requester"] == "U123"
    assert got.session_affinity is True


def test_a_candidate_missing_a_required_variable_fails_with_the_containers_error(
    world: World,
) -> None:
    revision = f"{world.config.service}-broken"
    spec = world.spec(revision, env={})
    operation = world.adapter.start_candidate(world.config, spec, world.keep())

    outcome = world.adapter.wait(world.config, operation, TIMEOUT)

    assert not outcome.ok and not outcome.timed_out
    # Cloud Run's condition, then what the container logged (read from Cloud Logging).
    condition, _, output = outcome.message.partition("\n\nContainer output (last ")
    assert condition.startswith("The user-provided container failed to start and listen")
    assert "Field required" not in condition
    assert "mongodb_url" in output and "Field required" in output
    assert output.endswith("Container called exit(1).")
    assert world.serving() == [(world.first, 100)]
    assert health(world, world.keep().uri)["version"]["revision"] == world.first


def test_a_crashing_revision_fails_and_traffic_stays(world: World) -> None:
    revision = f"{world.config.service}-crash"
    world.gcp.faults.arm("revision_crash", revision=revision)
    operation = world.adapter.start_candidate(world.config, world.spec(revision), world.keep())

    outcome = world.adapter.wait(world.config, operation, TIMEOUT)

    assert not outcome.ok
    assert "container crashed at start-up" in outcome.message
    assert world.serving() == [(world.first, 100)]


def test_a_failed_rollout_is_read_from_the_service_when_its_operation_is_not_known(
    world: World,
) -> None:
    # A resumed run waits on the service alone. After a failed rollout Cloud Run never
    # brings observed_generation up to the generation: reconciling false and a failed
    # Ready condition end the wait, not the timeout.
    revision = f"{world.config.service}-crash-resumed"
    world.gcp.faults.arm("revision_crash", revision=revision)
    world.adapter.start_candidate(world.config, world.spec(revision), world.keep())

    outcome = world.adapter.wait(world.config, "", 60)

    assert not outcome.ok and not outcome.timed_out, outcome.message
    assert "container crashed at start-up" in outcome.message
    assert world.serving() == [(world.first, 100)]
    # And the next rollout after the failed one goes through.
    after = f"{world.config.service}-after-crash"
    operation = world.adapter.start_candidate(world.config, world.spec(after), world.keep())
    assert world.adapter.wait(world.config, operation, TIMEOUT).ok


def test_wait_gives_up_at_its_timeout(world: World) -> None:
    revision = f"{world.config.service}-slow"
    operation = world.adapter.start_candidate(world.config, world.spec(revision), world.keep())

    outcome = world.adapter.wait(world.config, operation, 0.01)

    assert not outcome.ok and outcome.timed_out
    assert "had not finished" in outcome.message
    assert world.adapter.wait(world.config, operation, TIMEOUT).ok


def test_route_moves_traffic_in_steps_and_current_reflects_it(world: World) -> None:
    revision = world.candidate()

    step = world.adapter.route(
        world.config,
        [TrafficShare(revision, 10, "candidate"), TrafficShare(world.first, 90)],
        TIMEOUT,
    )

    assert step.ok, step.message
    assert world.serving() == sorted([(revision, 10), (world.first, 90)])
    full = world.adapter.route(world.config, [TrafficShare(revision, 100)], TIMEOUT)
    assert full.ok, full.message
    assert world.serving() == [(revision, 100)]
    assert [s.tag for s in world.keep().traffic] == [""]
    assert health(world, world.keep().uri)["version"]["revision"] == revision


def test_route_keeps_a_tag_on_a_zero_percent_share(world: World) -> None:
    revision = world.candidate()

    outcome = world.adapter.route(
        world.config,
        [TrafficShare(revision, 100), TrafficShare(world.first, 0, "previous")],
        TIMEOUT,
    )

    assert outcome.ok, outcome.message
    assert outcome.state is not None
    previous = next(s for s in outcome.state.traffic if s.tag == "previous")
    assert (previous.revision, previous.percent) == (world.first, 0)
    assert health(world, previous.uri)["version"]["revision"] == world.first


def test_rollback_routes_back_to_the_old_revision(world: World) -> None:
    revision = world.candidate()
    assert world.adapter.route(world.config, [TrafficShare(revision, 100)], TIMEOUT).ok

    outcome = world.adapter.route(world.config, [TrafficShare(world.first, 100)], TIMEOUT)

    assert outcome.ok, outcome.message
    assert world.serving() == [(world.first, 100)]
    assert health(world, world.keep().uri)["version"]["revision"] == world.first


def test_route_to_a_revision_that_does_not_exist_fails_and_traffic_stays(world: World) -> None:
    outcome = world.adapter.route(world.config, [TrafficShare("api-nope", 100)], TIMEOUT)

    assert not outcome.ok
    assert "api-nope" in outcome.message
    assert world.serving() == [(world.first, 100)]


def test_revisions_are_listed_newest_first_with_readiness(world: World) -> None:
    good = world.candidate()
    broken = f"{world.config.service}-broken"
    operation = world.adapter.start_candidate(
        world.config, world.spec(broken, env={}), world.keep()
    )
    assert not world.adapter.wait(world.config, operation, TIMEOUT).ok

    listed = world.adapter.revisions(world.config, limit=10)

    assert [r.name for r in listed] == [broken, good, world.first]
    assert [r.ready for r in listed] == [False, True, True]
    # A listing carries the condition only; the container's words are one log read away.
    assert "failed to start and listen" in listed[0].message and listed[1].message == ""
    assert any(
        "Field required" in line for line in RevisionLogs().tail(world.config, broken, 20, 10)
    )
    assert listed[1].labels["deployer-deploy"] == "d-1"
    assert listed[1].image.startswith(world.config.image + "@sha256:")
    assert listed[0].created >= listed[1].created >= listed[2].created
    assert [r.name for r in world.adapter.revisions(world.config, limit=1)] == [broken]


class _CompetingWrite(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Lets someone else update the service just before the adapter's first write."""

    def __init__(self, competitor: Callable[[], None]) -> None:
        self.competitor = competitor
        self.updates = 0

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if details.method.endswith("/UpdateService"):
            self.updates += 1
            if self.updates == 1:
                self.competitor()
        return continuation(details, request)


def test_an_etag_conflict_is_resolved_by_reading_again(world: World) -> None:
    revision = world.candidate()

    def someone_else() -> None:
        service = world.services.get_service(name=world.name)
        service.labels["changed-by"] = "someone-else"
        world.services.update_service(service=service).result(timeout=TIMEOUT)

    interceptor = _CompetingWrite(someone_else)
    channel = grpc.intercept_channel(grpc.insecure_channel(world.gcp.grpc_address), interceptor)
    racing = CloudRunServices(
        run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel)), world.revisions
    )

    outcome = racing.route(world.config, [TrafficShare(revision, 100)], TIMEOUT)

    assert outcome.ok, outcome.message
    assert interceptor.updates == 2  # refused for its stale etag, then written again
    assert world.serving() == [(revision, 100)]
    assert world.services.get_service(name=world.name).labels["changed-by"] == "someone-else"


def test_a_new_candidate_takes_the_tag_from_the_previous_one(world: World) -> None:
    earlier = world.candidate("one")

    later = world.candidate("two")

    shares = {(s.revision, s.percent, s.tag) for s in world.keep().traffic}
    assert shares == {(world.first, 100, ""), (later, 0, "candidate")}
    assert earlier not in {s.revision for s in world.keep().traffic}


def test_a_split_that_does_not_add_up_to_100_is_refused_and_nothing_changes(
    world: World,
) -> None:
    etag = world.keep().etag

    outcome = world.adapter.route(world.config, [TrafficShare(world.first, 90)], TIMEOUT)

    assert not outcome.ok
    assert "adds up to 90%" in outcome.message
    assert world.keep().etag == etag
