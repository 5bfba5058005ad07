"""The names setup gives what it makes, as README's "In production" names them."""

from __future__ import annotations

WORKER_JOB = "deployer-worker"
SWEEP_JOB = "deployer-sweep"
FRONT_SERVICE = "deployer"  # the function's name, and its underlying Cloud Run service
# How the front is deployed (`setup --front`): a 2nd-gen function, or a Cloud Run service.
FRONT_FUNCTION, FRONT_RUN = "function", "run"
CONFIG_SECRET = "deployer-config"

# Secret id -> the variable it comes from in the secrets input (and the one the front and
# the worker read it as).
SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN, GITHUB_WEBHOOK_SECRET = (
    "slack-signing-secret",
    "slack-bot-token",
    "github-webhook-secret",
)
INPUT_SECRETS = {
    SLACK_SIGNING_SECRET: "SLACK_SIGNING_SECRET",
    SLACK_BOT_TOKEN: "SLACK_BOT_TOKEN",
    GITHUB_WEBHOOK_SECRET: "GITHUB_WEBHOOK_SECRET",
}
FRONT_SECRETS = (CONFIG_SECRET, SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN, GITHUB_WEBHOOK_SECRET)
WORKER_SECRETS = (CONFIG_SECRET, SLACK_BOT_TOKEN)


def secret_name(project: str, secret: str) -> str:
    return f"projects/{project}/secrets/{secret}"


def worker_job_name(project: str, region: str) -> str:
    return f"projects/{project}/locations/{region}/jobs/{WORKER_JOB}"


def sweep_job_name(project: str, region: str) -> str:
    return f"projects/{project}/locations/{region}/jobs/{SWEEP_JOB}"


def run_job_url(project: str, region: str) -> str:
    """The worker job's `:run` URL, as Cloud Scheduler calls it (Jobs.RunJob's HTTP rule)."""
    return f"https://run.googleapis.com/v2/{worker_job_name(project, region)}:run"
