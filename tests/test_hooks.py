"""Deploy hooks run as Cloud Run job executions from the candidate's image, through the
real clients against the sandbox: the stage bodies of `HookStages`, run by a StageRunner
on a plan made by preflight, as the pipeline runs them."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import run_v2

from deployer.adapters.cloud_run_job_template import job_for, same_template
from deployer.adapters.google_clients import google_client
from deployer.config import RunSettings
from deployer.pipeline.candidate import deploy_labels
from deployer.pipeline.events import StageProgressed
from deployer.pipeline.hook_port import HookSpec
from deployer.pipeline.hooks import HookStages, hook_seconds, hook_spec
from deployer.pipeline.ports import PinnedSecret
from deployer.pipeline.preflight import make_plan
from deployer.pipeline.record import DeployRecord, Outcome, Stage, StageResult, State
from deployer.pipeline.stages import Deadline, StageRunner
from deployer.run_names import hook_job_name
from tests.conftest import REGION
from tests.engine_world import ENVIRONMENT, Recorder, World, world_fixture  # noqa: F401

DB_NAME = "content-db-7f3a9c"  # a plain variable long enough to be redacted when quoted


def python(code: str) -> list[str]:
    """A hook command: Python from the candidate's image (its venv's interpreter)."""
    return ["python", "-c", code]


def hooks_world(world: World, **hooks: dict[str, Any]) -> None:
    """The world's prod with these `[hooks]` and one more plain variable."""
    world.reconfigure(environment={"hooks": hooks, "env": {"DB_NAME": DB_NAME}})


def stages_for(world: World, record: DeployRecord | None = None) -> tuple[HookStages, Recorder]:
    """The hook stages of a deploy of what the world serves (a new one unless `record`)."""
    engine = world.engine
    if record is None:
        record = engine.new_deploy(ENVIRONMENT, None, "cli:tester")
        record.commit, record.image = world.first.commit, world.first.image
    plan = make_plan(engine.config, world.platform, world.store(), record, Deadline(30))
    recorder = Recorder()
    return HookStages(world.platform, StageRunner(record, None, recorder), plan), recorder


def run_stage(stages: HookStages, stage: Stage, seconds: float | None = None) -> StageResult:
    hooks = stages.plan.settings.hooks
    hook = hooks.predeploy if stage == Stage.PREDEPLOY else hooks.postdeploy
    assert hook is not None
    body = stages.predeploy if stage == Stage.PREDEPLOY else stages.postdeploy
    return stages.runner.run(stage, seconds or hook_seconds(hook), body)


def job_name(world: World, hook: str) -> str:
    return f"projects/{world.project}/locations/{REGION}/jobs/{world.service_id}-{hook}"


def executions(world: World, hook: str) -> list[run_v2.Execution]:
    client = google_client(run_v2.ExecutionsClient, world.sandbox.grpc_address)
    return list(client.list_executions(parent=job_name(world, hook), timeout=10))


def said(world: World, result: StageResult, recorder: Recorder) -> str:
    """Everything the stage told people, kept for the world's secret check."""
    return world.note(f"{result.summary}\n{result.detail}\n{recorder.text.getvalue()}")


def test_predeploy_runs_the_command_from_the_candidates_image(world: World) -> None:
    hooks_world(
        world,
        predeploy={
            "command": python(
                "import os; print('migrated at', os.environ['APP_COMMIT'], 'for', "
                "os.environ['DB_NAME'], 'with a key of', len(os.environ['SECRET_KEY']))"
            ),
            "timeout": 60,
        },
    )
    stages, recorder = stages_for(world)

    result = run_stage(stages, Stage.PREDEPLOY)
    said(world, result, recorder)

    assert result.outcome == Outcome.SUCCEEDED, result.detail
    assert result.summary.startswith("predeploy hook `python -c import os; print(")
    assert " succeeded in " in result.summary
    # The image's own variable (its commit), the config's env (redacted when quoted) and
    # the secret (pinned; only its length printed) reached the command.
    assert f"migrated at {world.first.commit} for [redacted] with a key of 32" in result.detail
    assert "predeploy hook running as execution" in recorder.text.getvalue()
    (execution,) = executions(world, "predeploy")
    assert execution.labels["deployer-deploy"] == stages.runner.record.id
    job = google_client(run_v2.JobsClient, world.sandbox.grpc_address).get_job(
        name=job_name(world, "predeploy"), timeout=10
    )
    container = job.template.template.containers[0]
    assert container.image == world.first.image
    assert job.template.template.max_retries == 0
    pinned = {e.name: e.value_source.secret_key_ref.version for e in container.env}
    assert pinned["SECRET_KEY"] == "1" and pinned["MONGODB_URL"] == "1"


