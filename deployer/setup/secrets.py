"""Step `secrets`: the deployer's own secrets in Secret Manager.

    slack-signing-secret, slack-bot-token, github-webhook-secret   from the secrets input
    deployer-config                                                the config file's text

A secret is created when missing (automatic replication), and a version added only when
the value differs from the latest enabled version's: compared with `hmac.compare_digest`
and never printed. A value not given for a secret not yet stored is `missing`: the front
cannot start without it.
"""

from __future__ import annotations

import hmac

import google_crc32c
from google.api_core import exceptions
from google.cloud import secretmanager_v1

from deployer.setup.context import Setup
from deployer.setup.names import CONFIG_SECRET, INPUT_SECRETS, secret_name
from deployer.setup.steps import CALL_TIMEOUT, Outcome, StepResult

STEP = "secrets"


def _latest(client: secretmanager_v1.SecretManagerServiceClient, name: str) -> bytes | None:
    """The latest version's value; None when the secret has no enabled version."""
    try:
        found = client.access_secret_version(name=f"{name}/versions/latest", timeout=CALL_TIMEOUT)
    except (exceptions.NotFound, exceptions.FailedPrecondition):
        return None
    return bytes(found.payload.data)


def _store(setup: Setup, secret: str, value: str) -> str | None:
    """Create or update one secret; what changed (None: nothing)."""
    client = setup.client(secretmanager_v1.SecretManagerServiceClient)
    name = secret_name(setup.project, secret)
    data = value.encode()
    try:
        client.get_secret(name=name, timeout=CALL_TIMEOUT)
        exists = True
    except exceptions.NotFound:
        exists = False
    if exists:
        latest = _latest(client, name)
        if latest is not None and hmac.compare_digest(latest, data):
            return None
    if not setup.dry_run:
        if not exists:
            client.create_secret(
                parent=f"projects/{setup.project}",
                secret_id=secret,
                secret=secretmanager_v1.Secret(
                    replication=secretmanager_v1.Replication(
                        automatic=secretmanager_v1.Replication.Automatic()
                    )
                ),
                timeout=CALL_TIMEOUT,
            )
        client.add_secret_version(
            parent=name,
            payload=secretmanager_v1.SecretPayload(
                data=data, data_crc32c=int(google_crc32c.value(data))
            ),
            timeout=CALL_TIMEOUT,
        )
    verb = ("create" if setup.dry_run else "created") if not exists else "new version of"
    if exists and setup.dry_run:
        verb = "add a version to"
    return f"{verb} {secret}"


def _stored(setup: Setup, secret: str) -> bool:
    client = setup.client(secretmanager_v1.SecretManagerServiceClient)
    return _latest(client, secret_name(setup.project, secret)) is not None


def store_secrets(setup: Setup) -> StepResult:
    wanted = {**{s: setup.secret_values[s] for s in INPUT_SECRETS if s in setup.secret_values}}
    wanted[CONFIG_SECRET] = setup.config_text
    done = [change for secret, value in wanted.items() if (change := _store(setup, secret, value))]
    absent = [s for s in INPUT_SECRETS if s not in wanted and not _stored(setup, s)]
    if absent:
        given = ", ".join(INPUT_SECRETS[s] for s in absent)
        detail = "; ".join([*done, f"not stored and not given: {given} (on standard input)"])
        return StepResult(STEP, Outcome.MISSING, detail)
    if done:
        return StepResult(
            STEP, Outcome.PLANNED if setup.dry_run else Outcome.CHANGED, "; ".join(done)
        )
    return StepResult(STEP, Outcome.UNCHANGED, f"{len(wanted)} values as stored")
