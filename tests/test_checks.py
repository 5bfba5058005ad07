"""`deployer check` against the sandbox: one line per check, exit 1 on any FAIL."""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from deployer_sandbox.harness.chat_front import create_worker_job, store_bot_token
from deployer_sandbox.harness.sandbox import Sandbox
from deployer_sandbox.harness.seed import Demo
from google.cloud import run_v2, secretmanager_v1
from google.iam.v1 import iam_policy_pb2

from deployer import cli
from deployer.adapters.google_clients import google_client
from deployer.adapters.secret_writer import SecretManagerWriter
from deployer.config import load_config
from tests.conftest import REGION
from tests.git_repos import new_repository
from tests.project_seed import shape_as_setup

CONFIG = """\
[services.api]
project = "{project}"
region = "{region}"
service = "api"
image = "{region}-docker.pkg.dev/{project}/apps/api"
build_config = {build_config}

[services.api.source]
git = {git}

[environments.prod]
service = "api"
env = {{ LOG_LEVEL = "info" }}
env_from_secret = "api-dotenv"

[environments.prod.secrets]
MONGODB_URL = "mongodb-url"
SECRET_KEY = "secret-key:1"
"""


@dataclass
class World:
    config: Path
    project: str
    client: secretmanager_v1.SecretManagerServiceClient

    def secret(self, secret_id: str, value: bytes) -> None:
        writer = SecretManagerWriter(self.client)
        writer.create(self.project, secret_id, {})
        writer.add_version(self.project, secret_id, value)

    def write(self, repo: Path, build_config: str = "cloudbuild.yaml") -> None:
        self.config.write_text(
            CONFIG.format(
                project=self.project,
                region=REGION,
                build_config=json.dumps(build_config),
                git=json.dumps(str(repo)),
            ),
            encoding="utf-8",
        )


@pytest.fixture
def world(gcp: Sandbox, tmp_path: Path, repo_root: Path) -> World:
    """A project holding every secret the config names; the service not deployed yet."""
    project = f"chk-{uuid.uuid4().hex[:10]}"
    config = tmp_path / "deployer.toml"
    os.environ["DEPLOYER_CONFIG"] = str(config)
    built = World(config, project, google_client(secretmanager_v1.SecretManagerServiceClient))
    built.write(repo_root)
    built.secret("mongodb-url", b"mongodb://db.invalid:27017/app")
    built.secret("secret-key", b"not-a-real-key-but-long-enough")
    built.secret("api-dotenv", b'FEATURE_FLAGS="a,b=c"\nPORT=9000\n')
    return built


def _line(out: str, status: str, subject: str) -> str:
    match = re.search(rf"^  {re.escape(status)} +{re.escape(subject)}: .*$", out, re.MULTILINE)
    assert match, f"no `{status} {subject}` line in:\n{out}"
    return match.group(0)


def test_a_good_environment_passes(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "prod"]) == 0
    out = capsys.readouterr().out
    assert "is valid: 1 service (api), 1 environment (prod)" in _line(out, "ok", "config")
    assert re.search(
        r"cloudbuild.yaml at [0-9a-f]{12} loads \(3 steps\)", _line(out, "ok", "build config")
    )
    assert "mongodb-url:latest -> version 1, enabled" in _line(out, "ok", "secret MONGODB_URL")
    assert "secret-key:1 -> version 1, enabled" in _line(out, "ok", "secret SECRET_KEY")
    assert "api-dotenv:latest -> version 1: 1 variable parse" in _line(out, "ok", "env_from_secret")
    assert "PORT from api-dotenv skipped: Cloud Run sets it" in _line(
        out, "warn", "env_from_secret"
    )
    assert "will be created by the first deploy" in _line(out, "ok", "service api")
    assert re.search(r"resolves to [0-9a-f]{12}$", _line(out, "ok", "ref HEAD"))
    assert "Artifact Registry in europe-west1" in _line(out, "ok", "image")
    # Secret Manager's IAM, read back: the caller may read the versions; nobody granted the
    # runtime account access to these secrets yet (setup does), which is a warning.
    assert "secretmanager.versions.get on 3 secrets" in _line(out, "ok", "rights on secrets")
    assert "default compute service account has no secretAccessor binding on" in _line(
        out, "warn", "runtime access to secrets"
    )
    assert "not checked (the service does not exist yet" in _line(out, "warn", "rights on service")
    assert "public access" not in out  # nothing to compare before the service exists
    assert out.rstrip().endswith("0 FAIL: a deploy can go ahead")
    assert "not-a-real-key" not in out and "db.invalid" not in out


