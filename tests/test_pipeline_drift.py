"""Traffic changes Cloud Run accepts: steps, promote and rollbacks while reads of the service
show a template that differs from what was written (`template_drift`).

Real Cloud Run normalises what it stores, so a template read back can differ from the
one its revision was made from; sent back under the revision's name, it is refused
with 409 "Revision named '…' with different configuration already exists"
(google-cloud-python#11870, #14259). A traffic change must not send the template.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deployer.pipeline.events import Event, StageProgressed
from deployer.pipeline.record import Outcome, Stage, State
from tests.engine_world import World, world_fixture  # noqa: F401


@pytest.fixture
def drifting(world: World) -> Iterator[World]:
    world.sandbox.faults.arm("template_drift")
    yield world
    world.sandbox.faults.clear()


def test_traffic_steps_and_a_rollback_go_through_and_create_no_revision(drifting: World) -> None:
    world = drifting
    old = world.first.candidate_revision
    engine = world.reconfigure(environment={"rollout": {"steps": [10, 50, 100], "step_wait": 0.1}})
    world.commit("under drift")
    before = world.revision_names()

    record, _ = world.deploy(engine=engine)

    assert record.state == State.SUCCEEDED, record.error
    assert world.serving() == [(record.candidate_revision, 100)]
    assert world.revision_names() == {*before, record.candidate_revision or ""}

    rollback = world.engine.rollback("prod", None, "cli:tester", lambda e: None)
    assert rollback.state == State.SUCCEEDED, rollback.error
    assert world.serving() == [(old, 100)]
    assert len(world.revision_names()) == len(before) + 1  # traffic moves made none


def test_the_automatic_rollback_goes_through(drifting: World) -> None:
    world = drifting
    old = world.first.candidate_revision
    engine = world.reconfigure(
        service={"health": {"failures": 1}},
        environment={"rollout": {"steps": [50, 100], "step_wait": 3}},
    )
    world.commit("breaks under load, under drift")

    def break_candidate(event: Event) -> None:
        if isinstance(event, StageProgressed) and event.message.startswith("traffic 50%"):
            world.sandbox.faults.arm("health_500", revision=event.record.candidate_revision)

    record, _ = world.deploy(engine=engine, listener=break_candidate)

    assert record.state == State.ROLLED_BACK, record.error
    rollback = record.stage(Stage.ROLLBACK)
    assert rollback is not None and rollback.outcome == Outcome.SUCCEEDED, rollback.summary
    assert world.serving() == [(old, 100)]
