"""Who the deployer runs as: the service account whose project bindings `check` reads.

    DEPLOYER_SERVICE_ACCOUNT       wins: a person running `check` with their own
                                   credentials names the account the deployer runs as
    the run's credentials          google-auth's Application Default Credentials, when they
                                   are a service account's: a key file, impersonation, or
                                   the metadata server (Cloud Run, and the sandbox's)
    neither                        unknown, and the check says how to name it

google-auth's credentials expose `service_account_email` for service-account keys
(`google.oauth2.service_account.Credentials`), impersonation
(`google.auth.impersonated_credentials.Credentials`) and the metadata server
(`google.auth.compute_engine.Credentials`, which says "default" until a refresh asks the
server for the address); user credentials have none.

Against the sandbox (DEPLOYER_GCP_EMULATOR_HOST) the credentials are asked only when
GCE_METADATA_HOST names its metadata server: otherwise google-auth would go looking for
Google's, which a test machine does not have.
"""

from __future__ import annotations

import os

from deployer.adapters.google_clients import emulator_host
from deployer.cli_ports import DeployerAccount

ACCOUNT_ENV = "DEPLOYER_SERVICE_ACCOUNT"
_METADATA_HOST_ENV = "GCE_METADATA_HOST"  # google/auth/environment_vars.py
_NAME_IT = f"set {ACCOUNT_ENV} to the deployer's service account"


def deployer_account() -> DeployerAccount:
    """The deployer's service account, and where it was learnt."""
    named = os.environ.get(ACCOUNT_ENV, "").strip()
    if named:
        return DeployerAccount(named.removeprefix("serviceAccount:"), ACCOUNT_ENV)
    if emulator_host() and not os.environ.get(_METADATA_HOST_ENV):
        return DeployerAccount(None, f"the sandbox's metadata server is not named: {_NAME_IT}")
    return _from_credentials()


def _from_credentials() -> DeployerAccount:
    import google.auth
    import google.auth.transport.requests
    from google.auth import exceptions

    try:
        credentials, _ = google.auth.default()
        email = getattr(credentials, "service_account_email", None)
        if email == "default":
            # The metadata server's account is learnt on the first refresh.
            credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
            email = getattr(credentials, "service_account_email", None)
    except exceptions.GoogleAuthError as error:
        return DeployerAccount(None, f"no credentials to read ({error}): {_NAME_IT}")
    if not isinstance(email, str) or "@" not in email:
        return DeployerAccount(
            None, f"the credentials are not a service account's (a person's?): {_NAME_IT}"
        )
    return DeployerAccount(email, "the credentials")
