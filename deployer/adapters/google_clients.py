"""The one place that constructs Google API clients.

With `DEPLOYER_GCP_EMULATOR_HOST=host:port` set, every client speaks plaintext
gRPC to that address with no credentials (the sandbox, `deployer sandbox`); the
client libraries themselves read no such variable. Without it, clients use
Application Default Credentials against the real APIs.

Cloud Storage speaks JSON over HTTP, not gRPC: its client reads the standard
`STORAGE_EMULATOR_HOST` (scheme included, e.g. `http://127.0.0.1:P`) itself and then
sends anonymous credentials (`google.cloud.storage.Client`). With the sandbox's gRPC host
set but not that one, `storage_client` refuses rather than reach Google.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import grpc

from deployer.errors import DeployerError

EMULATOR_HOST_ENV = "DEPLOYER_GCP_EMULATOR_HOST"
STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"  # google-cloud-storage's own variable

ClientT = TypeVar("ClientT")


def emulator_host() -> str | None:
    """The sandbox address the clients talk to, or None for the real APIs."""
    return os.environ.get(EMULATOR_HOST_ENV) or None


def google_client(client_class: type[ClientT], host: str | None = None) -> ClientT:
    """Build a GAPIC client such as `run_v2.ServicesClient`, honouring the emulator host.

    `host` overrides `DEPLOYER_GCP_EMULATOR_HOST`, for code that runs beside a
    sandbox it started itself.
    """
    host = host or emulator_host()
    if host is None:
        return client_class()
    # Each client owns its channel: closing one client must not cut the others off.
    channel = grpc.insecure_channel(host)
    transport_class: Any = client_class.get_transport_class("grpc")  # type: ignore[attr-defined]
    return client_class(transport=transport_class(channel=channel))  # type: ignore[call-arg]


def storage_client(project: str) -> Any:
    """A `google.cloud.storage.Client` for `project`, at `STORAGE_EMULATOR_HOST` when set."""
    from google.cloud import storage  # type: ignore[attr-defined]  # only setup uploads

    if emulator_host() is not None and not os.environ.get(STORAGE_EMULATOR_ENV):
        raise DeployerError(
            f"{EMULATOR_HOST_ENV} is set but {STORAGE_EMULATOR_ENV} is not: set it to the "
            "sandbox's Cloud Storage URL (`deployer sandbox` prints it), so no upload "
            "reaches Google"
        )
    return storage.Client(project=project)
