"""`deployer setup` against the sandbox, through the real client libraries: what a team
would check in the console after running it (and again, and with --dry-run)."""

from __future__ import annotations

import io
import sys
import uuid
from pathlib import Path

import pytest
from deployer_sandbox.harness.chat_front import push_worker_image
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import (
    firestore_admin_v1,
    iam_admin_v1,
    resourcemanager_v3,
    run_v2,
    scheduler_v1,
    secretmanager_v1,
    service_usage_v1,
)

from deployer.cli import main
from deployer.setup import roles
from deployer.setup.run import steps
from deployer.setup.worker_timeout import longest_run_s
from tests.checkout_snapshot import _front_from_snapshot, checkout_snapshot  # noqa: F401
from tests.conftest import REGION, GoogleClients
from tests.setup_config import config_text

SIGNING, BOT, WEBHOOK = (f"value-{uuid.uuid4().hex}" for _ in range(3))
SECRETS = (
    f"SLACK_SIGNING_SECRET={SIGNING}\nSLACK_BOT_TOKEN={BOT}\nGITHUB_WEBHOOK_SECRET={WEBHOOK}\n"
)
ACCESSOR = "roles/secretmanager.secretAccessor"


class World:
    def __init__(self, gcp: Sandbox, clients: GoogleClients, project: str, tmp_path: Path):
        self.project, self.gcp, self.clients = project, gcp, clients
        self.config = tmp_path / "deployer.toml"
        self.config.write_text(config_text(project))
        self.image = push_worker_image(gcp, project, REGION)
        self.secrets = clients(secretmanager_v1.SecretManagerServiceClient)
        # The team's own secret exists; `api-key` is referenced but not made yet.
        self.secrets.create_secret(
            parent=f"projects/{project}",
            secret_id="mongodb-url",
            secret={"replication": {"automatic": {}}},
        )

    def setup(self, capsys, *extra: str, stdin: str = SECRETS) -> tuple[int, str]:
        sys.stdin = io.StringIO(stdin)
        try:
            code = main(
                [
                    "setup",
                    "--project",
                    self.project,
                    "--region",
                    REGION,
                    "--config",
                    str(self.config),
                    "--image",
                    self.image,
                    *extra,
                ]
            )
        finally:
            sys.stdin = sys.__stdin__
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    def project_policy(self) -> dict[str, set[str]]:
        client = self.clients(resourcemanager_v3.ProjectsClient)
        policy = client.get_iam_policy(resource=f"projects/{self.project}")
        return {b.role: set(b.members) for b in policy.bindings}

    def account_policy(self, email: str) -> dict[str, set[str]]:
        client = self.clients(iam_admin_v1.IAMClient)
        policy = client.get_iam_policy(resource=f"projects/{self.project}/serviceAccounts/{email}")
        return {b.role: set(b.members) for b in policy.bindings}

    def secret_policy(self, secret: str) -> dict[str, set[str]]:
        policy = self.secrets.get_iam_policy(
            request={"resource": f"projects/{self.project}/secrets/{secret}"}
        )
        return {b.role: set(b.members) for b in policy.bindings}

    def latest(self, secret: str) -> str:
        name = f"projects/{self.project}/secrets/{secret}/versions/latest"
        return self.secrets.access_secret_version(name=name).payload.data.decode()

    def everything(self) -> dict[str, object]:
        """Every API setup touches, read back."""
        p = f"projects/{self.project}"
        where = f"{p}/locations/{REGION}"
        usage = self.clients(service_usage_v1.ServiceUsageClient)
        accounts = self.clients(iam_admin_v1.IAMClient)
        firestore = self.clients(firestore_admin_v1.FirestoreAdminClient)
        jobs = self.clients(run_v2.JobsClient)
        scheduler = self.clients(scheduler_v1.CloudSchedulerClient)
        return {
            "apis": sorted(
                s.config.name
                for s in usage.list_services(request={"parent": p, "filter": "state:ENABLED"})
            ),
            "accounts": sorted(a.email for a in accounts.list_service_accounts(name=p)),
            "policy": self.project_policy(),
            "team secret's policy": self.secret_policy("mongodb-url"),
            "secrets": sorted(
                (s.name, len(list(self.secrets.list_secret_versions(parent=s.name))))
                for s in self.secrets.list_secrets(parent=p)
            ),
            "databases": [d.name for d in firestore.list_databases(parent=p).databases],
            "jobs": sorted(j.name for j in jobs.list_jobs(parent=where)),
            "schedules": sorted(j.name for j in scheduler.list_jobs(parent=where)),
        }


