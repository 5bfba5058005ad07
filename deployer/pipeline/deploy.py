"""The deploy pipeline: preflight -> build -> deploy -> ready -> health -> promote -> verify.

Any failure before promotion leaves traffic where it was (and says so after
checking); a failure during or after promotion moves traffic back to what
served before and verifies it. Stage outputs are saved the moment they are
known, so running the same record again continues where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from deployer.config import Config
from deployer.pipeline import traffic
from deployer.pipeline.events import DeployFinished, Listener
from deployer.pipeline.ports import (
    COMMIT_LABEL,
    DEPLOY_LABEL,
    ENVIRONMENT_LABEL,
    REQUESTER_ANNOTATION,
    BuildRejected,
    CandidateSpec,
    Platform,
    RolloutRefused,
    ServiceState,
    TrafficShare,
)
from deployer.pipeline.preflight import Plan, make_plan, take_deploy_lock
from deployer.pipeline.record import DeployRecord, Outcome, Stage, State
from deployer.pipeline.stages import Deadline, Done, StageFailed, StageRunner
from deployer.store.protocol import Store

# Until traffic moves a deploy can stop cleanly; from promotion on, only a rollback undoes it.
CANCELLABLE = (Stage.PREFLIGHT, Stage.BUILD, Stage.DEPLOY, Stage.READY, Stage.HEALTH)


def candidate_revision_name(service: str, commit: str, deploy_id: str) -> str:
    """A fresh, valid Cloud Run revision name that says what it runs."""
    return f"{service}-{commit[:7]}-{deploy_id.rsplit('-', 1)[-1]}"


@dataclass
class DeployPipeline:
    """Runs deploy records through the stages against a platform and a store."""

    config: Config
    platform: Platform
    store: Store
    listener: Listener

    def run(self, record: DeployRecord, dry_run: bool = False) -> DeployRecord:
        """Run (or continue) `record` to its end; the finished record."""
        runner = StageRunner(record, None if dry_run else self.store, self.listener, CANCELLABLE)
        settings = self.config.environment(record.environment)
        timeouts = settings.timeouts
        record.state = State.RUNNING
        plan_holder: list[Plan] = []
        if self._stage(
            runner,
            Stage.PREFLIGHT,
            timeouts.preflight,
            lambda d: self._preflight(runner, d, plan_holder, dry_run),
        ):
            plan = plan_holder[0]
            if dry_run:
                record.state = State.SUCCEEDED
                self.listener(DeployFinished(record, tuple(plan.lines())))
                return record
            try:
                self._deploy(runner, plan)
            finally:
                self.store.release_lock(record.environment, "deploy", record.id)
        else:
            record.state = _stopped(record)
        if not dry_run:
            runner.save()
        self.listener(DeployFinished(record))
        return record

    def _stage(
        self, runner: StageRunner, stage: Stage, seconds: float, body: Callable[[Deadline], Done]
    ) -> bool:
        return runner.run(stage, seconds, body).outcome == Outcome.SUCCEEDED

    # --- stages ----------------------------------------------------------------------

    def _preflight(
        self, runner: StageRunner, deadline: Deadline, out: list[Plan], dry_run: bool
    ) -> Done:
        record = runner.record
        plan = make_plan(self.config, self.platform, self.store, record, deadline)
        if not dry_run:
            take_deploy_lock(self.store, record.environment, record.id, time.time())
            record.commit = plan.commit
            record.previous_revision = record.previous_revision or plan.previous_revision
            runner.save()
        out.append(plan)
        for warning in plan.warnings:
            runner.progress(warning)
        return Done(
            f"{plan.ref} is {plan.commit[:12]}; {_count(len(plan.secret_env), 'secret')} pinned; "
            f"serving {plan.previous_revision or 'nothing yet'}"
        )

    def _deploy(self, runner: StageRunner, plan: Plan) -> None:
        record = runner.record
        timeouts = plan.settings.timeouts
        if not self._stage(
            runner, Stage.BUILD, timeouts.build, lambda d: self._build(runner, plan, d)
        ):
            record.state = _stopped(record)
            return
        operation: list[str] = []
        if not self._stage(
            runner,
            Stage.DEPLOY,
            timeouts.deploy,
            lambda d: self._candidate(runner, plan, operation),
        ):
            record.state = _stopped(record)
            return
        if not self._stage(
            runner, Stage.READY, timeouts.ready, lambda d: self._ready(runner, plan, operation, d)
        ):
            record.state = _stopped(record)
            self._confirm_untouched(runner, plan)
            return
        if not self._stage(
            runner, Stage.HEALTH, timeouts.health, lambda d: self._health(runner, plan, d)
        ):
            record.state = _stopped(record)
            self._confirm_untouched(runner, plan)
            return
        if self._stage(
            runner, Stage.PROMOTE, timeouts.promote, lambda d: self._promote(runner, plan, d)
        ) and self._stage(
            runner, Stage.VERIFY, timeouts.verify, lambda d: self._verify(runner, plan, d)
        ):
            record.state = State.SUCCEEDED
            return
        self._roll_back(runner, plan)

    def _build(self, runner: StageRunner, plan: Plan, deadline: Deadline) -> Done:
        record = runner.record
        builds = self.platform.builds
        assert record.commit is not None
        if record.image:
            return Done(
                f"reused image {record.image} from build {record.build_id}",
                link=record.build_log_url or "",
            )
        if record.build_id is None:
            try:
                started = builds.start(plan.service, plan.build, record.commit, record.id)
            except BuildRejected as error:
                raise StageFailed("Cloud Build refused the build", str(error)) from None
            record.build_id, record.build_log_url = started.build_id, started.log_url
            runner.save()
            runner.progress(f"build {started.build_id} started", started.log_url)
        try:
            outcome = builds.wait(
                plan.service,
                record.build_id,
                deadline.left(),
                runner.progress,
                runner.cancel_requested,
            )
        except BuildRejected as error:
            raise StageFailed(f"cannot follow build {record.build_id}", str(error)) from None
        link = outcome.log_url or record.build_log_url or ""
        if not outcome.ok:
            step = f" at step {outcome.failing_step}" if outcome.failing_step else ""
            kind = Outcome.TIMED_OUT if outcome.status == "TIMEOUT" else Outcome.FAILED
            if outcome.status == "CANCELLED":
                kind = Outcome.CANCELLED
                who = record.cancelled_by or "a request"
                raise StageFailed(f"build cancelled by {who}", outcome.detail, kind, link)
            raise StageFailed(f"build {outcome.status}{step}", outcome.detail, kind, link)
        if outcome.commit and outcome.commit != record.commit:
            raise StageFailed(
                f"build used commit {outcome.commit[:12]}, expected {record.commit[:12]}", link=link
            )
        record.image = outcome.image
        runner.save()
        return Done(f"image {outcome.image}", link=link)

    def _candidate(self, runner: StageRunner, plan: Plan, operation: list[str]) -> Done:
        record = runner.record
        assert record.commit is not None and record.image is not None
        name = record.candidate_revision or candidate_revision_name(
            plan.service.service, record.commit, record.id
        )
        spec = CandidateSpec(
            revision=name,
            image=record.image,
            env=plan.env,
            secret_env=plan.secret_env,
            settings=plan.settings.run,
            labels={
                DEPLOY_LABEL: record.id,
                COMMIT_LABEL: record.commit,
                ENVIRONMENT_LABEL: record.environment,
            },
            annotations={REQUESTER_ANNOTATION: record.requester, "deployer/ref": plan.ref},
            tag=traffic.CANDIDATE_TAG,
        )
        revisions = self.platform.revisions
        try:
            if plan.current is None:
                operation.append(revisions.create(plan.service, spec))
            else:
                operation.append(revisions.start_candidate(plan.service, spec, plan.current))
        except RolloutRefused as error:
            raise StageFailed(f"Cloud Run refused revision {name}", str(error)) from None
        record.candidate_revision = name
        runner.save()
        access = self._access(runner, plan)
        if plan.current is None:
            return Done(f"service {plan.service.service} created with revision {name}{access}")
        return Done(f"revision {name} created at 0% with tag {traffic.CANDIDATE_TAG}{access}")

    def _access(self, runner: StageRunner, plan: Plan) -> str:
        """Who may invoke the service, as `allow_unauthenticated` says; "; what changed" or ""."""
        public = plan.settings.run.allow_unauthenticated
        # Read first, written only when it differs (right after creation on a first deploy).
        try:
            changed = self.platform.revisions.set_public(plan.service, public)
        except RolloutRefused as error:
            what = "public" if public else "private"
            raise StageFailed(f"could not make {plan.service.service} {what}", str(error)) from None
        if not changed:
            return ""
        line = (
            "made public: allUsers may invoke"
            if public
            else "made private: allUsers may no longer invoke"
        )
        runner.progress(line)
        return f"; {line}"

    def _ready(
        self, runner: StageRunner, plan: Plan, operation: list[str], deadline: Deadline
    ) -> Done:
        record = runner.record
        outcome = self.platform.revisions.wait(plan.service, operation[0], deadline.left())
        if not outcome.ok:
            kind = Outcome.TIMED_OUT if outcome.timed_out else Outcome.FAILED
            raise StageFailed(
                f"revision {record.candidate_revision} is not ready", outcome.message, kind
            )
        url = traffic.tag_url(outcome.state)
        if not url:
            raise StageFailed(f"Cloud Run reported no URL for tag {traffic.CANDIDATE_TAG}")
        record.candidate_url = url
        runner.save()
        return Done(f"revision {record.candidate_revision} ready", link=url)

    def _health(self, runner: StageRunner, plan: Plan, deadline: Deadline) -> Done:
        record = runner.record
        assert record.candidate_url is not None and record.commit is not None
        check = plan.service.health
        outcome = self.platform.health.check(
            record.candidate_url + check.path,
            check,
            record.commit,
            deadline.left(),
            not plan.settings.run.allow_unauthenticated,
            runner.progress,
        )
        if not outcome.ok:
            status = f" (HTTP {outcome.status})" if outcome.status else ""
            detail = outcome.body or outcome.message
            kind = Outcome.TIMED_OUT if deadline.expired() else Outcome.FAILED
            raise StageFailed(f"{check.path} unhealthy{status}: {outcome.message}", detail, kind)
        return Done(f"{check.path} healthy {outcome.attempts}x, reports {record.commit[:12]}")

    def _promote(self, runner: StageRunner, plan: Plan, deadline: Deadline) -> Done:
        record = runner.record
        assert record.candidate_revision is not None and record.commit is not None
        steps = plan.settings.rollout.steps
        if not plan.keep:
            # The first revision already takes all traffic; only its candidate tag goes.
            only = [TrafficShare(record.candidate_revision, 100, "")]
            outcome = self.platform.revisions.route(plan.service, only, deadline.left())
            if not outcome.ok:
                raise StageFailed("could not clear the candidate tag", outcome.message)
            return Done(f"first revision {record.candidate_revision} takes 100%")
        for number, percent in enumerate(steps, start=1):
            split = traffic.split_towards(record.candidate_revision, percent, plan.keep)
            if percent == 100:
                split = [TrafficShare(record.candidate_revision, 100, "")]
            outcome = self.platform.revisions.route(plan.service, split, deadline.left())
            if not outcome.ok:
                raise StageFailed(f"traffic step {percent}% failed", outcome.message)
            runner.progress(
                f"traffic {percent}% on {record.candidate_revision} ({number}/{len(steps)})"
            )
            if percent < 100 and plan.settings.rollout.step_wait > 0:
                self._soak(runner, plan, outcome.state, deadline)
        return Done(f"100% on {record.candidate_revision}")

    def _soak(
        self, runner: StageRunner, plan: Plan, state: ServiceState | None, deadline: Deadline
    ) -> None:
        """Between traffic steps: keep probing the service URL for `step_wait` seconds."""
        assert state is not None and runner.record.commit is not None
        check = plan.service.health.model_copy(update={"consecutive": 1, "version_field": ""})
        end = time.monotonic() + min(plan.settings.rollout.step_wait, deadline.left())
        while time.monotonic() < end:
            outcome = self.platform.health.check(
                state.uri + check.path,
                check,
                runner.record.commit,
                max(0.1, min(check.request_timeout * 2, deadline.left())),
                not plan.settings.run.allow_unauthenticated,
                runner.progress,
            )
            if not outcome.ok:
                raise StageFailed(
                    f"service unhealthy during rollout: {outcome.message}", outcome.body
                )
            time.sleep(max(0.0, min(check.interval, end - time.monotonic())))

    def _verify(self, runner: StageRunner, plan: Plan, deadline: Deadline) -> Done:
        record = runner.record
        state = self.platform.revisions.current(plan.service)
        now = traffic.serving(state)
        if now != [(record.candidate_revision, 100)]:
            found = traffic.describe(now)
            raise StageFailed(f"traffic is {found}, expected 100% on {record.candidate_revision}")
        assert state is not None and record.commit is not None
        outcome = self.platform.health.check(
            state.uri + plan.service.health.path,
            plan.service.health.model_copy(update={"consecutive": 1}),
            record.commit,
            deadline.left(),
            not plan.settings.run.allow_unauthenticated,
            runner.progress,
        )
        if not outcome.ok:
            raise StageFailed(
                f"service URL unhealthy after promotion: {outcome.message}", outcome.body
            )
        return Done(
            f"{state.uri} serves {record.commit[:12]} from {record.candidate_revision}",
            link=state.uri,
        )

    # --- keeping traffic safe --------------------------------------------------------

    def _confirm_untouched(self, runner: StageRunner, plan: Plan) -> None:
        """After a failure before promotion: say (after looking) that traffic did not move."""
        if not plan.keep:
            runner.progress("first deploy: no earlier revision to keep serving")
            return
        now = traffic.serving(self.platform.revisions.current(plan.service))
        if now == traffic.shares(plan.keep):
            runner.progress(f"traffic untouched: {traffic.describe(now)}")
        else:
            self._roll_back(runner, plan)

    def _roll_back(self, runner: StageRunner, plan: Plan) -> None:
        record = runner.record
        if not plan.keep:
            runner.progress("first deploy: no earlier revision to roll back to")
            record.state = State.FAILED
            return
        kept = traffic.shares(plan.keep)

        def body(deadline: Deadline) -> Done:
            outcome = self.platform.revisions.route(plan.service, list(plan.keep), deadline.left())
            now = traffic.serving(self.platform.revisions.current(plan.service))
            if not outcome.ok or now != kept:
                raise StageFailed("rollback did not restore traffic", outcome.message)
            return Done(f"traffic back on {traffic.describe(kept)}")

        rolled = self._stage(runner, Stage.ROLLBACK, plan.settings.timeouts.promote, body)
        record.state = State.ROLLED_BACK if rolled else State.FAILED


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _stopped(record: DeployRecord) -> State:
    """The state of a deploy that ended before promotion: cancelled, or failed."""
    last = record.stages[-1] if record.stages else None
    return State.CANCELLED if last and last.outcome == Outcome.CANCELLED else State.FAILED
