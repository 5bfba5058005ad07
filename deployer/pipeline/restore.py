"""Keeping traffic true: after a deploy ends without success, and whenever it is given up.

Every claim about traffic is made from the service read back, never from what
was asked for. The split to restore is the record's baseline (what served when
the deploy first began), never the traffic of a later, resumed run.

    untouched   traffic serves the baseline: say so, as read back
    restored    anything else: route the baseline, read it back, verify it (stage rollback)
    nothing     the baseline served nothing (a new service, or one whose first revision
                failed): say what serves, as read back; Cloud Run cannot be asked to serve
                nothing, so a candidate that became ready keeps its traffic
    unknown     the deploy never read the service (it failed before)
"""

from __future__ import annotations

from deployer.config import Environment, ServiceConfig
from deployer.pipeline import traffic
from deployer.pipeline.ports import Services, ServiceState
from deployer.pipeline.record import DeployRecord, Outcome, Stage, State
from deployer.pipeline.stages import Deadline, Done, StageFailed, StageRunner


def read_back(services: Services, service: ServiceConfig, record: DeployRecord) -> None:
    """Keep the traffic the service serves now as the record's final traffic (best effort)."""
    try:
        state = services.current(service)
    except Exception:  # a report must not fail the deploy; the traffic stays unknown
        record.final_traffic = None
        return
    record.final_traffic = traffic.to_shares(state.serving()) if state else []


def keep_safe(
    runner: StageRunner,
    services: Services,
    service: ServiceConfig,
    settings: Environment,
    ended: State,
) -> State:
    """After an unsuccessful end: the baseline serves (read back), or is put back; the state."""
    record = runner.record
    if record.baseline_traffic is None:
        runner.progress("the service was never read: nothing was changed")
        return ended
    baseline = traffic.from_shares(record.baseline_traffic)
    kept = traffic.shares(baseline)
    if not kept:
        served_nothing(runner, services, service)
        return ended
    state = services.current(service)
    now = traffic.serving(state)
    if now == kept:
        runner.progress(f"traffic untouched: {traffic.describe(now)}")
        return ended
    restored = restore_baseline(runner, services, service, settings.timeouts.promote, state)
    return State.ROLLED_BACK if restored else State.FAILED


def served_nothing(runner: StageRunner, services: Services, service: ServiceConfig) -> None:
    """Say, as read back, what a service that served nothing before the deploy serves now."""
    try:
        state = services.current(service)
    except Exception as error:  # a report must not fail the deploy
        runner.progress(f"nothing served before this deploy; could not read it back: {error}")
        return
    if state is None:
        runner.progress(f"service {service.service} does not exist, as before")
        return
    now = traffic.serving(state)
    if not now:
        runner.progress(f"traffic untouched: {service.service} serves nothing, as before")
        return
    runner.progress(
        f"{service.service} serves {traffic.describe(now)}: nothing served before this "
        "deploy, and Cloud Run cannot be asked to serve nothing"
    )


def restore_baseline(
    runner: StageRunner,
    services: Services,
    service: ServiceConfig,
    seconds: float,
    before: ServiceState | None = None,
) -> bool:
    """Route the record's baseline and verify it by reading it back, as stage `rollback`."""
    record = runner.record
    assert record.baseline_traffic is not None
    baseline = traffic.from_shares(record.baseline_traffic)
    kept = traffic.shares(baseline)
    found = traffic.describe(traffic.serving(before)) if before is not None else "unknown"

    def body(deadline: Deadline) -> Done:
        outcome = services.route(service, list(baseline), deadline.left())
        now = traffic.serving(services.current(service))
        if not outcome.ok or now != kept:
            raise StageFailed(
                f"could not restore {traffic.describe(kept)}: serving {traffic.describe(now)}",
                outcome.message,
            )
        return Done(f"traffic back on {traffic.describe(now)} (was {found})")

    return runner.run(Stage.ROLLBACK, seconds, body).outcome == Outcome.SUCCEEDED