@pytest.fixture
def world(gcp: Sandbox, google_clients: GoogleClients, project: str, tmp_path: Path) -> World:
    return World(gcp, google_clients, project, tmp_path)


def email(world: World, account_id: str) -> str:
    return f"{account_id}@{world.project}.iam.gserviceaccount.com"


def test_a_first_run_makes_everything_and_a_second_changes_nothing(world, capsys) -> None:
    code, first = world.setup(capsys)

    assert code == 0, first
    assert "apis: changed" in first and "worker job: changed (created" in first
    assert first.endswith("\n12 changed, 1 unchanged\n"), first
    code, second = world.setup(capsys)
    assert code == 0, second
    assert second.endswith("\n0 changed, 13 unchanged\n"), second
    assert ": changed" not in second
    # Everything it made is where a team would look.
    state = world.everything()
    assert "run.googleapis.com" in state["apis"]
    assert email(world, "backend-run") in state["accounts"]
    assert state["databases"] == [f"projects/{world.project}/databases/(default)"]
    assert state["jobs"] == [f"projects/{world.project}/locations/{REGION}/jobs/deployer-worker"]
    assert state["schedules"] == [
        f"projects/{world.project}/locations/{REGION}/jobs/deployer-sweep"
    ]


def test_a_dry_run_changes_nothing(world, capsys) -> None:
    before = world.everything()

    code, out = world.setup(capsys, "--dry-run")

    assert code == 0, out
    assert world.everything() == before
    assert out.count(": planned") >= 8
    assert "planned, nothing changed" in out
    assert ": changed" not in out


def test_a_dry_run_after_a_run_plans_nothing(world, capsys) -> None:
    world.setup(capsys)

    code, out = world.setup(capsys, "--dry-run")

    assert code == 0
    assert out.endswith("\n0 planned, nothing changed\n")


def test_a_new_image_updates_the_worker_job_and_keeps_the_rest(world, capsys, image) -> None:
    world.setup(capsys)
    jobs = world.clients(run_v2.JobsClient)
    name = f"projects/{world.project}/locations/{REGION}/jobs/deployer-worker"
    job = jobs.get_job(name=name)
    job.labels["team"] = "platform"  # someone's own setting
    jobs.update_job(job=job).result(timeout=30)
    world.image = image  # another image the registry holds

    _, out = world.setup(capsys)

    assert "worker job: changed (updated, retries 3" in out
    job = jobs.get_job(name=name)
    assert job.template.template.containers[0].image == world.image
    assert job.labels["team"] == "platform"


def test_the_project_policy_holds_exactly_the_listed_roles_and_keeps_others(world, capsys) -> None:
    client = world.clients(resourcemanager_v3.ProjectsClient)
    resource = f"projects/{world.project}"
    policy = client.get_iam_policy(resource=resource)
    policy.bindings.add(role="roles/viewer", members=["user:alice@example.com"])
    client.set_iam_policy(request={"resource": resource, "policy": policy})

    world.setup(capsys)

    held = world.project_policy()
    assert "user:alice@example.com" in held["roles/viewer"]
    assert held["roles/owner"] == {"user:owner@example.com"}
    for key in (roles.DEPLOYER, roles.FRONT, roles.SCHEDULER):
        member = roles.member(key, world.project)
        got = {role for role, members in held.items() if member in members}
        listed = {
            g.role
            for g in roles.GRANTS
            if g.who == key
            and g.on == roles.PROJECT
            and g.when in (roles.ALWAYS, roles.NONE_PUBLIC)
        }
        assert got == listed, key
    assert "roles/editor" not in held and "roles/iam.serviceAccountUser" not in held