def test_a_failing_predeploy_stops_with_its_lines_and_no_secret(world: World) -> None:
    before = world.serving()
    hooks_world(
        world,
        predeploy={
            "command": python(
                "import os, sys; print('connecting to', os.environ['MONGODB_URL'], "
                "os.environ['DB_NAME']); print('alembic: Can\\'t locate revision 3f2a', "
                "file=sys.stderr); sys.exit(1)"
            ),
            "timeout": 60,
        },
    )
    stages, recorder = stages_for(world)

    result = run_stage(stages, Stage.PREDEPLOY)
    text = said(world, result, recorder)

    assert result.outcome == Outcome.FAILED
    assert result.summary.startswith("predeploy hook `python -c ")
    assert " exited 1 after " in result.summary
    assert result.summary.endswith(": traffic untouched")
    assert "alembic: Can't locate revision 3f2a" in result.detail
    assert "Container called exit(1)." in result.detail
    assert "connecting to mongodb://app:[redacted]@127.0.0.1:27017/content [redacted]" in (
        result.detail
    )
    assert DB_NAME not in text
    assert world.serving() == before  # the hook ran beside the serving revision, nothing moved


def test_a_predeploy_past_its_timeout_is_stopped(world: World) -> None:
    hooks_world(
        world,
        predeploy={
            "command": python("import time; print('locking', flush=True); time.sleep(60)"),
            "timeout": 2,
        },
    )
    stages, recorder = stages_for(world)

    result = run_stage(stages, Stage.PREDEPLOY)
    said(world, result, recorder)

    assert result.outcome == Outcome.TIMED_OUT
    assert " timed out after 2 s: traffic untouched" in result.summary
    assert "locking" in result.detail
    assert "Terminating task because it has reached the maximum timeout." in result.detail


def test_a_stage_out_of_time_cancels_the_execution(world: World) -> None:
    hooks_world(
        world,
        predeploy={"command": python("import time; time.sleep(60)"), "timeout": 60},
    )
    stages, recorder = stages_for(world)

    result = run_stage(stages, Stage.PREDEPLOY, seconds=3)
    said(world, result, recorder)

    assert result.outcome == Outcome.TIMED_OUT
    assert "cancelled: traffic untouched" in result.summary
    (execution,) = executions(world, "predeploy")
    completed = next(c for c in execution.conditions if c.type_ == "Completed")
    assert completed.execution_reason == run_v2.Condition.ExecutionReason.CANCELLED


def test_the_job_is_updated_not_duplicated(world: World) -> None:
    hooks_world(world, predeploy={"command": python("print('one')"), "timeout": 60})
    first, _ = stages_for(world)
    assert run_stage(first, Stage.PREDEPLOY).outcome == Outcome.SUCCEEDED
    hooks_world(world, predeploy={"command": python("print('two')"), "timeout": 60})
    second, _ = stages_for(world)

    result = run_stage(second, Stage.PREDEPLOY)

    assert result.outcome == Outcome.SUCCEEDED and "two" in result.detail
    jobs = google_client(run_v2.JobsClient, world.sandbox.grpc_address)
    listed = jobs.list_jobs(parent=f"projects/{world.project}/locations/{REGION}", timeout=10)
    assert [job.name for job in listed] == [job_name(world, "predeploy")]
    assert jobs.get_job(name=job_name(world, "predeploy"), timeout=10).generation == 2
    assert len(executions(world, "predeploy")) == 2


