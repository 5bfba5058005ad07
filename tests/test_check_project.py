"""`deployer check` of the deployer's own project (DEPLOYER_DISPATCH set) and of its Slack
token, through the real clients against the sandbox's Service Usage, IAM, Resource
Manager, Cloud Run and Slack."""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer import cli
from deployer.check_apis import WHY
from deployer.config import load_config
from deployer.setup import roles
from deployer.setup.apis import APIS
from tests.conftest import REGION
from tests.project_seed import create_worker_job, disable_api, grant, revoke, shape_as_setup

CONFIG = """\
[services.api]
project = "{project}"
region = "{region}"
service = "api"
image = "{region}-docker.pkg.dev/{project}/apps/api"

[services.api.source]
git = {git}

[environments.prod]
service = "api"
env = {{ MONGODB_URL = "mongodb://db.invalid:27017/app", SECRET_KEY = "not-a-real-key" }}
"""


@dataclass
class Site:
    project: str
    job: str
    deployer: str  # the deployer's account, its member string


@pytest.fixture
def site(gcp: Sandbox, tmp_path: Path, repo_root: Path) -> Site:
    """A project as `deployer setup` leaves it, with DEPLOYER_DISPATCH naming its worker job
    and DEPLOYER_SERVICE_ACCOUNT the account the deployer runs as."""
    project = f"ckp-{uuid.uuid4().hex[:10]}"
    path = tmp_path / "deployer.toml"
    path.write_text(
        CONFIG.format(project=project, region=REGION, git=json.dumps(str(repo_root))),
        encoding="utf-8",
    )
    os.environ["DEPLOYER_CONFIG"] = str(path)
    shape_as_setup(load_config(path), project, REGION)
    job = create_worker_job(project, REGION, task_timeout=3600)
    email = roles.email(roles.account(roles.DEPLOYER), project)
    os.environ.update(DEPLOYER_DISPATCH=job, DEPLOYER_SERVICE_ACCOUNT=email)
    return Site(project, job, f"serviceAccount:{email}")


def _line(out: str, status: str, subject: str) -> str:
    match = re.search(rf"^  {re.escape(status)} +{re.escape(subject)}: .*$", out, re.MULTILINE)
    assert match, f"no `{status} {subject}` line in:\n{out}"
    return match.group(0)


