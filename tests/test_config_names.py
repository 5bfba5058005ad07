"""deployer.toml: a service whose candidate names Cloud Run would refuse is refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer import run_names
from deployer.config import load_config
from deployer.errors import ConfigError
from deployer.pipeline import deploy, traffic
from deployer.pipeline.record import new_deploy_id
from tests.engine_world import SERVICE_KEY, base_settings, to_toml
from tests.test_config import MINIMAL

FULL_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _named(tmp_path: Path, service: str) -> Path:
    path = tmp_path / "deployer.toml"
    path.write_text(MINIMAL.replace('service = "backend"\nimage', f'service = "{service}"\nimage'))
    return path


def _refusal(tmp_path: Path, service: str) -> tuple[Path, str]:
    path = _named(tmp_path, service)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return path, str(caught.value)


def test_the_limits_are_what_the_names_allow() -> None:
    # 63 = 48 + "-1a2b3c4-abc123"; 46 = 37 + "candidate"; the tag URL label fits 63 at 46.
    assert run_names.longest_service_name() == 37
    assert len(run_names.longest_revision_name("a" * 48)) == run_names.REVISION_NAME_MAX
    assert len(run_names.tag_url_label("a" * 37)) == run_names.DNS_LABEL_MAX
    assert len(run_names.CANDIDATE_TAG) + 37 == run_names.TAG_AND_SERVICE_MAX


def test_the_longest_revision_name_is_as_long_as_real_ones() -> None:
    service = "a" * 30
    longest = run_names.longest_revision_name(service)
    for _ in range(200):
        real = run_names.candidate_revision_name(service, FULL_COMMIT, new_deploy_id())
        assert len(real) == len(longest)


def test_the_pipeline_uses_these_names() -> None:
    assert traffic.CANDIDATE_TAG == run_names.CANDIDATE_TAG == "candidate"
    assert deploy.candidate_revision_name is run_names.candidate_revision_name
    assert deploy.candidate_revision_name("api", FULL_COMMIT, "d-mx4hbsm1-abc123") == (
        "api-0123456-abc123"
    )


def test_a_service_name_that_fits_loads(tmp_path: Path) -> None:
    service = "a" * run_names.longest_service_name()
    assert load_config(_named(tmp_path, service)).services["backend"].service == service


def test_a_too_long_revision_name_is_refused(tmp_path: Path) -> None:
    service = "a" * 49  # a valid service id, but its revisions would not be
    path, message = _refusal(tmp_path, service)
    assert message.startswith(f"{path}: services.backend.service: '{service}' is too long")
    assert (
        f"the candidate revision names it gets, like '{service}-1a2b3c4-abc123', would be 64 "
        "characters; the limit is 63" in message
    )
    assert message.endswith("Use a service name of at most 37 characters.")


def test_a_too_long_tag_and_service_is_refused(tmp_path: Path) -> None:
    service = "a" * 38  # its revision names fit; its tag and tag URL do not
    path, message = _refusal(tmp_path, service)
    assert message == (
        f"{path}: services.backend.service: '{service}' is too long for Cloud Run: its "
        f"candidate tag 'candidate' and the service name together would be 47 characters, "
        f"and the tag's URL label, like 'candidate---{service}-abcdefghij-ew', 64; the limits "
        "are 46 and 63. Use a service name of at most 37 characters."
    )
    assert "revision" not in message


def test_the_shipped_and_test_configs_load(repo_root: Path, tmp_path: Path) -> None:
    load_config(repo_root / "deployer.example.toml")
    path = tmp_path / "world.toml"
    path.write_text(to_toml(base_settings("e2e-0123456789", tmp_path, "backend")))
    assert load_config(path).services[SERVICE_KEY].service == "backend"
