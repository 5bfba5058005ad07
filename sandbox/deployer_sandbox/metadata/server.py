"""Cloud Run's metadata server, for google-auth: who the code runs as, and its tokens.

    MetadataServer  http://127.0.0.1:PORT  (`address` is "127.0.0.1:PORT")
    ├── /                                                     ping: 200 "computeMetadata/"
    ├── /computeMetadata/v1/project/project-id                the project
    ├── /computeMetadata/v1/project/numeric-project-id        its number
    ├── /computeMetadata/v1/universe/universe-domain          googleapis.com
    └── /computeMetadata/v1/instance/service-accounts/
        └── default/ (or the account's email)/                ?recursive=true: JSON
            ├── email, aliases, scopes                        text
            ├── token                                         an access token, JSON
            └── identity?audience=AUD[&format=full]           an ID token for AUD

google-auth finds a metadata server through two environment variables
(google/auth/compute_engine/_metadata.py): it pings `http://$GCE_METADATA_IP`
and reads `http://$GCE_METADATA_HOST/computeMetadata/v1/...`. With both set to
`address` (what `environment()` gives; the sandbox sets them for every revision
and job task it starts), `google.auth.default()` gives Compute Engine
credentials and `google.oauth2.id_token.fetch_id_token` ID tokens, exactly as
on Cloud Run.

As the metadata server does (Compute Engine's "Query VM metadata" page): every
request needs `Metadata-Flavor: Google` (403 otherwise), a request carrying
`X-Forwarded-For` is refused (403), every answer carries `Metadata-Flavor:
Google`; text values are `application/text`, `?recursive=true` answers
`application/json`; unknown paths are 404, other methods than GET 405, and the
identity endpoint without an audience 400 ("non-empty audience parameter
required").

Access tokens are opaque strings no sandbox API checks (its gRPC takes any
credentials). ID tokens are signed by the sandbox's key, which Cloud Run's door
in the sandbox (`cloud_run.router`) checks.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from deployer_sandbox.common.serving import Serving
from deployer_sandbox.metadata.id_tokens import IdTokenKey

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "sandbox-project"
DEFAULT_PROJECT_NUMBER = "123456789012"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
ACCESS_TOKEN_LIFETIME_S = 3599  # what the metadata server answers for a fresh token
FLAVOR = ("Metadata-Flavor", "Google")
# The variables google-auth reads (google/auth/environment_vars.py).
HOST_ENV = "GCE_METADATA_HOST"
IP_ENV = "GCE_METADATA_IP"

_V1 = "/computeMetadata/v1/"
_ACCOUNTS = "instance/service-accounts/"
_MISSING_FLAVOR = 'Missing required header "Metadata-Flavor": "Google"\n'
_NO_AUDIENCE = "non-empty audience parameter required\n"
_ACCOUNT_ENTRIES = ("aliases", "email", "identity", "scopes", "token")


def default_email(project: str) -> str:
    """The sandbox's service account in `project`: deployer@PROJECT.iam.gserviceaccount.com."""
    return f"deployer@{project}.iam.gserviceaccount.com"


@dataclass(frozen=True)
class Identity:
    """Who code running in the sandbox is: its project and service account."""

    project_id: str
    project_number: str
    email: str


@dataclass(frozen=True)
class _Answer:
    status: int
    body: str
    content_type: str = "application/text"


