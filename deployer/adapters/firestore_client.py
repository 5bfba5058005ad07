"""The one place that constructs the Firestore client (the production store's).

With `FIRESTORE_EMULATOR_HOST=host:port` set, `google.cloud.firestore` itself
talks plaintext gRPC to the emulator with anonymous credentials; the project is
then the one given, else `GOOGLE_CLOUD_PROJECT`, else the library's emulator
default. Without it the client uses Application Default Credentials, and the
project is the one given, else `GOOGLE_CLOUD_PROJECT`, else ADC's.
"""

from __future__ import annotations

import os

from google.auth.exceptions import GoogleAuthError
from google.cloud import firestore

from deployer.errors import RefusedError

FIRESTORE_EMULATOR_HOST_ENV = "FIRESTORE_EMULATOR_HOST"
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"


def firestore_emulator_host() -> str | None:
    """The Firestore emulator the client talks to, or None for real Firestore."""
    return os.environ.get(FIRESTORE_EMULATOR_HOST_ENV) or None


def firestore_client(project: str | None = None, database: str | None = None) -> firestore.Client:
    """A Firestore client for `project` and `database`; RefusedError when it cannot be built.

    Building it makes no call: an unreachable Firestore shows on the first request.
    """
    project = project or os.environ.get(PROJECT_ENV) or None
    try:
        return firestore.Client(project=project, database=database)
    except (GoogleAuthError, OSError) as error:
        # OSError is what google.auth raises when credentials carry no project.
        raise RefusedError(
            f"cannot reach Firestore for the store: {str(error).rstrip('.')}. Name the project in "
            f"DEPLOYER_STORE=firestore://PROJECT or {PROJECT_ENV}, and give the deployer "
            "Application Default Credentials (or set FIRESTORE_EMULATOR_HOST). "
            "Without the store there are no locks, so nothing is deployed."
        ) from None