def test_a_missing_secret_fails_naming_it(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.config.write_text(
        world.config.read_text().replace('"secret-key:1"', '"signing-key"'), encoding="utf-8"
    )
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    line = _line(out, "FAIL", "secret SECRET_KEY")
    assert f"secret signing-key not found in project {world.project}" in line
    _line(out, "ok", "secret MONGODB_URL")
    assert out.rstrip().endswith("1 FAIL: would stop a deploy")


def test_a_bad_build_config_fails(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "app"
    (repo / "ci").mkdir(parents=True)
    (repo / "ci" / "build.yaml").write_text(
        "steps:\n- name: gcr.io/cloud-builders/docker\n  argz: [build]\n"
    )
    new_repository(repo)
    world.write(repo, "ci/build.yaml")
    assert cli.main(["check", "prod"]) == 1
    line = _line(capsys.readouterr().out, "FAIL", "build config")
    assert "build config is invalid" in line and "argz" in line and "ci/build.yaml at" in line


def test_a_build_config_only_on_this_machine_fails(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The build config is read from the repository at the commit, as the worker reads it
    from its image: a file that was never committed is not there."""
    repo = tmp_path / "app"
    (repo / "ci").mkdir(parents=True)
    (repo / "README.md").write_text("app\n")
    new_repository(repo)
    (repo / "cloudbuild.yaml").write_text("steps:\n- name: python\n  args: [-V]\n")
    world.write(repo)
    assert cli.main(["check", "prod"]) == 1
    line = _line(capsys.readouterr().out, "FAIL", "build config")
    assert re.search(r"build config cloudbuild.yaml not found at [0-9a-f]{12} in ", line)
    assert "commit it" in line


def test_an_unknown_ref_and_environment_fail(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check", "prod", "--ref", "no-such-branch-anywhere"]) == 1
    assert "no-such-branch-anywhere" in _line(
        capsys.readouterr().out, "FAIL", "ref no-such-branch-anywhere"
    )
    assert cli.main(["check", "staging"]) == 1
    assert "no environment 'staging'" in _line(capsys.readouterr().out, "FAIL", "config")


def test_an_invalid_config_fails_with_its_field(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.config.write_text(
        world.config.read_text().replace('service = "api"\nenv', 'service = "web"\nenv')
    )
    assert cli.main(["check"]) == 1
    assert "environments.prod.service is 'web'" in _line(capsys.readouterr().out, "FAIL", "config")


def test_a_deployed_service_is_reported_serving(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check", "prod"]) == 0
    out = capsys.readouterr().out
    assert f"exists, serving {demo.revision} 100%" in _line(out, "ok", "service backend")
    # The sandbox answers IAM questions for Cloud Run: its caller may do anything.
    assert "run.services.get, run.services.update, run.services.getIamPolicy on backend" in _line(
        out, "ok", "rights on service"
    )
    # The demo config has allow_unauthenticated = true, and its first deploy applied it.
    assert "public (allUsers may invoke)" in _line(out, "ok", "public access")


def test_a_policy_that_differs_from_the_config_is_a_warning(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    services = google_client(run_v2.ServicesClient)
    name = f"projects/{demo.project}/locations/{demo.region}/services/{demo.service}"
    read = services.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=name))
    del read.bindings[:]
    services.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=read))

    assert cli.main(["check", "prod"]) == 0
    line = _line(capsys.readouterr().out, "warn", "public access")
    assert "allow_unauthenticated = true, but allUsers lacks roles/run.invoker" in line
    assert line.endswith("the next deploy makes it public")


def _with_slack(world: World, gcp: Sandbox, environment: str) -> None:
    """`environment` (lines of [environments.prod]) added; check reads Slack as the bot."""
    text = world.config.read_text(encoding="utf-8")
    anchor = 'env_from_secret = "api-dotenv"\n'
    world.config.write_text(text.replace(anchor, anchor + environment), encoding="utf-8")
    os.environ.update(SLACK_API_URL=gcp.slack_api_url, SLACK_BOT_TOKEN="xoxb-check-tests")


def test_the_bot_must_be_able_to_post_in_the_environments_channel(
    world: World, gcp: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    private = "G" + uuid.uuid4().hex[:10].upper()
    gcp.http.sink.add_channel(private, "ops", is_private=True, is_member=False)
    _with_slack(world, gcp, f'channel = "{private}"\n')
    try:
        assert cli.main(["check", "prod"]) == 1
    finally:
        for name in ("SLACK_API_URL", "SLACK_BOT_TOKEN"):
            os.environ.pop(name)
    line = _line(capsys.readouterr().out, "FAIL", "slack channel")
    assert private in line and "/invite" in line


def test_a_public_channel_not_joined_needs_chat_write_public(
    world: World, gcp: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    public = "C" + uuid.uuid4().hex[:10].upper()
    gcp.http.sink.add_channel(public, "deploys", is_member=False)
    _with_slack(world, gcp, f'channel = "{public}"\n')
    granted = gcp.http.sink.scopes()
    try:
        assert cli.main(["check", "prod"]) == 0
        line = _line(capsys.readouterr().out, "ok", "slack channel")
        assert public in line and "chat:write.public" in line
        # An app installed without the scope: Slack would refuse the thread.
        gcp.http.sink.set_scopes(granted - {"chat:write.public"})
        assert cli.main(["check", "prod"]) == 1
        line = _line(capsys.readouterr().out, "FAIL", "slack channel")
        assert "not_in_channel" in line and "chat:write.public" in line
    finally:
        gcp.http.sink.set_scopes(granted)
        for name in ("SLACK_API_URL", "SLACK_BOT_TOKEN"):
            os.environ.pop(name)


def test_user_groups_a_free_workspace_will_not_list_fail_the_check(
    world: World, gcp: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    group = "S" + uuid.uuid4().hex[:10].upper()
    gcp.http.sink.add_usergroup(group, "deployers", ["U0CHECKER"])
    _with_slack(world, gcp, f'allow = {{ slack_usergroups = ["{group}"] }}\n')
    gcp.faults.arm(
        "slack_error", method="usergroups.users.list", error="plan_upgrade_required", times=1
    )
    try:
        assert cli.main(["check", "prod"]) == 1
    finally:
        gcp.faults.clear()
        for name in ("SLACK_API_URL", "SLACK_BOT_TOKEN"):
            os.environ.pop(name)
    line = _line(capsys.readouterr().out, "FAIL", "slack user groups")
    assert group in line and "this workspace's plan" in line and "allow.slack_users" in line
    # Readable, the same group passes and its size is shown.
    _with_slack(world, gcp, "")
    try:
        cli.main(["check", "prod"])
    finally:
        for name in ("SLACK_API_URL", "SLACK_BOT_TOKEN"):
            os.environ.pop(name)
    assert f"{group} (1 members)" in _line(capsys.readouterr().out, "ok", "slack user groups")


def test_each_missing_right_is_named_with_the_role_that_grants_it(
    demo_cloud: tuple[Demo, Sandbox], capsys: pytest.CaptureFixture[str]
) -> None:
    demo, cloud = demo_cloud
    # A private service: the deployer's probes go through Cloud Run's door.
    demo.config.path.write_text(
        demo.config.path.read_text().replace(
            "allow_unauthenticated = true", "allow_unauthenticated = false"
        )
    )
    cloud.faults.arm("caller_roles", roles=["roles/run.viewer"])
    assert cli.main(["check", "prod"]) == 1
    line = _line(capsys.readouterr().out, "FAIL", "rights on service")
    assert "missing run.services.update, run.routes.invoke on backend" in line
    assert "roles/run.developer" in line
    assert "roles/run.invoker" in line and "gcloud run services add-iam-policy-binding" in line

    # roles/run.developer holds run.routes.* (invoke included): nothing is missing.
    cloud.faults.clear()
    cloud.faults.arm("caller_roles", roles=["roles/run.developer"])
    cli.main(["check", "prod"])  # fails on making it private: that needs roles/run.admin
    assert "run.routes.invoke on backend" in _line(
        capsys.readouterr().out, "ok", "rights on service"
    )


def test_the_worker_job_must_be_startable_with_overrides(
    demo_cloud: tuple[Demo, Sandbox], capsys: pytest.CaptureFixture[str]
) -> None:
    demo, cloud = demo_cloud
    host = cloud.grpc_address
    job = create_worker_job(
        cloud,
        f"projects/{demo.project}/locations/{demo.region}",
        {},
        store_bot_token(host, demo.project, "xoxb-check"),
        demo.config.path.read_text(encoding="utf-8"),
    )
    os.environ["DEPLOYER_DISPATCH"] = job
    # With DEPLOYER_DISPATCH, check reads the deployer's project too: shaped as setup does.
    shape_as_setup(load_config(demo.config.path), demo.project, demo.region)
    os.environ["DEPLOYER_SERVICE_ACCOUNT"] = f"deployer@{demo.project}.iam.gserviceaccount.com"
    cloud.faults.arm("caller_roles", roles=["roles/run.jobsExecutor"])
    assert cli.main(["check", "prod"]) == 1
    line = _line(capsys.readouterr().out, "FAIL", "rights on worker job")
    assert "run.jobs.runWithOverrides" in line and "roles/run.jobsExecutorWithOverrides" in line

    cloud.faults.clear()
    cloud.faults.arm("caller_roles", roles=["roles/run.developer"])
    assert cli.main(["check", "prod"]) == 0
    assert "run.jobs.runWithOverrides on" in _line(
        capsys.readouterr().out, "ok", "rights on worker job"
    )


def test_a_health_path_the_serving_revision_does_not_answer_is_warned_of(
    demo_cloud: tuple[Demo, Sandbox], capsys: pytest.CaptureFixture[str]
) -> None:
    demo, _ = demo_cloud
    assert cli.main(["check", "prod"]) == 0
    line = _line(capsys.readouterr().out, "ok", "health /health")
    assert f"answers 200 on {demo.service_uri}" in line

    # The app serves its health route elsewhere (a FastAPI template's
    # /api/v1/utils/health-check/): the candidate would be judged on a path that 404s.
    demo.config.path.write_text(
        demo.config.path.read_text().replace(
            'path = "/health"', 'path = "/api/v1/utils/health-check/"'
        )
    )
    assert cli.main(["check", "prod"]) == 0  # a warning, not a failure
    line = _line(capsys.readouterr().out, "warn", "health /api/v1/utils/health-check/")
    assert "answers 404 on the revision that serves now" in line
    assert "services.backend.health.path" in line


def test_analysis_is_checked_against_monitoring(
    world: World, gcp: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    world.config.write_text(
        world.config.read_text()
        + "\n[environments.prod.analysis]\nmax_error_rate = 0.01\ninterval = 5\n",
        encoding="utf-8",
    )
    assert cli.main(["check", "prod"]) == 0
    line = _line(capsys.readouterr().out, "ok", "analysis")
    assert "Cloud Monitoring readable: api answered no requests in the last 10 min" in line
    assert "judged on 5xx at most 1%, 50 requests a step" in line

    gcp.faults.arm("monitoring_denied")
    assert cli.main(["check", "prod"]) == 1
    line = _line(capsys.readouterr().out, "FAIL", "analysis")
    assert "PermissionDenied" in line and line.endswith("every step would fail closed")


def test_analysis_charts_need_files_write(
    world: World, gcp: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    channel = "C" + uuid.uuid4().hex[:10].upper()
    gcp.http.sink.add_channel(channel, "deploys")
    _with_slack(world, gcp, f'channel = "{channel}"\n')
    world.config.write_text(
        world.config.read_text() + "\n[environments.prod.analysis]\nmax_error_rate = 0.01\n",
        encoding="utf-8",
    )
    granted = gcp.http.sink.scopes()
    try:
        assert cli.main(["check", "prod"]) == 0
        assert "may attach the analysis chart" in _line(
            capsys.readouterr().out, "ok", "slack files"
        )
        gcp.http.sink.set_scopes(granted - {"files:write"})
        assert cli.main(["check", "prod"]) == 0
        line = _line(capsys.readouterr().out, "warn", "slack files")
        assert "lacks the `files:write` scope" in line and "without its chart" in line
    finally:
        gcp.http.sink.set_scopes(granted)
        for name in ("SLACK_API_URL", "SLACK_BOT_TOKEN"):
            os.environ.pop(name)
