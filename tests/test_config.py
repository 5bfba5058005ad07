"""deployer.toml: the example loads; mistakes are named with their field and fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployer.config import SecretRef, load_config
from deployer.errors import ConfigError

MINIMAL = """
[services.backend]
project = "demo-project"
region = "europe-west1"
service = "backend"
image = "europe-west1-docker.pkg.dev/demo-project/deployer/backend"
source = { git = "https://github.com/acme/content-api.git" }

[environments.prod]
service = "backend"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deployer.toml"
    path.write_text(text)
    return path


def test_the_shipped_example_is_valid(repo_root: Path) -> None:
    config = load_config(repo_root / "deployer.example.toml")
    prod = config.environment("prod")
    assert config.service_of("prod").service == "backend"
    assert prod.secrets["MONGODB_URL"] == SecretRef(secret="mongodb-url", version="latest")
    # The demo builds from a repository connected to Cloud Build, as teams should.
    assert config.services["backend"].source.connected_repository == (
        "projects/demo-project/locations/europe-west1/connections/github/repositories/content-api"
    )
    # The build config is a path in the repository, read at the deployed commit.
    assert config.services["backend"].build_config == "cloudbuild.yaml"


@pytest.mark.parametrize("path", ["/srv/app/cloudbuild.yaml", "../cloudbuild.yaml", "ci/../x.yaml"])
def test_a_build_config_outside_the_repository_is_refused(tmp_path: Path, path: str) -> None:
    text = MINIMAL.replace("source = {", f"build_config = {json.dumps(path)}\nsource = {{")
    with pytest.raises(ConfigError, match="is not a path in the repository; build_config is read"):
        load_config(_write(tmp_path, text))


def test_a_malformed_connected_repository_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'source = { git = "https://github.com/acme/content-api.git" }',
        'source = { connected_repository = "acme/content-api" }',
    )
    with pytest.raises(ConfigError, match="projects/P/locations/L/connections/C/repositories/R"):
        load_config(_write(tmp_path, text))


def test_a_relative_local_git_source_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    text = MINIMAL.replace('"https://github.com/acme/content-api.git"', '"app"')
    assert load_config(_write(tmp_path, text)).services["backend"].source.git == str(
        tmp_path / "app"
    )


def test_defaults_are_safe(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    prod = config.environment("prod")
    assert prod.rollout.steps == [100]
    assert prod.run.allow_unauthenticated is False
    assert config.services["backend"].health.version_field == "version.commit"
    # A remote URL is kept as written.
    assert config.services["backend"].source.git == "https://github.com/acme/content-api.git"


def test_reads_deployer_config_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYER_CONFIG", str(_write(tmp_path, MINIMAL)))
    assert "prod" in load_config().environments
    monkeypatch.delenv("DEPLOYER_CONFIG")
    with pytest.raises(ConfigError, match="DEPLOYER_CONFIG is not set"):
        load_config()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("[environments.prod]", '[environments.prod]\nsecrets = { MONGODB_URL = "bad name!" }'),
            "environments.prod.secrets.MONGODB_URL: 'bad name!' is not a secret reference",
        ),
        (
            ("[environments.prod]", '[environments.prod]\nenv = { PORT = "9" }'),
            "PORT is set by Cloud Run itself",
        ),
        (
            ("[environments.prod]", "[environments.prod]\nrollout = { steps = [50, 10] }"),
            "traffic steps must end at 100",
        ),
        (("source = {", "surprise = 1\nsource = {"), "services.backend.surprise: unknown field"),
        (
            (
                '[environments.prod]\nservice = "backend"',
                '[environments.prod]\nservice = "frontend"',
            ),
            "environments.prod.service is 'frontend'",
        ),
        (("[environments.prod]", "[environments.PROD]"), "environments.PROD"),
        (
            (
                "europe-west1-docker.pkg.dev/demo-project/deployer/backend",
                "gcr.io/demo-project/backend",
            ),
            "services.backend.image",
        ),
        (
            (
                "[environments.prod]",
                '[environments.prod]\nenv = { A = "1" }\nsecrets = { A = "a" }',
            ),
            "A set both in env and secrets",
        ),
    ],
)
def test_mistakes_name_the_file_and_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = _write(tmp_path, MINIMAL.replace(*change, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[services\n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_unknown_environment_lists_known_ones(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    with pytest.raises(ConfigError, match="unknown environment 'staging'; known: prod"):
        config.environment("staging")
