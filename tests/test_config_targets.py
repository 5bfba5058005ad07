"""An environment's own Cloud Run service, project and region: `Config.target` applies them,
and no two environments may deploy the same Cloud Run service."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.config import load_config
from deployer.errors import ConfigError

SERVICE = """
[services.backend]
project = "acme-prod"
region = "europe-west1"
service = "backend"
image = "europe-west1-docker.pkg.dev/acme-prod/deployer/backend"
source = { git = "https://github.com/acme/content-api.git" }

[environments.prod]
service = "backend"
"""


def _load(tmp_path: Path, staging: str) -> Path:
    path = tmp_path / "deployer.toml"
    path.write_text(SERVICE + '\n[environments.staging]\nservice = "backend"\n' + staging)
    return path


def test_an_environment_deploys_its_own_service_in_its_own_project(tmp_path: Path) -> None:
    config = load_config(
        _load(
            tmp_path,
            'cloud_run_service = "backend-staging"\nproject = "acme-staging"\n'
            'region = "europe-west4"\n',
        )
    )
    staging, prod = config.target("staging"), config.target("prod")
    assert (staging.service, staging.project, staging.region) == (
        "backend-staging",
        "acme-staging",
        "europe-west4",
    )
    assert (prod.service, prod.project, prod.region) == ("backend", "acme-prod", "europe-west1")
    # What is built, and where, stays the service's.
    assert staging.image == prod.image == config.service_of("staging").image
    assert config.service_of("staging").project == "acme-prod"


def test_only_the_project_may_differ(tmp_path: Path) -> None:
    config = load_config(_load(tmp_path, 'project = "acme-staging"\n'))
    assert config.target("staging").service == config.target("prod").service == "backend"
    assert config.target("staging").project == "acme-staging"


@pytest.mark.parametrize(
    ("staging", "message"),
    [
        (
            "",
            "environments.prod and environments.staging would both deploy Cloud Run service "
            "projects/acme-prod/locations/europe-west1/services/backend; give one its own "
            "`cloud_run_service`",
        ),
        (
            'cloud_run_service = "backend"\nregion = "europe-west1"\n',
            "environments.prod and environments.staging would both deploy Cloud Run service "
            "projects/acme-prod/locations/europe-west1/services/backend",
        ),
        (
            'cloud_run_service = "Backend_Staging"\n',
            "environments.staging.cloud_run_service",
        ),
        (
            f'cloud_run_service = "{"b" * 40}"\n',
            "is too long for Cloud Run",
        ),
        ('project = "x"\n', "environments.staging.project"),
        ('region = "europe west4"\n', "environments.staging.region"),
    ],
)
def test_a_target_that_cannot_be_used_is_refused(
    tmp_path: Path, staging: str, message: str
) -> None:
    path = _load(tmp_path, staging)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