def test_a_role_the_config_no_longer_needs_is_taken_back_and_only_that(world, capsys) -> None:
    public = world.config.read_text().replace(
        'service = "backend"\nsecrets',
        'service = "backend"\nrun.allow_unauthenticated = true\nsecrets',
    )
    assert public != world.config.read_text()
    private = world.config.read_text()
    world.config.write_text(public)
    world.setup(capsys)
    deployer = roles.member(roles.DEPLOYER, world.project)
    assert deployer in world.project_policy()["roles/run.admin"]
    # Someone grants the deployer's account a role of setup's list by hand, and another
    # role setup never grants: neither is setup's to take back while it is wanted.
    client = world.clients(resourcemanager_v3.ProjectsClient)
    resource = f"projects/{world.project}"
    policy = client.get_iam_policy(resource=resource)
    policy.bindings.add(role="roles/pubsub.viewer", members=[deployer])
    client.set_iam_policy(request={"resource": resource, "policy": policy})
    world.config.write_text(private)  # no environment is public any more

    _, out = world.setup(capsys)

    assert (
        "project grants: changed (granted run.developer to deployer; revoked run.admin from deployer (no longer needed))"
        in out
    )
    held = world.project_policy()
    assert "roles/run.admin" not in held
    assert deployer in held["roles/run.developer"]
    assert deployer in held["roles/pubsub.viewer"]  # not setup's to take back


def test_the_deployer_may_act_as_the_runtime_account_only(world, capsys) -> None:
    world.setup(capsys)

    deployer = roles.member(roles.DEPLOYER, world.project)
    assert world.account_policy(email(world, "backend-run")) == {
        "roles/iam.serviceAccountUser": {deployer}
    }
    for own in ("deployer", "deployer-front", "deployer-scheduler"):
        assert world.account_policy(email(world, own)) == {}


def test_secrets_come_from_stdin_are_stored_and_never_printed(world, capsys) -> None:
    code, out = world.setup(capsys)

    assert code == 0
    for value in (SIGNING, BOT, WEBHOOK):
        assert value not in out
    assert world.latest("slack-signing-secret") == SIGNING
    assert world.latest("slack-bot-token") == BOT
    assert world.latest("github-webhook-secret") == WEBHOOK
    assert world.latest("deployer-config") == world.config.read_text()
    # The same values again: nothing new; a new token: one new version.
    _, again = world.setup(capsys)
    assert "secrets: unchanged" in again
    new_bot = f"value-{uuid.uuid4().hex}"
    _, rotated = world.setup(capsys, stdin=f"SLACK_BOT_TOKEN={new_bot}\n")
    assert "secrets: changed (new version of slack-bot-token)" in rotated
    assert new_bot not in rotated
    assert world.latest("slack-bot-token") == new_bot
    assert world.latest("slack-signing-secret") == SIGNING


def test_secrets_file_and_missing_values(world, capsys, tmp_path) -> None:
    code, out = world.setup(capsys, stdin="SLACK_BOT_TOKEN=xoxb-only\n")

    assert code == 1
    assert "secrets: missing" in out
    assert "SLACK_SIGNING_SECRET" in out and "xoxb-only" not in out
    path = tmp_path / "secrets.env"
    path.write_text(SECRETS)
    code, out = world.setup(capsys, "--secrets-file", str(path), stdin="")
    assert code == 0, out
    assert world.latest("github-webhook-secret") == WEBHOOK


