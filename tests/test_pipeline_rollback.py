"""Traffic steps, failures once traffic moved, and rollbacks: where traffic ends is checked."""

from __future__ import annotations

from deployer.pipeline.events import Event, StageProgressed, StageStarted
from deployer.pipeline.record import Outcome, Stage, State
from tests.engine_world import World, world_fixture  # noqa: F401


def progress_of(events: list[Event], stage: Stage) -> list[str]:
    return [e.message for e in events if isinstance(e, StageProgressed) and e.stage == stage]


def test_traffic_steps_move_traffic_gradually_to_100_percent(world: World) -> None:
    old = world.first.candidate_revision
    engine = world.reconfigure(environment={"rollout": {"steps": [10, 50, 100], "step_wait": 0.3}})
    world.commit("gradual")
    seen_splits: list[list[tuple[str, int]]] = []

    def watch(event: Event) -> None:
        # What Cloud Run serves at each step, read while the rollout runs.
        if isinstance(event, StageProgressed) and event.message.startswith("traffic "):
            seen_splits.append(world.serving())

    record, events = world.deploy(engine=engine, listener=watch)

    assert record.state == State.SUCCEEDED, record.error
    new = record.candidate_revision or ""
    steps = [m for m in progress_of(events.events, Stage.PROMOTE) if m.startswith("traffic ")]
    assert steps == [
        f"traffic 10% on {new}, 90% on {old} (1/3)",
        f"traffic 50% on {new}, 50% on {old} (2/3)",
        f"traffic 100% on {new} (3/3)",
    ]
    assert seen_splits == [
        sorted([(new, 10), (old, 90)]),
        sorted([(new, 50), (old, 50)]),
        [(new, 100)],
    ]
    promote = record.stage(Stage.PROMOTE)
    assert promote is not None and promote.duration >= 0.6  # two soaks of 0.3 s
    assert world.serving() == [(new, 100)]
    assert world.health()["version"]["commit"] == record.commit


def test_a_revision_failing_during_the_steps_is_rolled_back(world: World) -> None:
    old = world.first.candidate_revision
    engine = world.reconfigure(
        service={"health": {"failures": 1}},
        environment={"rollout": {"steps": [50, 100], "step_wait": 3}},
    )
    world.commit("breaks under load")

    def break_candidate(event: Event) -> None:
        # It passed its tagged check; with real traffic it starts answering 500.
        if isinstance(event, StageProgressed) and event.message.startswith("traffic 50%"):
            world.sandbox.faults.arm("health_500", revision=event.record.candidate_revision)

    record, events = world.deploy(engine=engine, listener=break_candidate)

    assert record.state == State.ROLLED_BACK
    promote = record.stage(Stage.PROMOTE)
    assert promote is not None and promote.outcome == Outcome.FAILED
    assert promote.summary.startswith("candidate unhealthy at 50%")
    rollback = record.stage(Stage.ROLLBACK)
    assert rollback is not None and rollback.outcome == Outcome.SUCCEEDED
    assert rollback.summary.startswith(f"traffic back on {old} 100% (was ")
    assert Stage.VERIFY not in [s.stage for s in record.stages]
    assert world.serving() == [(old, 100)]
    assert world.health()["version"]["commit"] == world.first.commit
    assert "failed and was rolled back" in events.text.getvalue()


def test_a_service_unhealthy_after_promotion_is_rolled_back(world: World) -> None:
    old = world.first.candidate_revision
    world.commit("fine at first")

    def break_candidate(event: Event) -> None:
        if isinstance(event, StageStarted) and event.stage == Stage.VERIFY:
            world.sandbox.faults.arm("health_500", revision=event.record.candidate_revision)

    record, _ = world.deploy(listener=break_candidate)

    assert record.state == State.ROLLED_BACK
    verify = record.stage(Stage.VERIFY)
    assert verify is not None and verify.outcome == Outcome.FAILED
    assert "unhealthy after promotion" in verify.summary
    assert world.serving() == [(old, 100)]
    assert world.health()["version"]["commit"] == world.first.commit


def test_rollback_to_the_previous_revision_builds_nothing(world: World) -> None:
    first = world.first.candidate_revision
    world.commit("second")
    second, _ = world.deploy()
    assert second.state == State.SUCCEEDED, second.error
    builds, revisions = world.build_ids(), world.revision_names()
    recorder_text: list[str] = []

    record = world.engine.rollback(
        "prod", None, "cli:tester", lambda e: recorder_text.append(repr(e))
    )
    world.note("\n".join(recorder_text))

    assert record.state == State.SUCCEEDED, record.error
    assert record.kind == "rollback"
    assert (record.previous_revision, record.target_revision) == (second.candidate_revision, first)
    assert record.commit == world.first.commit
    assert [s.stage for s in record.stages] == [Stage.PREFLIGHT, Stage.PROMOTE, Stage.VERIFY]
    assert world.serving() == [(first, 100)]
    assert world.health()["version"] == {"commit": world.first.commit, "revision": first}
    assert world.build_ids() == builds  # no rebuild
    assert world.revision_names() == revisions  # no new revision
    saved = world.store().get(record.id)
    assert saved is not None and saved.state == State.SUCCEEDED


def test_rollback_to_a_named_revision(world: World) -> None:
    first = world.first.candidate_revision or ""
    for message in ("second", "third"):
        world.commit(message)
        done, _ = world.deploy()
        assert done.state == State.SUCCEEDED, done.error
    builds = world.build_ids()

    record = world.engine.rollback("prod", first, "slack:U0TESTER1", lambda e: None)

    assert record.state == State.SUCCEEDED, record.error
    assert record.target_revision == first
    assert world.serving() == [(first, 100)]
    assert world.health()["version"]["commit"] == world.first.commit
    assert world.build_ids() == builds


def test_rollback_to_an_unknown_revision_changes_nothing(world: World) -> None:
    world.commit("second")
    second, _ = world.deploy()
    before = world.serving()

    record = world.engine.rollback("prod", "backend-nope", "cli:tester", lambda e: None)

    assert record.state == State.FAILED
    preflight = record.stage(Stage.PREFLIGHT)
    assert preflight is not None and "revision backend-nope not found" in preflight.summary
    assert world.serving() == before == [(second.candidate_revision, 100)]
    assert world.store().locks("prod") == []


def test_rollback_with_no_earlier_revision_says_so(world: World) -> None:
    record = world.engine.rollback("prod", None, "cli:tester", lambda e: None)

    assert record.state == State.FAILED
    assert "no earlier ready revision" in record.error
    assert world.serving() == [(world.first.candidate_revision, 100)]
