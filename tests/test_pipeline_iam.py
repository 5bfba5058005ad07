"""`allow_unauthenticated` applied by deploys: the service's IAM policy, read back through the
client, and what its URL answers with and without a token."""

from __future__ import annotations

import threading

import httpx
from google.iam.v1 import iam_policy_pb2, policy_pb2

from deployer.adapters.cloud_run_iam import set_public
from deployer.adapters.health import HttpHealth
from deployer.pipeline.events import StageProgressed
from deployer.pipeline.record import Outcome, Stage, State
from tests.engine_world import Recorder, World, empty_world_fixture, world_fixture  # noqa: F401
from tests.run_world import invoker

INVOKER_ROLE = "roles/run.invoker"
MADE_PUBLIC = "made public: allUsers may invoke"
MADE_PRIVATE = "made private: allUsers may no longer invoke"


def policy(world: World) -> policy_pb2.Policy:
    return world.services.get_iam_policy(
        request=iam_policy_pb2.GetIamPolicyRequest(resource=world.service_name), timeout=30
    )


def bindings(world: World) -> dict[str, list[str]]:
    return {b.role: list(b.members) for b in policy(world).bindings}


def status(url: str, headers: dict[str, str] | None = None) -> int:
    return httpx.get(f"{url}/health", headers=headers or {}, timeout=10).status_code


def deploy_summary(world: World, events: Recorder) -> str:
    finished = [f.result for f in events.stages_finished() if f.result.stage == Stage.DEPLOY]
    assert finished and finished[-1].outcome == Outcome.SUCCEEDED
    return finished[-1].summary


def progress(events: Recorder) -> list[str]:
    return [e.message for e in events.events if isinstance(e, StageProgressed)]


def test_a_first_deploy_with_allow_unauthenticated_makes_the_service_public(
    empty_world: World,
) -> None:
    world = empty_world  # the world's config has allow_unauthenticated = true

    record, events = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    assert bindings(world) == {INVOKER_ROLE: ["allUsers"]}
    assert status(world.service().uri) == 200  # no token needed
    assert deploy_summary(world, events).endswith(f"; {MADE_PUBLIC}")
    assert MADE_PUBLIC in progress(events)


def test_a_first_deploy_without_it_keeps_the_service_private_and_probes_with_a_token(
    empty_world: World,
) -> None:
    world = empty_world
    world.reconfigure(environment={"run": {"allow_unauthenticated": False}})

    record, events = world.deploy()

    # Health, promotion's probes and verify all passed against a private service.
    assert record.state == State.SUCCEEDED, record.error
    assert bindings(world) == {}
    uri = world.service().uri
    assert status(uri) == 403
    assert status(uri, invoker(world.sandbox, uri)) == 200
    assert "made" not in deploy_summary(world, events)
    # `deployer status` probes it the same way.
    [report] = world.engine.status()
    assert report.health is not None and report.health.ok, report.health


def test_switching_allow_unauthenticated_changes_only_the_allusers_binding(world: World) -> None:
    assert bindings(world) == {INVOKER_ROLE: ["allUsers"]}  # the first deploy made it public
    caller = "serviceAccount:caller@p.iam.gserviceaccount.com"
    read = policy(world)
    read.bindings[0].members.append(caller)
    read.bindings.append(policy_pb2.Binding(role="roles/run.viewer", members=["user:a@b.c"]))
    world.services.set_iam_policy(
        request=iam_policy_pb2.SetIamPolicyRequest(resource=world.service_name, policy=read)
    )
    world.reconfigure(environment={"run": {"allow_unauthenticated": False}})
    world.commit("private now")

    record, events = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    assert bindings(world) == {INVOKER_ROLE: [caller], "roles/run.viewer": ["user:a@b.c"]}
    assert status(world.service().uri) == 403
    assert deploy_summary(world, events).endswith(f"; {MADE_PRIVATE}")

    # Nothing to change: the policy is only read.
    etag = policy(world).etag
    record, events = world.deploy()
    assert record.state == State.SUCCEEDED, record.error
    assert policy(world).etag == etag
    assert "made" not in deploy_summary(world, events)

    world.reconfigure(environment={"run": {"allow_unauthenticated": True}})
    record, events = world.deploy()
    assert record.state == State.SUCCEEDED, record.error
    assert bindings(world) == {
        INVOKER_ROLE: ["allUsers", caller],
        "roles/run.viewer": ["user:a@b.c"],
    }
    assert status(world.service().uri) == 200
    assert deploy_summary(world, events).endswith(f"; {MADE_PUBLIC}")


def test_a_concurrent_policy_change_is_retried_once(world: World) -> None:
    world.reconfigure(environment={"run": {"allow_unauthenticated": False}})
    world.sandbox.faults.arm("iam_conflict")

    record, _ = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    assert bindings(world) == {}


def test_no_right_to_set_the_policy_fails_the_deploy_stage_naming_the_permission(
    world: World,
) -> None:
    world.reconfigure(environment={"run": {"allow_unauthenticated": False}})
    world.sandbox.faults.arm("iam_denied")
    serving = world.serving()

    record, _ = world.deploy()

    assert record.state == State.FAILED
    deploy = record.stage(Stage.DEPLOY)
    assert deploy is not None and deploy.outcome == Outcome.FAILED
    assert deploy.summary == "could not make backend private"
    assert "run.services.setIamPolicy" in deploy.detail and "roles/run.admin" in deploy.detail
    assert world.serving() == serving  # traffic untouched
    assert bindings(world) == {INVOKER_ROLE: ["allUsers"]}


def test_a_refused_probe_is_tried_again_until_access_arrives(world: World) -> None:
    # A grant (here: the service made public) takes a while to reach Cloud Run's door;
    # 403s meanwhile are tried again within the timeout, not counted as the revision failing.
    world.reconfigure(environment={"run": {"allow_unauthenticated": False}})
    record, _ = world.deploy()
    assert record.state == State.SUCCEEDED, record.error
    uri = world.service().uri
    check = world.engine.config.services["backend"].health.model_copy(
        update={"failures": 1, "consecutive": 1, "interval": 0.1}
    )
    said: list[str] = []
    grant = threading.Timer(1.0, lambda: set_public(world.services, world.service_name, True, 10))
    grant.start()
    try:
        outcome = HttpHealth().check(
            f"{uri}{check.path}", check, record.commit or "", 20, "", said.append
        )
    finally:
        grant.join()

    assert outcome.ok and outcome.attempts > 1, outcome
    assert any("HTTP 403" in line and "can take minutes" in line for line in said), said


def test_an_organisation_policy_against_allusers_is_explained(world: World) -> None:
    world.reconfigure(environment={"run": {"allow_unauthenticated": False}})
    private, _ = world.deploy()
    assert private.state == State.SUCCEEDED, private.error
    world.sandbox.faults.arm("iam_org_policy")
    engine = world.reconfigure(environment={"run": {"allow_unauthenticated": True}})

    record, _ = world.deploy(engine=engine)

    assert record.state == State.FAILED
    deploy = record.stage(Stage.DEPLOY)
    assert deploy is not None and deploy.outcome == Outcome.FAILED
    assert "permitted customer" in deploy.detail
    assert "iam.allowedPolicyMemberDomains" in deploy.detail and "invoker" in deploy.detail
    assert bindings(world) == {}
