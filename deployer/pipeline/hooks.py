"""The deploy hooks: commands run once from the candidate's image, as Cloud Run job executions.

    predeploy    after health (and approval, where required), before the first traffic
                 step: a deploy nobody approved changes no schema. The old revision
                 serves during and after it, so a migration must be backward compatible
                 (expand, then contract).
    postdeploy   after verify, the candidate serving everything.

The job runs the candidate's image (`record.image`, by digest) with the environment the
candidate got (`plan.env`, `plan.secret_env` pinned to their versions, the
environment's service account, cpu and memory), the hook's command replacing the
image's ENTRYPOINT and CMD (`deployer/adapters/cloud_run_hook_jobs.py` says how).

    hook ends            predeploy                          postdeploy
    succeeded            Done: next stage                   Done
    failed / timed out   StageFailed, its last log lines    rollback_on_failure: StageFailed
                         quoted: traffic untouched          else Done saying it failed (the
                                                            deploy stays succeeded), lines told
    Cloud Run refused    StageFailed                        as a failure

("traffic untouched" is said only when something served before: on a first deploy the
candidate took the traffic the moment it was ready.) Once the execution is known, the
stage says so with its log URL, and a test may kill the worker there
(`failpoints`: predeploy.running, postdeploy.running).

Lines quoted from the job's log are redacted of every value the plan knows
(`plan.known_values`), as health's answers are.

A resumed run (the worker lost mid-hook, the deploy taken up again) does not run a
hook a second time. The job's executions carry the deploy's labels (`deploy_labels`),
so before running, the adapter looks for an execution of this job labelled with this
deploy: one that succeeded is reused ("ran in an earlier run of this deploy"), one
still running is waited for, one that failed is that run's failure, reported again.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployer.config import Hook
from deployer.pipeline import failpoints
from deployer.pipeline.candidate import deploy_labels
from deployer.pipeline.hook_port import POSTDEPLOY, PREDEPLOY, HookOutcome, HookRefused, HookSpec
from deployer.pipeline.ports import Platform
from deployer.pipeline.preflight import Plan
from deployer.pipeline.record import Outcome
from deployer.pipeline.stages import Deadline, Done, StageFailed, StageRunner
from deployer.redaction import redact

# Seconds a hook's stage gets beyond the hook's own timeout: the job's creation or
# update, the execution's start (pulling the image), the cancel and reading the log.
HOOK_MARGIN = 120.0


# How much of a hook's command its summary shows.
COMMAND_CHARS = 60


def command_text(hook: Hook) -> str:
    """The hook's command as people read it (`alembic upgrade head`), clipped."""
    text = " ".join(hook.command)
    return text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 1] + "…"


def hook_seconds(hook: Hook) -> float:
    """The timeout of the stage that runs `hook`."""
    return float(hook.timeout) + HOOK_MARGIN


def hook_spec(plan: Plan, image: str, name: str, hook: Hook, labels: dict[str, str]) -> HookSpec:
    """What the hook `name` runs: the candidate's image and environment, its command."""
    return HookSpec(
        hook=name,
        image=image,
        command=tuple(hook.command),
        env=plan.env,
        secret_env=plan.secret_env,
        settings=plan.settings.run,
        timeout=float(hook.timeout),
        labels=labels,
    )


@dataclass
class HookStages:
    """The predeploy and postdeploy stages of one deploy."""

    platform: Platform
    runner: StageRunner
    plan: Plan

    def predeploy(self, deadline: Deadline) -> Done:
        hook = self.plan.settings.hooks.predeploy
        if hook is None:
            return Done("no predeploy hook")
        outcome = self._run(PREDEPLOY, hook, deadline)
        said = f"predeploy hook `{command_text(hook)}`"
        if not outcome.ok:
            kind = Outcome.TIMED_OUT if outcome.timed_out else Outcome.FAILED
            # With nothing serving before (a first deploy), the candidate took the traffic
            # the moment it was ready (candidate.py): there was no traffic to leave alone.
            after = "traffic untouched" if self.plan.keep else "nothing served before this deploy"
            raise StageFailed(
                f"{said} {outcome.summary}: {after}",
                self._quoted(outcome),
                kind,
                outcome.log_url,
            )
        return Done(
            f"{said} {outcome.summary}{_where(outcome)}", self._quoted(outcome), outcome.log_url
        )

    def postdeploy(self, deadline: Deadline) -> Done:
        hook = self.plan.settings.hooks.postdeploy
        if hook is None:
            return Done("no postdeploy hook")
        said = f"postdeploy hook `{command_text(hook)}`"
        try:
            outcome = self._run(POSTDEPLOY, hook, deadline)
        except StageFailed as refused:
            if hook.rollback_on_failure:
                raise
            self.runner.progress(f"{refused.summary}: {refused.detail}")
            return Done(f"{refused.summary}; the deploy stands", refused.detail)
        detail = self._quoted(outcome)
        if outcome.ok:
            return Done(f"{said} {outcome.summary}{_where(outcome)}", detail, outcome.log_url)
        if hook.rollback_on_failure:
            kind = Outcome.TIMED_OUT if outcome.timed_out else Outcome.FAILED
            raise StageFailed(f"{said} {outcome.summary}", detail, kind, outcome.log_url)
        quoted = "".join(f"\n  | {line}" for line in detail.splitlines())
        told = f"{said} {outcome.summary}" + (f"; its last lines:{quoted}" if quoted else "")
        self.runner.progress(told, outcome.log_url)
        return Done(
            f"{said} {outcome.summary}: reported only, the deploy stands "
            "(rollback_on_failure is off)",
            detail,
            outcome.log_url,
        )

    def _run(self, name: str, hook: Hook, deadline: Deadline) -> HookOutcome:
        """Run the hook `name` within the stage's deadline; StageFailed when Cloud Run refuses."""
        record = self.runner.record
        assert record.image is not None
        spec = hook_spec(self.plan, record.image, name, hook, deploy_labels(record))

        def started(execution: str, log_url: str) -> None:
            self.runner.progress(f"{name} hook running as execution {execution}", log_url)
            failpoints.reached(f"{name}.running", record.attempt)

        try:
            outcome = self.platform.hooks.run(self.plan.service, spec, deadline.left(), started)
        except HookRefused as error:
            detail = redact(str(error), self.plan.known_values)
            raise StageFailed(f"Cloud Run refused the {name} hook", detail) from None
        if outcome.earlier:
            self.runner.progress(
                f"{name} hook already ran in an earlier run of this deploy "
                f"(execution {outcome.execution}): not run again"
            )
        return outcome

    def _quoted(self, outcome: HookOutcome) -> str:
        """The job's last log lines, without any value the deploy knows."""
        return redact("\n".join(outcome.log_lines), self.plan.known_values)


def _where(outcome: HookOutcome) -> str:
    """`(execution X)`, and whether an earlier run of the deploy ran it."""
    if not outcome.execution:
        return ""
    earlier = ", run by an earlier run of this deploy" if outcome.earlier else ""
    return f" (execution {outcome.execution}{earlier})"
