"""Probing a private service with an ID token from the run's own credentials.

On Cloud Run the metadata server gives one (the sandbox runs a stand-in, so every
deploy of the tests probes through google-auth's real path, and its private URLs let in
only ID tokens it signed for the service's URL); a key file gives one;
user credentials (`gcloud auth application-default login`) give none, and then the
health stage fails saying how to get one, and the deploy ends with traffic untouched.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from deployer.pipeline.record import Outcome, Stage, State
from tests.engine_world import ENVIRONMENT, World, world_fixture  # noqa: F401


def _closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_a_run_with_user_credentials_ends_failed_saying_how_to_get_a_token(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = world.first.candidate_revision
    # What `gcloud auth application-default login` writes, and no metadata server.
    adc = tmp_path / "application_default_credentials.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "1234.apps.googleusercontent.com",
                "client_secret": "not-a-secret",
                "refresh_token": "not-a-token",
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    nowhere = _closed_port()
    monkeypatch.setenv("GCE_METADATA_HOST", nowhere)
    monkeypatch.setenv("GCE_METADATA_IP", nowhere)
    from google.auth.compute_engine import _metadata

    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", nowhere)  # read once, at import
    world.commit("probed without a token")
    engine = world.reconfigure(environment={"run": {"allow_unauthenticated": False}})

    record, _ = world.deploy(engine=engine)

    assert record.state == State.FAILED
    health = record.stage(Stage.HEALTH)
    assert health is not None and health.outcome == Outcome.FAILED
    assert "credentials found: authorized_user" in health.summary
    assert "--impersonate-service-account" in health.summary
    assert world.serving() == [(old, 100)]
    assert world.store().locks(ENVIRONMENT) == []