def test_a_resumed_deploy_does_not_run_a_succeeded_predeploy_again(world: World) -> None:
    hooks_world(world, predeploy={"command": python("print('migrated once')"), "timeout": 60})
    stages, _ = stages_for(world)
    assert run_stage(stages, Stage.PREDEPLOY).outcome == Outcome.SUCCEEDED
    record = stages.runner.record
    record.attempt += 1  # the worker was lost after the hook; the deploy is resumed
    resumed, recorder = stages_for(world, record)

    result = run_stage(resumed, Stage.PREDEPLOY)
    said(world, result, recorder)

    assert result.outcome == Outcome.SUCCEEDED
    assert "run by an earlier run of this deploy" in result.summary
    assert "migrated once" in result.detail
    assert "already ran in an earlier run of this deploy" in recorder.text.getvalue()
    assert len(executions(world, "predeploy")) == 1


class WorkerLost(Exception):
    """The worker dying the moment the hook's execution started."""


def test_a_resumed_deploy_waits_for_the_predeploy_its_lost_run_started(world: World) -> None:
    hooks_world(
        world,
        predeploy={
            "command": python("import time; time.sleep(2); print('slow migration done')"),
            "timeout": 60,
        },
    )
    stages, _ = stages_for(world)
    record, plan = stages.runner.record, stages.plan
    assert plan.settings.hooks.predeploy is not None and record.image is not None
    spec = hook_spec(
        plan, record.image, "predeploy", plan.settings.hooks.predeploy, deploy_labels(record)
    )

    def die(execution: str, log_url: str) -> None:
        raise WorkerLost(execution)

    with pytest.raises(WorkerLost):
        world.platform.hooks.run(plan.service, spec, 30, die)
    record.attempt += 1
    resumed, recorder = stages_for(world, record)

    result = run_stage(resumed, Stage.PREDEPLOY)
    said(world, result, recorder)

    assert result.outcome == Outcome.SUCCEEDED, result.detail
    assert "slow migration done" in result.detail
    assert "run by an earlier run of this deploy" in result.summary
    assert len(executions(world, "predeploy")) == 1


@pytest.mark.parametrize("rollback", [False, True])
def test_a_failing_postdeploy_is_reported_or_fails_as_configured(
    world: World, rollback: bool
) -> None:
    hooks_world(
        world,
        postdeploy={
            "command": python("import sys; print('cache warm-up failed'); sys.exit(2)"),
            "timeout": 60,
            "rollback_on_failure": rollback,
        },
    )
    stages, recorder = stages_for(world)

    result = run_stage(stages, Stage.POSTDEPLOY)
    said(world, result, recorder)

    assert "cache warm-up failed" in result.detail
    assert " exited 2 after " in result.summary
    if rollback:
        assert result.outcome == Outcome.FAILED
    else:
        assert result.outcome == Outcome.SUCCEEDED
        assert "reported only, the deploy stands" in result.summary
        told = [e.message for e in recorder.events if isinstance(e, StageProgressed)]
        assert any("cache warm-up failed" in message for message in told)


def test_cloud_run_unavailable_for_a_moment_is_tried_again(world: World) -> None:
    hooks_world(world, predeploy={"command": python("print('ran')"), "timeout": 60})
    world.sandbox.faults.arm("run_job_unavailable", times=2)
    stages, recorder = stages_for(world)

    result = run_stage(stages, Stage.PREDEPLOY)
    said(world, result, recorder)

    assert result.outcome == Outcome.SUCCEEDED, result.detail
    assert len(executions(world, "predeploy")) == 1


def test_hook_jobs_leave_room_for_their_executions_names() -> None:
    longest = "s" * 40 + "-abcdefgh"  # 49: the longest service id Cloud Run takes
    other = "s" * 40 + "-abcdefgi"

    names = {hook_job_name(service, "postdeploy") for service in (longest, other)}

    assert len(names) == 2
    assert all(len(name) + len("-abcde") < 63 for name in names)
    assert hook_job_name("backend", "predeploy") == "backend-predeploy"


