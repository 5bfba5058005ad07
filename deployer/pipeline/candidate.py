"""The candidate's stages of a deploy: build, deploy, ready and health, up to the moment
it may take traffic (`deploy.DeployPipeline` runs them in order)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from deployer.pipeline import failpoints, traffic
from deployer.pipeline.changes import lines as changes_lines
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
from deployer.pipeline.preflight import Plan
from deployer.pipeline.probes import passed
from deployer.pipeline.promotion import digest_of
from deployer.pipeline.read_changes import read_changes
from deployer.pipeline.record import DeployRecord, Outcome, Stage
from deployer.pipeline.reuse import reuse_earlier_build
from deployer.pipeline.stages import Deadline, Done, StageFailed, StageRunner
from deployer.redaction import redact
from deployer.run_names import candidate_revision_name


def deploy_labels(record: DeployRecord) -> dict[str, str]:
    """The labels of what a deploy creates (its revision, its hooks' executions): status,
    history, rollback and a resumed run read them."""
    assert record.commit is not None
    return {
        DEPLOY_LABEL: record.id,
        COMMIT_LABEL: record.commit,
        ENVIRONMENT_LABEL: record.environment,
    }


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
        if record.image and record.promoted_from:
            return Done(
                f"nothing built: promoting {digest_of(record.image)[:19]} from "
                f"{record.promoted_from}'s {record.promoted_revision}"
            )
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
            labels=deploy_labels(record),
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
        earlier = record.stage(Stage.HEALTH)
        rechecked = (
            bool(record.parks) and earlier is not None and earlier.outcome == Outcome.SUCCEEDED
        )
        if rechecked:
            # It passed in full before the wait for approval: one good answer says it is
            # still up, and every traffic step gates it again.
            check = check.model_copy(update={"consecutive": 1})
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
        again = "still after the wait for approval: " if rechecked else ""
        return Done(again + passed(check, record.commit))

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
