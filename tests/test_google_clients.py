"""The one client factory reaches the sandbox exactly when told to."""

from __future__ import annotations

import os

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import run_v2, secretmanager_v1

from deployer.adapters.google_clients import EMULATOR_HOST_ENV, google_client


def test_emulator_host_variable_routes_every_client_to_the_sandbox(gcp: Sandbox) -> None:
    assert os.environ[EMULATOR_HOST_ENV] == gcp.grpc_address
    services = google_client(run_v2.ServicesClient)
    assert list(services.list_services(parent="projects/factory-env/locations/europe-west1")) == []
    secrets = google_client(secretmanager_v1.SecretManagerServiceClient)
    with pytest.raises(exceptions.NotFound):
        secrets.get_secret(name="projects/factory-env/secrets/absent")


def test_explicit_host_wins_over_the_variable(sandbox: Sandbox) -> None:
    os.environ[EMULATOR_HOST_ENV] = "127.0.0.1:9"  # nothing listens on the discard port
    services = google_client(run_v2.ServicesClient, sandbox.grpc_address)
    assert list(services.list_services(parent="projects/factory-host/locations/us-central1")) == []
