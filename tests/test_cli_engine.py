"""The engine's answers and the `deployer` command line, against the sandbox.

status, history, --dry-run, lock/unlock, resumed deploys, exit codes, and no
secret value in anything printed or stored.
"""

from __future__ import annotations

import getpass
import re
import secrets

import pytest

from deployer.pipeline.events import Event, StageFinished, StageProgressed
from deployer.pipeline.record import Stage, State
from tests.engine_world import ENVIRONMENT, Recorder, World, _seed_secret, world_fixture  # noqa: F401
from tests.killed_runs import wait_lease_out

ME = f"cli:{getpass.getuser()}"


class WorkerKilled(Exception):
    """Stands for the worker process dying mid-deploy."""


def cli(world: World, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run `deployer ARGS` as a user would: (exit code, everything it printed)."""
    code, out, err = world.cli(capsys, *args)
    return code, out + err


# --- status and history --------------------------------------------------------------


def test_status_says_what_runs_where(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    first = world.first
    [status] = world.engine.status(ENVIRONMENT)

    assert status.problem == ""
    assert status.uri == world.service().uri
    assert [(r.name, r.percent, r.commit) for r in status.serving] == [
        (first.candidate_revision, 100, first.commit)
    ]
    assert status.serving[0].image == first.image
    # Who deployed what serves now, and when: from the record its revision label names.
    assert status.serving[0].deployed_by == "cli:first"
    assert status.serving[0].deployed_at == first.created_at
    assert status.health is not None and status.health.ok
    assert status.last is not None and status.last.id == first.id

    code, out = cli(world, capsys, "status", ENVIRONMENT)

    assert code == 0
    assert f"{ENVIRONMENT}: {world.service_id} in {world.project}/europe-west1" in out
    assert re.search(
        rf"100% {first.candidate_revision}\s+{(first.commit or '')[:12]}\s+{re.escape(first.image or '')}",
        out,
    )
    assert "deployed by cli:first at " in out
    assert "health now: healthy" in out
    assert f"last deploy: {first.id} by cli:first" in out


def test_status_of_a_service_that_is_gone_exits_1(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.services.delete_service(name=world.service_name, timeout=30).result(timeout=30)

    code, out = cli(world, capsys, "status", ENVIRONMENT)

    assert code == 1
    assert f"service {world.service_id} does not exist" in out


def test_history_lists_deploys_and_rollbacks_newest_first(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.commit("second")
    second, _ = world.deploy()
    code, out = cli(world, capsys, "rollback", ENVIRONMENT)
    assert code == 0, out
    assert f"traffic: {second.candidate_revision} -> {world.first.candidate_revision}" in out

    records = world.engine.history(ENVIRONMENT)
    assert [(r.kind, r.state) for r in records] == [
        ("rollback", State.SUCCEEDED),
        ("deploy", State.SUCCEEDED),
        ("deploy", State.SUCCEEDED),
    ]
    assert records[1].id == second.id and records[2].id == world.first.id

    code, out = cli(world, capsys, "history", ENVIRONMENT)

    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == f"{ENVIRONMENT}: last 3"
    assert [line.split()[2] for line in lines[1:]] == [r.id for r in records]
    assert f"{second.id}  deploy    succeeded    {(second.commit or '')[:12]}" in out
    assert world.first.candidate_revision in lines[1] and ME in lines[1]


# --- deploy from the command line ----------------------------------------------------


def test_cli_deploy_shows_each_stage_and_exits_0(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    commit = world.commit("from the terminal")

    code, out = cli(world, capsys, "deploy", ENVIRONMENT)

    assert code == 0, out
    for stage in ("preflight", "build", "deploy", "ready", "health", "promote", "verify"):
        assert re.search(rf"^\[\s*\d+\.\ds\] {stage} ok in \d+\.\ds: ", out, re.M), stage
    assert f"commit: {commit}" in out
    [record] = [r for r in world.engine.history(ENVIRONMENT) if r.commit == commit]
    assert record.requester == ME and record.state == State.SUCCEEDED
    assert world.serving() == [(record.candidate_revision, 100)]


def test_cli_deploy_that_fails_exits_1_and_names_the_step(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.commit("broken")
    world.sandbox.faults.arm("build_fail", step="build")

    code, out = cli(world, capsys, "deploy", ENVIRONMENT)

    assert code == 1
    assert "build FAILED" in out and "build FAILURE at step build" in out
    assert "failed; traffic did not move" in out
    assert world.serving() == [(world.first.candidate_revision, 100)]


def test_cli_errors_exit_2_with_the_known_environments(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = cli(world, capsys, "deploy", "staging")

    assert code == 2
    assert "unknown environment 'staging'; known: prod" in out


def test_dry_run_shows_the_plan_and_changes_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    commit = world.commit("not yet")
    builds, revisions, traffic = world.build_ids(), world.revision_names(), world.traffic()
    history = world.engine.history(ENVIRONMENT)

    code, out = cli(world, capsys, "deploy", ENVIRONMENT, "--dry-run")

    assert code == 0, out
    assert "plan (dry run):" in out
    assert out.rstrip().endswith("dry run: nothing was changed") and "succeeded" not in out
    assert f"now serving {world.first.candidate_revision} 100%" in out
    assert f"build HEAD = {commit[:12]}" in out
    assert "secrets pinned: MONGODB_URL=mongodb-url:1, SECRET_KEY=secret-key:1" in out
    assert world.build_ids() == builds
    assert world.revision_names() == revisions
    assert world.traffic() == traffic
    assert [r.id for r in world.engine.history(ENVIRONMENT)] == [r.id for r in history]
    assert world.store().locks(ENVIRONMENT) == []


def test_dry_run_with_a_missing_secret_exits_1(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.reconfigure(environment={"secrets": {"API_TOKEN": "api-token"}})
    builds = world.build_ids()

    code, out = cli(world, capsys, "deploy", ENVIRONMENT, "--dry-run")

    assert code == 1
    assert "API_TOKEN: secret api-token not found" in out
    assert world.build_ids() == builds


# --- locks -----------------------------------------------------------------------------


def test_a_lock_blocks_others_until_unlocked(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = cli(world, capsys, "lock", ENVIRONMENT, "--reason", "db migration")
    assert (code, out.strip()) == (0, f"{ENVIRONMENT} locked")
    world.commit("during the freeze")
    builds = world.build_ids()

    blocked, _ = world.deploy(requester="slack:U0OTHER01")

    assert blocked.state == State.FAILED
    preflight = blocked.stage(Stage.PREFLIGHT)
    assert preflight is not None
    assert preflight.summary == f"{ENVIRONMENT} is locked by {ME}: db migration"
    assert world.build_ids() == builds
    code, out = cli(world, capsys, "status", ENVIRONMENT)
    assert f"locked by {ME} (db migration)" in out

    code, out = cli(world, capsys, "unlock", ENVIRONMENT)
    assert (code, out.strip()) == (0, f"{ENVIRONMENT} unlocked")

    freed, _ = world.deploy(requester="slack:U0OTHER01")
    assert freed.state == State.SUCCEEDED, freed.error
    assert world.serving() == [(freed.candidate_revision, 100)]


def test_someone_elses_lock_fails_the_cli_deploy_and_lock(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.engine.lock(ENVIRONMENT, "slack:U0OTHER01", "release freeze")

    code, out = cli(world, capsys, "deploy", ENVIRONMENT)
    assert code == 1
    assert f"{ENVIRONMENT} is locked by slack:U0OTHER01: release freeze" in out

    code, out = cli(world, capsys, "lock", ENVIRONMENT)
    assert code == 1
    assert f"{ENVIRONMENT} is already locked by slack:U0OTHER01" in out
    assert world.serving() == [(world.first.candidate_revision, 100)]


def test_the_lock_holder_may_still_deploy(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.engine.lock(ENVIRONMENT, "slack:U0TESTER1", "only me")
    world.commit("mine")

    record, _ = world.deploy(requester="slack:U0TESTER1")

    assert record.state == State.SUCCEEDED, record.error
    assert [lock.holder for lock in world.store().locks(ENVIRONMENT)] == ["slack:U0TESTER1"]


# --- resuming --------------------------------------------------------------------------


def test_a_deploy_interrupted_after_its_build_resumes_without_building_again(
    world: World,
) -> None:
    world.reconfigure(deployer={"lease": 1.0})
    commit = world.commit("interrupted")

    def die_after_build(event: Event) -> None:
        if isinstance(event, StageFinished) and event.result.stage == Stage.BUILD:
            raise WorkerKilled

    with pytest.raises(WorkerKilled):
        world.deploy(listener=die_after_build)
    [saved] = [r for r in world.engine.history(ENVIRONMENT) if r.commit == commit]
    assert saved.state == State.RUNNING
    assert saved.build_id and saved.image and saved.candidate_revision is None
    builds = world.build_ids()
    assert builds[0] == saved.build_id and len(builds) == 2
    # A killed worker never released its deploy lock: the resumed run takes it over once
    # the dead run's lease has run out.
    assert [lock.holder for lock in world.store().locks(ENVIRONMENT)] == [saved.id]
    wait_lease_out(world)
    recorder = Recorder()

    done = world.engine.resume(saved.id, recorder)
    world.note(recorder.text.getvalue())

    assert done.state == State.SUCCEEDED, done.error
    assert world.build_ids() == builds  # no second build
    build = done.stage(Stage.BUILD)
    assert build is not None and build.summary.startswith(f"reused image {saved.image}")
    assert done.image == saved.image
    assert world.serving() == [(done.candidate_revision, 100)]
    assert world.health()["version"]["commit"] == commit
    assert world.store().locks(ENVIRONMENT) == []


def test_a_deploy_interrupted_mid_build_is_finished_by_the_worker(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.reconfigure(deployer={"lease": 1.0})
    commit = world.commit("interrupted mid-build")

    def die_once_started(event: Event) -> None:
        if isinstance(event, StageProgressed) and event.message.endswith(" started"):
            raise WorkerKilled

    with pytest.raises(WorkerKilled):
        world.deploy(listener=die_once_started)
    [saved] = [r for r in world.engine.history(ENVIRONMENT) if r.commit == commit]
    assert saved.build_id and saved.image is None
    wait_lease_out(world)

    code, out = cli(world, capsys, "worker", saved.id)

    assert code == 0, out
    done = world.store().get(saved.id)
    assert done is not None and done.state == State.SUCCEEDED
    assert done.build_id == saved.build_id
    assert len(world.build_ids()) == 2  # the first deploy's and this one's, followed twice
    assert world.health()["version"]["commit"] == commit


def test_the_worker_of_a_finished_deploy_changes_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    builds = world.build_ids()

    code, _ = cli(world, capsys, "worker", world.first.id)

    assert code == 0
    assert world.build_ids() == builds


# --- secrets -------------------------------------------------------------------------


def test_no_secret_value_in_any_output_even_from_a_dotenv_secret(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    token = f"tok-{secrets.token_hex(16)}"
    dotenv = f'export API_TOKEN="{token}"\nFEATURES=a,b,c\nDSN=postgres://u:p4ss-{token}@db/x\n'
    world.secret_values["backend-dotenv"] = token
    _seed_secret(world.secret_manager, world.project, "backend-dotenv", dotenv)
    world.reconfigure(environment={"env_from_secret": "backend-dotenv"})
    commit = world.commit("dotenv")

    outputs = [cli(world, capsys, "deploy", ENVIRONMENT, "--dry-run")]
    outputs.append(cli(world, capsys, "deploy", ENVIRONMENT))
    outputs.append(cli(world, capsys, "status"))
    outputs.append(cli(world, capsys, "history", ENVIRONMENT))
    outputs.append(cli(world, capsys, "rollback", ENVIRONMENT))

    assert [code for code, _ in outputs] == [0, 0, 0, 0, 0], outputs
    assert "env: API_TOKEN, DSN, FEATURES, LOG_LEVEL" in outputs[0][1]
    # The values did reach the revision, as plain variables.
    [record] = [r for r in world.engine.history(ENVIRONMENT) if r.commit == commit]
    env = {
        var.name: var.value
        for var in world.revision(record.candidate_revision or "").containers[0].env
    }
    assert env["API_TOKEN"] == token and env["FEATURES"] == "a,b,c"
    world.assert_no_secrets(*(text for _, text in outputs))
