"""ID tokens for probing a private Cloud Run service, from whatever credentials the run has.

    the metadata server       on Cloud Run, Compute Engine, and the sandbox (GCE_METADATA_HOST)
    a service-account key     GOOGLE_APPLICATION_CREDENTIALS naming one
    impersonation             Application Default Credentials of type
                              `impersonated_service_account`, made once with
                              `gcloud auth application-default login
                              --impersonate-service-account SA`
    user credentials alone    no ID token: `IdTokenUnavailable`, saying how to get one

google-auth's `fetch_id_token` covers the first two, and the third only when
GOOGLE_APPLICATION_CREDENTIALS names the file (google/oauth2/id_token.py); with
user credentials it raises `DefaultCredentialsError`. So the well-known ADC file
is read here too. The audience is the service's own URL (`Service.uri`), also when
a tag URL is probed: Cloud Run checks the token's `aud` against the service's URLs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from google.auth import exceptions

# Tokens live an hour; kept a while so a soak's many probes do not each fetch one.
_KEEP = 10 * 60
FIX = (
    "A private service is probed with an ID token. Run where a metadata server answers "
    "(Cloud Run, Compute Engine), point GOOGLE_APPLICATION_CREDENTIALS at a service-account "
    "key, or run once `gcloud auth application-default login "
    "--impersonate-service-account DEPLOYER_SA` (you need roles/iam.serviceAccountTokenCreator "
    "on it); or make the service public (run.allow_unauthenticated = true)."
)


class IdTokenUnavailable(Exception):
    """No ID token could be had; the message says why and how to get one."""


class GoogleIdTokens:
    """`audience -> ID token` from the run's credentials, kept for a few minutes."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, audience: str) -> str:
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(audience)
        if kept is not None and now - kept[0] < _KEEP:
            return kept[1]
        token = fetch(audience)
        with self._lock:
            self._kept[audience] = (now, token)
        return token


def fetch(audience: str) -> str:
    """A fresh ID token for `audience`; IdTokenUnavailable when there is none to be had."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    request = google.auth.transport.requests.Request()
    try:
        token: str = google.oauth2.id_token.fetch_id_token(request, audience)  # type: ignore[no-untyped-call]
        return token
    except exceptions.DefaultCredentialsError as error:
        found = _adc_file()
        if found.get("type") == "impersonated_service_account":
            return _impersonated(found, audience, request)
        kind = found.get("type") or "none"
        raise IdTokenUnavailable(
            f"no ID token for {audience} (credentials found: {kind}; {error}). {FIX}"
        ) from None
    except (exceptions.RefreshError, exceptions.TransportError) as error:
        raise IdTokenUnavailable(f"no ID token for {audience}: {error}. {FIX}") from None


def _impersonated(info: dict[str, Any], audience: str, request: Any) -> str:
    from google.auth import impersonated_credentials

    try:
        target = impersonated_credentials.Credentials.from_impersonated_service_account_info(info)  # type: ignore[no-untyped-call]
        credentials = impersonated_credentials.IDTokenCredentials(  # type: ignore[no-untyped-call]
            target_credentials=target, target_audience=audience, include_email=True
        )
        credentials.refresh(request)
    except (exceptions.GoogleAuthError, ValueError) as error:
        raise IdTokenUnavailable(
            f"no ID token for {audience} by impersonation: {error}. {FIX}"
        ) from None
    return str(credentials.token)


def _adc_file() -> dict[str, Any]:
    """The Application Default Credentials file's JSON ({} when there is none)."""
    from google.auth import _cloud_sdk

    named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    path = Path(named or _cloud_sdk.get_application_default_credentials_path())  # type: ignore[no-untyped-call]
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