def test_each_reader_gets_only_its_secrets(world, capsys) -> None:
    _, out = world.setup(capsys)

    front = roles.member(roles.FRONT, world.project)
    deployer = roles.member(roles.DEPLOYER, world.project)
    runtime = f"serviceAccount:{email(world, 'backend-run')}"
    assert world.secret_policy("mongodb-url") == {ACCESSOR: {runtime}}
    assert world.secret_policy("slack-signing-secret") == {ACCESSOR: {front}}
    assert world.secret_policy("slack-bot-token") == {ACCESSOR: {front, deployer}}
    assert world.secret_policy("deployer-config") == {ACCESSOR: {front, deployer}}
    # A referenced secret nobody made yet is said, not created empty.
    assert "api-key does not exist yet: skipped" in out
    assert "api-key" not in str(world.everything()["secrets"])


def test_the_worker_job_outlasts_the_longest_deploy_and_the_sweep_runs_it(world, capsys) -> None:
    world.setup(capsys)

    jobs = world.clients(run_v2.JobsClient)
    name = f"projects/{world.project}/locations/{REGION}/jobs/deployer-worker"
    job = jobs.get_job(name=name)
    task = job.template.template
    assert task.max_retries == 3
    longest = longest_run_s(world_config(world).environments["prod"])
    assert longest >= 1800 + 900  # the build and the hook alone
    assert task.timeout.total_seconds() > longest
    assert task.service_account == email(world, "deployer")
    env = {v.name: v for v in task.containers[0].env}
    assert env["DEPLOYER_CONFIG"].value == (
        f"projects/{world.project}/secrets/deployer-config/versions/1"
    )
    assert env["DEPLOYER_DISPATCH"].value == name
    token = env["SLACK_BOT_TOKEN"].value_source.secret_key_ref
    assert (token.secret, token.version) == ("slack-bot-token", "1")
    policy = jobs.get_iam_policy(request={"resource": name})
    assert {b.role: set(b.members) for b in policy.bindings} == {
        "roles/run.jobsExecutorWithOverrides": {
            roles.member(roles.FRONT, world.project),
            roles.member(roles.SCHEDULER, world.project),
        }
    }
    scheduler = world.clients(scheduler_v1.CloudSchedulerClient)
    sweep = scheduler.get_job(
        name=f"projects/{world.project}/locations/{REGION}/jobs/deployer-sweep"
    )
    assert sweep.schedule == "* * * * *"
    assert sweep.http_target.uri == f"https://run.googleapis.com/v2/{name}:run"
    assert b'"args": ["sweep"]' in sweep.http_target.body
    assert sweep.http_target.oauth_token.service_account_email == email(world, "deployer-scheduler")


def test_a_role_on_the_front_service_waits_for_its_first_deploy(world, capsys) -> None:
    # A dry run on a fresh project: Google refuses a role on a service that does not exist.
    _, out = world.setup(capsys, "--dry-run")

    assert "run.invoker on deployer: after the first deploy" in out
    assert "https://FRONT_URL/github/webhook" in out
    assert "deployer slack-manifest --url https://FRONT_URL" in out


def test_the_front_services_role_comes_once_it_exists(world, capsys) -> None:
    # The front is deployed before `service grants`, so its role comes in the same run.
    _, out = world.setup(capsys)

    assert "service grants: changed (granted run.invoker to allUsers on deployer)" in out
    services = world.clients(run_v2.ServicesClient)
    name = f"projects/{world.project}/locations/{REGION}/services/deployer"
    policy = services.get_iam_policy(request={"resource": name})
    assert {b.role: set(b.members) for b in policy.bindings} == {"roles/run.invoker": {"allUsers"}}
    # Someone made it private: the next run grants it again, and only that.
    policy.bindings[0].members.remove("allUsers")
    services.set_iam_policy(request={"resource": name, "policy": policy})
    _, again = world.setup(capsys)
    assert "service grants: changed (granted run.invoker to allUsers on deployer)" in again
    assert f"\n1 changed, {len(steps()) - 1} unchanged\n" in again


def world_config(world: World):
    from deployer.config import load_config

    return load_config(world.config)
