"""A team's deployer.toml as `deployer setup` meets it: one service from a public
repository, prod with its own runtime account, secrets (one of them not made yet), a long
build and a migration hook (which set the worker job's task timeout)."""

from __future__ import annotations

REGION = "europe-west1"


def config_text(project: str, extra_prod: str = "") -> str:
    """The config for `project`; `extra_prod` is appended to prod's table (a channel, say)."""
    return f"""
[services.backend]
project = "{project}"
region = "{REGION}"
service = "backend"
image = "{REGION}-docker.pkg.dev/{project}/apps/backend"
source = {{ git = "https://github.com/acme/content-api.git" }}

[environments.prod]
service = "backend"
secrets = {{ MONGODB_URL = "mongodb-url", API_KEY = "api-key" }}
timeouts = {{ build = 1800 }}
hooks.predeploy = {{ command = ["python", "-m", "migrate"], timeout = 900 }}
run.service_account = "backend-run@{project}.iam.gserviceaccount.com"
{extra_prod}"""