class MetadataServer:
    """The metadata server, on its own loopback port. `start()` it, `close()` it.

    The identity (project and service account) may be changed at any time with
    `set_identity`; tokens minted afterwards carry the new one.
    """

    def __init__(
        self,
        key: IdTokenKey,
        host: str = "127.0.0.1",
        port: int = 0,
        project_id: str = DEFAULT_PROJECT,
        service_account_email: str | None = None,
    ) -> None:
        self.key = key
        self._lock = threading.Lock()
        self._identity = Identity(
            project_id, DEFAULT_PROJECT_NUMBER, service_account_email or default_email(project_id)
        )
        handler = type("MetadataHandler", (_Handler,), {"server_state": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.address = f"{host}:{self._server.server_address[1]}"
        self.url = f"http://{self.address}"
        self._serving = Serving(self._server, "metadata-server")

    @property
    def identity(self) -> Identity:
        with self._lock:
            return self._identity

    @property
    def project_id(self) -> str:
        return self.identity.project_id

    @property
    def service_account_email(self) -> str:
        return self.identity.email

    def set_identity(
        self,
        project_id: str,
        service_account_email: str | None = None,
        project_number: str = DEFAULT_PROJECT_NUMBER,
    ) -> None:
        """Run as `service_account_email` (default deployer@PROJECT...) in `project_id`."""
        with self._lock:
            self._identity = Identity(
                project_id, project_number, service_account_email or default_email(project_id)
            )

    def environment(self) -> dict[str, str]:
        """What a process needs in its environment for google-auth to find this server."""
        return {HOST_ENV: self.address, IP_ENV: self.address}

    def serve_this_process(self) -> None:
        """Point google-auth in this very process at this server, as on Cloud Run (for
        processes that run deploys next to the sandbox: `deployer sandbox`, tests,
        benchmarks). google-auth reads GCE_METADATA_HOST once, when its `_metadata`
        module is imported, so that is set too; a key file named would win, so none is."""
        os.environ.update(self.environment())
        os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        from google.auth.compute_engine import _metadata

        _metadata._GCE_METADATA_HOST = self.address

    def id_token(self, audience: str) -> str:
        """An ID token for `audience`, as the identity endpoint answers it."""
        return self.key.sign(audience, self.service_account_email)

    def start(self) -> MetadataServer:
        self._serving.start()
        return self

    def close(self) -> None:
        """Stop serving. Idempotent."""
        self._serving.close()

    # --- answers -------------------------------------------------------------------------

    def answer(self, path: str, query: dict[str, list[str]]) -> _Answer:
        """The answer to a GET of `path` (headers already checked)."""
        if path == "/":
            return _Answer(200, "computeMetadata/\n")
        if path in ("/computeMetadata", "/computeMetadata/"):
            return _Answer(200, "v1/\n")
        if not path.startswith(_V1):
            return _not_found()
        identity = self.identity
        rest = path[len(_V1) :]
        plain = {
            "project/project-id": identity.project_id,
            "project/numeric-project-id": identity.project_number,
            "universe/universe-domain": "googleapis.com",
        }
        if rest in plain:
            return _Answer(200, plain[rest])
        if rest == "":
            return _Answer(200, "instance/\nproject/\nuniverse/\n")
        if rest in ("instance/service-accounts", _ACCOUNTS):
            return _Answer(200, f"default/\n{identity.email}/\n")
        if rest.startswith(_ACCOUNTS):
            return self._account(identity, rest[len(_ACCOUNTS) :], query)
        return _not_found()

    def _account(self, identity: Identity, rest: str, query: dict[str, list[str]]) -> _Answer:
        account, _, entry = rest.partition("/")
        if account not in ("default", identity.email):
            return _not_found()
        recursive = _first(query, "recursive").lower() == "true"
        if entry == "":
            if recursive:
                info = {
                    "aliases": ["default"],
                    "email": identity.email,
                    "scopes": [CLOUD_PLATFORM],
                }
                return _Answer(200, json.dumps(info), "application/json")
            return _Answer(200, "".join(f"{name}\n" for name in _ACCOUNT_ENTRIES))
        if entry == "email":
            return _Answer(200, identity.email)
        if entry == "aliases":
            return _Answer(200, "default\n")
        if entry == "scopes":
            return _Answer(200, f"{CLOUD_PLATFORM}\n")
        if entry == "token":
            token = {
                "access_token": "ya29.sandbox-" + secrets.token_urlsafe(48),
                "expires_in": ACCESS_TOKEN_LIFETIME_S,
                "token_type": "Bearer",
            }
            return _Answer(200, json.dumps(token), "application/json")
        if entry == "identity":
            audience = _first(query, "audience")
            if not audience:
                return _Answer(400, _NO_AUDIENCE)
            return _Answer(200, self.key.sign(audience, identity.email))
        return _not_found()


def _first(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0] if values else ""


def _not_found() -> _Answer:
    return _Answer(404, "Not Found\n", "text/html; charset=UTF-8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Metadata Server for Serverless"
    sys_version = ""
    server_state: MetadataServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metadata %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if self.headers.get("X-Forwarded-For") is not None:
            # Compute Engine refuses what looks proxied: it may not come from the instance.
            self._send(_Answer(403, "Forbidden\n", "text/html; charset=UTF-8"))
        elif self.headers.get(FLAVOR[0]) != FLAVOR[1]:
            self._send(_Answer(403, _MISSING_FLAVOR, "text/html; charset=UTF-8"))
        elif self.command not in ("GET", "HEAD"):
            self._send(_Answer(405, "Method Not Allowed\n", "text/html; charset=UTF-8"))
        else:
            query = parse_qs(parts.query, keep_blank_values=True)
            self._send(self.server_state.answer(parts.path or "/", query))

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _send(self, answer: _Answer) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)
        payload = answer.body.encode()
        self.send_response(answer.status)
        self.send_header(*FLAVOR)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(payload)))
        if answer.status == 405:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