def test_the_job_reaches_what_the_revision_reaches() -> None:
    spec = HookSpec(
        hook="predeploy",
        image="europe-west1-docker.pkg.dev/p/r/app@sha256:" + "a" * 64,
        command=("alembic", "upgrade", "head"),
        env={"DB_NAME": DB_NAME},
        secret_env={"DB_PASSWORD": PinnedSecret("db-password", "4")},
        settings=RunSettings(service_account="app@p.iam.gserviceaccount.com"),
        timeout=600,
    )
    revision = run_v2.RevisionTemplate(
        vpc_access=run_v2.VpcAccess(connector="projects/p/locations/europe-west1/connectors/c"),
        volumes=[
            run_v2.Volume(
                name="cloudsql",
                cloud_sql_instance=run_v2.CloudSqlInstance(instances=["p:europe-west1:db"]),
            )
        ],
        containers=[
            run_v2.Container(
                volume_mounts=[run_v2.VolumeMount(name="cloudsql", mount_path="/cloudsql")]
            )
        ],
    )

    job = job_for(spec, revision)

    task = job.template.template
    assert task.vpc_access.connector.endswith("/connectors/c")
    assert task.volumes[0].cloud_sql_instance.instances == ["p:europe-west1:db"]
    assert task.containers[0].volume_mounts[0].mount_path == "/cloudsql"
    assert task.containers[0].command == ["alembic", "upgrade", "head"]
    assert task.max_retries == 0 and task.timeout.total_seconds() == 600
    assert not same_template(job, job_for(spec))
    assert same_template(job, job_for(spec, revision))


def test_cloud_run_away_for_good_fails_the_stage_with_its_answer(world: World) -> None:
    hooks_world(world, predeploy={"command": python("print('ran')"), "timeout": 60})
    world.sandbox.faults.arm("run_job_unavailable", times=10)
    stages, recorder = stages_for(world)

    result = run_stage(stages, Stage.PREDEPLOY)
    said(world, result, recorder)

    assert result.outcome == Outcome.FAILED
    assert result.summary == "Cloud Run refused the predeploy hook"
    assert "ServiceUnavailable: The service is currently unavailable." in result.detail
    assert executions(world, "predeploy") == []


# --- through a whole deploy ------------------------------------------------------------


def test_a_deploy_whose_predeploy_fails_ends_with_traffic_untouched(world: World) -> None:
    old = world.first.candidate_revision
    hooks_world(
        world,
        predeploy={
            "command": python("import sys; print('alembic: table notes exists'); sys.exit(3)"),
            "timeout": 60,
        },
    )
    world.commit("a migration that fails")

    record, _ = world.deploy()

    assert record.state == State.FAILED, record.error
    assert world.serving() == [(old, 100)]
    ran = [result.stage for result in record.stages]
    assert ran[ran.index(Stage.HEALTH) :][:2] == [Stage.HEALTH, Stage.PREDEPLOY]
    assert Stage.PROMOTE not in ran
    failed = record.stage(Stage.PREDEPLOY)
    assert failed is not None and failed.outcome == Outcome.FAILED
    assert "alembic: table notes exists" in failed.detail
    assert record.error.startswith("predeploy: predeploy hook `python -c ")
    assert " exited 3 after " in record.error and record.error.endswith("traffic untouched")


def test_hooks_run_before_traffic_moves_and_after_verify(world: World) -> None:
    hooks_world(
        world,
        predeploy={"command": python("print('migrated')"), "timeout": 60},
        postdeploy={"command": python("print('warmed')"), "timeout": 60},
    )
    world.commit("with hooks")

    record, _ = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    ran = [result.stage for result in record.stages]
    assert ran[ran.index(Stage.HEALTH) :] == [
        Stage.HEALTH,
        Stage.PREDEPLOY,
        Stage.PROMOTE,
        Stage.VERIFY,
        Stage.POSTDEPLOY,
    ]
    assert [len(executions(world, hook)) for hook in ("predeploy", "postdeploy")] == [1, 1]
    pre = record.stage(Stage.PREDEPLOY)
    assert pre is not None and "migrated" in pre.detail
    assert world.serving() == [(record.candidate_revision, 100)]


def test_a_deploy_waiting_for_approval_has_run_no_predeploy(world: World) -> None:
    hooks_world(world, predeploy={"command": python("print('migrated')"), "timeout": 60})
    world.reconfigure(environment={"approval": {"approvers": ["U0APPROVER1"], "timeout": 300}})
    world.commit("needs an approval first")

    record, _ = world.deploy()

    assert record.state == State.AWAITING_APPROVAL, record.error
    assert Stage.PREDEPLOY not in [result.stage for result in record.stages]
    client = google_client(run_v2.JobsClient, world.sandbox.grpc_address)
    with pytest.raises(exceptions.NotFound):
        client.get_job(name=job_name(world, "predeploy"), timeout=10)
