"""What the front finds in its environment, whichever way it is deployed
(`deployer/front/settings.py` and `Engine.from_environment` read these):

    DEPLOYER_CONFIG        projects/P/secrets/deployer-config/versions/N (read at start)
    DEPLOYER_STORE         firestore://P
    DEPLOYER_DISPATCH      the worker job: a deploy runs there, not in the front
    GOOGLE_CLOUD_PROJECT   P
    SLACK_SIGNING_SECRET,  from their secrets (`names.INPUT_SECRETS`), at version N;
    SLACK_BOT_TOKEN,       only those that exist: a reference to a missing secret fails
    GITHUB_WEBHOOK_SECRET  the deploy, so one not stored yet is left out and said

N is the version the `secrets` step stored or found (`Setup.version_of`): an env secret is
read once, when an instance starts, so `latest` would leave instances that started before
a change on the old value for as long as they live. Pinned, a new value is a new
deployment of the front, made by setup, and every instance after it reads the same.
"""

from __future__ import annotations

from google.api_core import exceptions
from google.cloud import secretmanager_v1

from deployer.setup.context import Setup
from deployer.setup.names import (
    CONFIG_SECRET,
    FRONT_SERVICE,
    INPUT_SECRETS,
    secret_name,
    worker_job_name,
)
from deployer.setup.steps import CALL_TIMEOUT, Outcome, SetupFailed, StepResult


def plain_env(project: str, region: str, config_version: str = "latest") -> dict[str, str]:
    """The front's plain variables (the config pinned to `config_version`)."""
    return {
        "DEPLOYER_CONFIG": f"{secret_name(project, CONFIG_SECRET)}/versions/{config_version}",
        "DEPLOYER_DISPATCH": worker_job_name(project, region),
        "DEPLOYER_STORE": f"firestore://{project}",
        "GOOGLE_CLOUD_PROJECT": project,
    }


def _stored(setup: Setup, secret: str) -> bool:
    """Whether `secret` has a version to read (or, in a dry run, will have one)."""
    if setup.dry_run and secret in setup.secret_values:
        return True
    client = setup.client(secretmanager_v1.SecretManagerServiceClient)
    name = f"{secret_name(setup.project, secret)}/versions/latest"
    try:
        client.get_secret_version(name=name, timeout=CALL_TIMEOUT)
    except exceptions.NotFound:
        return False
    return True


def secret_env(setup: Setup) -> tuple[dict[str, str], list[str]]:
    """variable -> secret id of the front's secrets that are stored, and those missing."""
    present: dict[str, str] = {}
    missing: list[str] = []
    for secret, variable in sorted(INPUT_SECRETS.items(), key=lambda item: item[1]):
        if _stored(setup, secret):
            present[variable] = secret
        else:
            missing.append(secret)
    return present, missing


# The label Cloud Functions puts on the Cloud Run service under a 2nd-gen function
# (`gcloud run services describe` shows goog-managed-by: cloudfunctions).
MANAGED_BY_FUNCTIONS = ("goog-managed-by", "cloudfunctions")


def other_front(setup: Setup, wanted: str) -> SetupFailed:
    """The front is already deployed the other way: setup does not replace it silently."""
    found = "a Cloud Run service" if wanted == "function" else "a function"
    delete = (
        f"gcloud run services delete {FRONT_SERVICE}"
        if wanted == "function"
        else f"gcloud functions delete {FRONT_SERVICE}"
    )
    return SetupFailed(
        "front",
        f"{FRONT_SERVICE} is deployed as {found}, not as a {wanted}",
        f"Run setup with --front {'run' if wanted == 'function' else 'function'} to keep it, "
        f"or delete it first ({delete} --region {setup.region} --project {setup.project})",
    )


def missing_note(missing: list[str]) -> str:
    """`without slack-bot-token (not stored yet: give it to setup)`, or nothing."""
    if not missing:
        return ""
    return f"without {', '.join(missing)} (not stored yet: give it to setup and run it again)"


def front_result(outcome: Outcome, what: str, note: str) -> StepResult:
    """The `front` step's line: what was found or done, and the note on missing secrets."""
    return StepResult("front", outcome, "; ".join(filter(None, [what, note])))