def test_a_project_as_setup_leaves_it_passes(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check", "prod"]) == 0
    out = capsys.readouterr().out
    apis = _line(out, "ok", f"APIs in {site.project}")
    assert "enabled: artifactregistry, cloudbuild, cloudresourcemanager, cloudscheduler" in apis
    line = _line(out, "ok", "roles of the deployer's account")
    assert "(from DEPLOYER_SERVICE_ACCOUNT)" in line
    assert "roles/run.developer" in line and line.endswith("nothing broader")
    assert "roles/run.viewer" in _line(out, "ok", "roles of the front's account")
    assert "no project roles" in _line(out, "ok", "roles of the scheduler's account")
    line = _line(out, "ok", "worker job")
    assert "deployer-worker exists, task timeout 3600 s, longer than the longest deploy" in line
    assert out.rstrip().endswith("0 FAIL: a deploy can go ahead")


def test_a_planted_editor_grant_is_flagged(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    grant(site.project, "roles/editor", site.deployer)
    assert cli.main(["check", "prod"]) == 0  # broader than needed: a warning
    line = _line(capsys.readouterr().out, "warn", "roles of the deployer's account")
    assert "the deployer's account has roles/editor: it needs only roles/artifactregistry" in line
    assert (
        f"gcloud projects remove-iam-policy-binding {site.project} "
        f"--member={site.deployer} --role=roles/editor" in line
    )


def test_run_admin_without_a_public_environment_is_flagged(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    grant(site.project, "roles/run.admin", site.deployer)
    assert cli.main(["check", "prod"]) == 0
    line = _line(capsys.readouterr().out, "warn", "roles of the deployer's account")
    assert "has roles/run.admin, but no environment is public" in line


def test_a_missing_role_fails_with_the_command_that_grants_it(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    revoke(site.project, "roles/cloudbuild.builds.editor", site.deployer)
    assert cli.main(["check", "prod"]) == 1
    line = _line(capsys.readouterr().out, "FAIL", "roles of the deployer's account")
    assert f"lacks roles/cloudbuild.builds.editor on {site.project}" in line
    assert (
        f"`gcloud projects add-iam-policy-binding {site.project} --member={site.deployer} "
        "--role=roles/cloudbuild.builds.editor`" in line
    )


def test_a_disabled_api_fails_naming_it(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    disable_api(site.project, "cloudscheduler.googleapis.com")
    assert cli.main(["check", "prod"]) == 1
    line = _line(capsys.readouterr().out, "FAIL", f"APIs in {site.project}")
    assert "not enabled: cloudscheduler.googleapis.com (the sweep)" in line
    assert (
        f"`gcloud services enable cloudscheduler.googleapis.com --project={site.project}`" in line
    )


def test_unreadable_apis_and_policy_are_warnings(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    # "x1" is no project ID Google would take: Service Usage and Resource Manager answer
    # PERMISSION_DENIED, as for a project the caller may not see.
    os.environ["DEPLOYER_DISPATCH"] = f"projects/x1/locations/{REGION}/jobs/deployer-worker"
    cli.main(["check", "prod"])
    out = capsys.readouterr().out
    assert "not checked (no permission to ask)" in _line(out, "warn", "APIs in x1")
    assert "not checked (no permission to ask)" in _line(
        out, "warn", "roles of the deployer's account"
    )
    _line(out, "ok", f"APIs in {site.project}")  # the service's own project still is


def test_a_missing_worker_job_fails(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    missing = site.job.replace("deployer-worker", "no-such-worker")
    os.environ["DEPLOYER_DISPATCH"] = missing
    assert cli.main(["check", "prod"]) == 1
    line = _line(capsys.readouterr().out, "FAIL", "worker job")
    assert f"{missing} does not exist: no deploy can start" in line


def test_a_worker_timeout_shorter_than_a_deploy_is_a_warning(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    project = f"ckq-{uuid.uuid4().hex[:10]}"
    shape_as_setup(load_config(os.environ["DEPLOYER_CONFIG"]), project, REGION)
    os.environ["DEPLOYER_DISPATCH"] = create_worker_job(project, REGION, task_timeout=600)
    os.environ["DEPLOYER_SERVICE_ACCOUNT"] = roles.email(roles.account(roles.DEPLOYER), project)
    assert cli.main(["check", "prod"]) == 0
    line = _line(capsys.readouterr().out, "warn", "worker job")
    # The default timeouts: 60 + 1200 + 120 + 300 + 120 + 300 + 60 s of stages, and one
    # traffic step's wait.
    assert "task timeout 600 s is not longer than the longest deploy" in line
    assert re.search(r"\(prod's \d+ s: ", line)
    assert f"--region={REGION} --task-timeout=" in line


def test_the_account_comes_from_the_metadata_server(
    site: Site, gcp: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without DEPLOYER_SERVICE_ACCOUNT, the run's own credentials say who it is, as on
    Cloud Run: google-auth asks the metadata server."""
    del os.environ["DEPLOYER_SERVICE_ACCOUNT"]
    gcp.metadata.set_identity(site.project)
    try:
        assert cli.main(["check", "prod"]) == 0
    finally:
        gcp.metadata.set_identity("sandbox-project")
    line = _line(capsys.readouterr().out, "ok", "roles of the deployer's account")
    assert f"deployer@{site.project}.iam.gserviceaccount.com (from the credentials)" in line


def test_the_bot_token_is_checked_with_auth_test(
    site: Site, gcp: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ.update(SLACK_API_URL=gcp.slack_api_url, SLACK_BOT_TOKEN="xoxb-check-project")
    assert cli.main(["check", "prod"]) == 0
    line = _line(capsys.readouterr().out, "ok", "slack token")
    assert "bot @deployer" in line and "in workspace Sandbox (T0SANDBOX1)" in line

    # Not a token Slack issued: every thread would fail.
    os.environ["SLACK_BOT_TOKEN"] = "xoxp-not-the-bot-token"
    assert cli.main(["check", "prod"]) == 1
    out = capsys.readouterr().out
    line = _line(out, "FAIL", "slack token")
    assert "Slack refuses SLACK_BOT_TOKEN (invalid_auth)" in line
    assert "gcloud secrets versions add slack-bot-token --data-file=-" in line
    assert "xoxp-not-the-bot-token" not in out


def test_the_apis_checked_are_among_those_setup_enables() -> None:
    assert set(WHY) <= set(APIS)
