"""Step `secrets`: the deployer's own secrets in Secret Manager.

    slack-signing-secret, slack-bot-token, github-webhook-secret   from the secrets input
    deployer-config                                                the config file's text

A secret is created when missing (automatic replication), and a version added only when
the value differs from the newest enabled version's (read by `SecretManagerWriter`, as
`deployer env import` reads it): compared with `hmac.compare_digest` and never printed.
A value not given for a secret not yet stored is `missing`: the front cannot start
without it. The version stored or found is the one the front and the worker job are
pinned to (`Setup.stored_versions`).
"""

from __future__ import annotations

import hmac

from google.cloud import secretmanager_v1

from deployer.adapters.secret_writer import SecretManagerWriter
from deployer.setup.context import Setup
from deployer.setup.names import CONFIG_SECRET, INPUT_SECRETS
from deployer.setup.steps import Outcome, StepResult

STEP = "secrets"


def _store(setup: Setup, writer: SecretManagerWriter, secret: str, value: str) -> str | None:
    """Create or update one secret, noting its version in `setup.stored_versions`; what
    changed (None: nothing)."""
    data = value.encode()
    stored = writer.stored(setup.project, secret)
    if stored is not None and stored.data is not None and hmac.compare_digest(stored.data, data):
        if stored.version:
            setup.stored_versions[secret] = stored.version
        return None
    if not setup.dry_run:
        if stored is None:
            writer.create(setup.project, secret, {})
        setup.stored_versions[secret] = writer.add_version(setup.project, secret, data)
    if stored is None:
        return f"{'create' if setup.dry_run else 'created'} {secret}"
    return f"{'add a version to' if setup.dry_run else 'new version of'} {secret}"


def _stored(setup: Setup, writer: SecretManagerWriter, secret: str) -> bool:
    """Whether `secret` holds a value already (its version noted for the pins)."""
    stored = writer.stored(setup.project, secret)
    if stored is None or stored.data is None:
        return False
    if stored.version:
        setup.stored_versions[secret] = stored.version
    return True


def store_secrets(setup: Setup) -> StepResult:
    wanted = {**{s: setup.secret_values[s] for s in INPUT_SECRETS if s in setup.secret_values}}
    wanted[CONFIG_SECRET] = setup.config_text
    writer = SecretManagerWriter(setup.client(secretmanager_v1.SecretManagerServiceClient))
    done = [
        change
        for secret, value in wanted.items()
        if (change := _store(setup, writer, secret, value))
    ]
    absent = [s for s in INPUT_SECRETS if s not in wanted and not _stored(setup, writer, s)]
    if absent:
        given = ", ".join(INPUT_SECRETS[s] for s in absent)
        detail = "; ".join(
            [
                *done,
                f"not stored and not given: {given} "
                "(give them in the secrets file or on standard input)",
            ]
        )
        return StepResult(STEP, Outcome.MISSING, detail)
    if done:
        return StepResult(
            STEP, Outcome.PLANNED if setup.dry_run else Outcome.CHANGED, "; ".join(done)
        )
    count = f"{len(wanted)} value" + ("s" if len(wanted) != 1 else "")
    return StepResult(STEP, Outcome.UNCHANGED, f"{count} as stored")
