"""The deploy pipeline: preflight -> build -> deploy -> ready -> health -> promote -> verify.

Any unsuccessful end (a failure, a timeout, a cancel, at any stage, on any run)
leaves the traffic that served when the deploy first began: read back, and put
back and verified when it is not what serves. Stage outputs are saved the
moment they are known, so running the same record again continues
where it stopped: the build is followed, not restarted; an existing candidate
is not created twice; traffic steps resume from what the candidate serves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from deployer.config import Config, ServiceConfig
from deployer.pipeline import failpoints, traffic
from deployer.pipeline.changes import lines as changes_lines
from deployer.pipeline.events import DeployFinished, Listener
from deployer.pipeline.lease import Lease
from deployer.pipeline.ports import (
    COMMIT_LABEL,
    DEPLOY_LABEL,
    ENVIRONMENT_LABEL,
    REQUESTER_ANNOTATION,
    BuildRejected,
    CandidateSpec,
    Platform,
    RolloutRefused,
    TrafficShare,
)
from deployer.pipeline.preflight import Plan, make_plan
from deployer.pipeline.probes import passed
from deployer.pipeline.read_changes import read_changes
from deployer.pipeline.record import DeployRecord, Outcome, Stage, State
from deployer.pipeline.restore import keep_safe, read_back
from deployer.pipeline.reuse import reuse_earlier_build
from deployer.pipeline.rollout import Rollout
from deployer.pipeline.stages import Deadline, Done, StageBody, StageFailed, StageRunner
from deployer.redaction import redact
from deployer.run_names import candidate_revision_name as candidate_revision_name
from deployer.store.protocol import Store

# Until traffic moves a deploy can stop cleanly; from promotion on, only a rollback undoes it.
CANCELLABLE = (Stage.PREFLIGHT, Stage.BUILD, Stage.DEPLOY, Stage.READY, Stage.HEALTH)


@dataclass
class DeployPipeline:
    """Runs deploy records through the stages against a platform and a store."""

    config: Config
    platform: Platform
    store: Store
    listener: Listener

    def run(
        self, record: DeployRecord, dry_run: bool = False, lease: Lease | None = None
    ) -> DeployRecord:
        """Run (or continue) `record` to its end; the finished record.

        The caller holds the environment's deploy lock (`lease`) and releases it.
        """
        store = None if dry_run else self.store
        runner = StageRunner(record, store, self.listener, CANCELLABLE, lease)
        settings = self.config.environment(record.environment)
        service = self.config.target(record.environment)
        record.state = State.RUNNING
        plan = self._preflight(runner, settings.timeouts.preflight, dry_run)
        if dry_run:
            record.state = _stopped(record) if plan is None else State.SUCCEEDED
            lines = () if plan is None else tuple(plan.lines())
            self.listener(DeployFinished(record, lines, dry_run=True))
            return record
        record.state = _stopped(record) if plan is None else self._deploy(runner, plan)
        failpoints.reached(f"{record.state}.done", record.attempt)
        if record.state != State.SUCCEEDED:
            self._stop_build(runner, self.config.service_of(record.environment))
            services = self.platform.services
            record.state = keep_safe(runner, services, service, settings, record.state)
        read_back(self.platform.services, service, record)
        runner.save()
        self.listener(DeployFinished(record))
        return record

    def _stop_build(self, runner: StageRunner, service: ServiceConfig) -> None:
        """A deploy that ended without its image leaves no build running (a lost run's too)."""
        record = runner.record
        if not record.build_id or record.image or record.stage(Stage.BUILD) is not None:
            return  # no build, or it ended (a build stage that ends stops its build)
        try:
            self.platform.builds.cancel(service, record.build_id)
        except BuildRejected as error:
            runner.progress(f"could not stop build {record.build_id}: {error}")
            return
        runner.progress(f"build {record.build_id} stopped")

    def _preflight(self, runner: StageRunner, seconds: float, dry_run: bool) -> Plan | None:
        """The preflight stage; its plan, or None when it did not pass."""
        plan: Plan | None = None

        def body(deadline: Deadline) -> Done:
            nonlocal plan
            plan = make_plan(self.config, self.platform, self.store, runner.record, deadline)
            return self._planned(runner, plan, dry_run)

        passed = runner.run(Stage.PREFLIGHT, seconds, body).outcome == Outcome.SUCCEEDED
        return plan if passed else None

    def _planned(self, runner: StageRunner, plan: Plan, dry_run: bool) -> Done:
        """Keep what preflight learned in the record (a dry run keeps nothing); say it."""
        record = runner.record
        if dry_run:
            record.baseline_traffic = None
        else:
            record.commit = plan.commit
            record.previous_revision = record.previous_revision or plan.previous_revision
            runner.save()
        for warning in plan.warnings:
            runner.progress(warning)
        if plan.keep:
            serving = traffic.describe(traffic.shares(plan.keep))
        elif plan.current is None:
            serving = "nothing yet"
        else:
            serving = f"nothing: {plan.service.service} exists, and this deploy takes it over"
        return Done(
            f"{plan.ref} is {plan.commit[:12]}; {_count(len(plan.secret_env), 'secret')} pinned; "
            f"serving {serving}"
        )

    def _deploy(self, runner: StageRunner, plan: Plan) -> State:
        """The stages after preflight, in order, until one does not succeed; how it ended."""
        timeouts = plan.settings.timeouts
        # Every probe of the candidate quotes its answers redacted of the plan's values.
        platform = replace(self.platform, health=self.platform.health.redacting(plan.known_values))
        candidate = CandidateStages(platform, runner, plan)
        rollout = Rollout(platform, runner, plan)
        stages: list[tuple[Stage, float, StageBody]] = [
            (Stage.BUILD, timeouts.build, candidate.build),
            (Stage.DEPLOY, timeouts.deploy, candidate.create),
            (Stage.READY, timeouts.ready, candidate.ready),
            (Stage.HEALTH, timeouts.health, candidate.health),
            (Stage.PROMOTE, timeouts.promote, rollout.promote),
            (Stage.VERIFY, timeouts.verify, rollout.verify),
        ]
        return State.SUCCEEDED if runner.run_in_order(stages) else _stopped(runner.record)


@dataclass
class CandidateStages:
    """Build, deploy, ready and health stages of one deploy: the candidate, up to the
    moment it may take traffic."""

    platform: Platform
    runner: StageRunner
    plan: Plan
    # The operation that created the candidate, for ready to wait on; "" when an earlier
    # run created it (ready then waits on the service itself).
    operation: str = ""

    def build(self, deadline: Deadline) -> Done:
        runner, plan = self.runner, self.plan
        record = runner.record
        builds = self.platform.builds
        assert record.commit is not None
        if record.image:
            return Done(
                f"reused image {record.image} from build {record.build_id}",
                link=record.build_log_url or "",
            )
        if record.build_id is None:
            done = reuse_earlier_build(runner, plan, builds, self.platform.images, deadline)
            if done is not None:
                return done
            try:
                started = builds.start(plan.builder, plan.build, record.commit, record.id)
            except BuildRejected as error:
                raise StageFailed("Cloud Build refused the build", str(error)) from None
            record.build_id, record.build_log_url = started.build_id, started.log_url
            runner.save()
            runner.progress(f"build {started.build_id} started", started.log_url)
            failpoints.reached("build.submitted", record.attempt)

        def progress(message: str, link: str = "") -> None:
            runner.progress(message, link)
            failpoints.reached("build.running", record.attempt)

        try:
            outcome = builds.wait(
                plan.builder,
                record.build_id,
                deadline.left(),
                progress,
                runner.cancel_requested,
            )
        except BuildRejected as error:
            raise StageFailed(f"cannot follow build {record.build_id}", str(error)) from None
        link = outcome.log_url or record.build_log_url or ""
        if not outcome.ok:
            step = f" at step {outcome.failing_step}" if outcome.failing_step else ""
            kind = Outcome.TIMED_OUT if outcome.status == "TIMEOUT" else Outcome.FAILED
            # The build's output, quoted in the detail, may print what the deploy gives
            # the revision.
            detail = redact(outcome.detail, plan.known_values)
            if outcome.status == "CANCELLED":
                kind = Outcome.CANCELLED
                who = record.cancelled_by or "a request"
                raise StageFailed(f"build cancelled by {who}", detail, kind, link)
            raise StageFailed(f"build {outcome.status}{step}", detail, kind, link)
        if outcome.commit and outcome.commit != record.commit:
            raise StageFailed(
                f"build used commit {outcome.commit[:12]}, expected {record.commit[:12]}", link=link
            )
        record.image = outcome.image
        runner.save()
        return Done(f"image {outcome.image}", link=link)

    def create(self, deadline: Deadline) -> Done:
        """The candidate revision at 0 % with its tag (on a first deploy, the service)."""
        runner, plan = self.runner, self.plan
        record = runner.record
        assert record.commit is not None and record.image is not None
        name = record.candidate_revision or candidate_revision_name(
            plan.service.service, record.commit, record.id
        )
        if record.candidate_revision is None:
            record.candidate_revision = name  # saved before asking: a lost run's is found again
            runner.save()
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
        services = self.platform.services
        if record.candidate_revision and self._exists(record.candidate_revision):
            # A resumed run: the revision was created before the last run was lost.
            return Done(f"revision {name} was created by an earlier run")
        try:
            if plan.current is None:
                self.operation = services.create(plan.service, spec)
            elif not plan.keep:
                # The service serves nothing (its first revision failed). Cloud Run's traffic
                # adds up to 100% and no other revision can hold it: as on a new service, the
                # candidate takes it all, and serves only once it is ready.
                whole = replace(plan.current, traffic=(TrafficShare(name, 100),))
                self.operation = services.start_candidate(plan.service, spec, whole)
            else:
                # Traffic stays pinned to the baseline, whatever serves now.
                keep = replace(plan.current, traffic=plan.baseline)
                self.operation = services.start_candidate(plan.service, spec, keep)
        except RolloutRefused as error:
            raise StageFailed(f"Cloud Run refused revision {name}", str(error)) from None
        failpoints.reached("deploy.created", record.attempt)
        access = self._access()
        if plan.current is None:
            return Done(f"service {plan.service.service} created with revision {name}{access}")
        if not plan.keep:
            return Done(
                f"revision {name} created with tag {traffic.CANDIDATE_TAG}, taking 100% once "
                f"ready: {plan.service.service} served nothing{access}"
            )
        return Done(f"revision {name} created at 0% with tag {traffic.CANDIDATE_TAG}{access}")

    def _exists(self, revision: str) -> bool:
        listed = self.platform.services.revisions(self.plan.service, 50)
        return any(info.name == revision for info in listed)

    def _access(self) -> str:
        """Who may invoke the service, as `allow_unauthenticated` says; "; what changed" or ""."""
        plan = self.plan
        public = plan.settings.run.allow_unauthenticated
        # Read first, written only when it differs (right after creation on a first deploy).
        try:
            changed = self.platform.services.set_public(plan.service, public)
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
        self.runner.progress(line)
        return f"; {line}"

    def ready(self, deadline: Deadline) -> Done:
        runner = self.runner
        record = runner.record
        failpoints.reached("ready.waiting", record.attempt)
        outcome = self.platform.services.wait(self.plan.service, self.operation, deadline.left())
        if not outcome.ok:
            kind = Outcome.TIMED_OUT if outcome.timed_out else Outcome.FAILED
            # The container's last lines, quoted in the message: the adapter hid the values
            # Cloud Run holds; those this deploy read besides (a skipped dotenv line) too.
            detail = redact(outcome.message, self.plan.known_values)
            raise StageFailed(f"revision {record.candidate_revision} is not ready", detail, kind)
        url = traffic.tag_url(outcome.state)
        if not url and traffic.serving(outcome.state) == [(record.candidate_revision, 100)]:
            # A resumed run after the last step: the tag went with it; the service URL
            # reaches the candidate and nothing else.
            url = outcome.state.uri if outcome.state else ""
        if not url:
            raise StageFailed(f"Cloud Run reported no URL for tag {traffic.CANDIDATE_TAG}")
        record.candidate_url = url
        record.service_url = outcome.state.uri if outcome.state else None
        runner.save()
        return Done(f"revision {record.candidate_revision} ready", link=url)

    def health(self, deadline: Deadline) -> Done:
        runner, plan = self.runner, self.plan
        record = runner.record
        assert record.candidate_url is not None and record.commit is not None
        failpoints.reached("health.probing", record.attempt)
        check = plan.service.health
        outcome = self.platform.health.check(
            record.candidate_url + check.path,
            check,
            record.commit,
            deadline.left(),
            traffic.audience(plan.settings.run.allow_unauthenticated, record.service_url or ""),
            runner.progress,
        )
        if not outcome.ok:
            status = f" (HTTP {outcome.status})" if outcome.status else ""
            detail = outcome.body or outcome.message
            kind = Outcome.TIMED_OUT if deadline.expired() else Outcome.FAILED
            raise StageFailed(f"{check.path} unhealthy{status}: {outcome.message}", detail, kind)
        self._what_changes(deadline)
        return Done(passed(check, record.commit))

    def _what_changes(self, deadline: Deadline) -> None:
        """Once the candidate is known healthy and before traffic moves: what it changes
        against what serves, kept in the record (the thread's parent shows it) and said."""
        runner, plan = self.runner, self.plan
        record = runner.record
        if record.changes is not None or record.candidate_revision is None:
            return  # read by an earlier run
        assert record.commit is not None
        found = read_changes(
            self.platform,
            plan.service,
            plan.builder,
            plan.previous_revision,
            record.candidate_revision,
            record.commit,
            deadline.left(),
        )
        if isinstance(found, str):
            runner.progress(found)
            return
        record.changes = found
        runner.save()
        for line in changes_lines(found):
            runner.progress(line)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _stopped(record: DeployRecord) -> State:
    """The state of a deploy that stopped: cancelled, or failed."""
    last = record.stages[-1] if record.stages else None
    return State.CANCELLED if last and last.outcome == Outcome.CANCELLED else State.FAILED
