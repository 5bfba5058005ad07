"""DEPLOYER_CONFIG naming a Secret Manager secret: where the function and the worker job
read the same config, and the deployer's image holds nothing of a team's."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from deployer_sandbox.harness.chat_front import store_config, store_secret
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.config import load_config
from deployer.errors import ConfigError


def test_a_config_kept_in_secret_manager_loads_at_its_latest_version(
    gcp: Sandbox, repo_root: Path
) -> None:
    project = f"cfg-{uuid.uuid4().hex[:10]}"
    text = (repo_root / "deployer.example.toml").read_text(encoding="utf-8")
    name = store_config(gcp.grpc_address, project, text.replace('"512Mi"', '"256Mi"'))
    assert name == f"projects/{project}/secrets/deployer-config/versions/latest"
    assert load_config(name).environment("prod").run.memory == "256Mi"

    # A new version is what the next reader gets; a pinned version stays what it was.
    store_config(gcp.grpc_address, project, text)
    loaded = load_config(name)
    assert loaded.environment("prod").run.memory == "512Mi"
    assert str(loaded.path) == f"projects/{project}/secrets/deployer-config/versions/2"
    pinned = f"projects/{project}/secrets/deployer-config/versions/1"
    assert load_config(pinned).environment("prod").run.memory == "256Mi"


def test_a_missing_or_broken_config_secret_is_a_clear_error(gcp: Sandbox) -> None:
    project = f"cfg-{uuid.uuid4().hex[:10]}"
    with pytest.raises(ConfigError, match=r"^DEPLOYER_CONFIG: secret deployer-config not found"):
        load_config(f"projects/{project}/secrets/deployer-config")
    store_secret(gcp.grpc_address, project, "deployer-config", b"[services\n")
    with pytest.raises(ConfigError, match=r"versions/1: not valid TOML"):
        load_config(f"projects/{project}/secrets/deployer-config/versions/latest")
