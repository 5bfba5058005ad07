"""`deployer env import` against the sandbox: values byte-exact, refs pinned, nothing printed."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import secretmanager_v1

from deployer import cli
from deployer.adapters.google_clients import google_client
from deployer.config import SecretRef, load_config
from deployer.config_edit import pin_secret_refs
from deployer.errors import ConfigError
from tests.conftest import REGION

# The seed's trouble makers: commas, quotes, `=`, `#`, several lines, non-ASCII, `$`.
DOTENV = """\
# .env.prod as the team kept it
export MONGODB_URL="mongodb://app:p@ss,w=rd@db1:27017,db2:27017/content?replicaSet=rs0&w=majority"
ALLOWED_ORIGINS=https://a.example.com,https://b.example.com
JWT_SECRET='s3cr=t"with#hash, and $HOME'
GREETING="say \\"hi\\", then = leave"
PRIVATE_PEM="-----BEGIN KEY-----
line two = with, commas
-----END KEY-----"
CITY = Zürich ✓   # a comment, not part of the value
PORT=8080
K_SERVICE=not-ours
CLOUD_RUN_WORKER=1
EMPTY=
"""
EXPECTED = {
    "MONGODB_URL": "mongodb://app:p@ss,w=rd@db1:27017,db2:27017/content?replicaSet=rs0&w=majority",
    "ALLOWED_ORIGINS": "https://a.example.com,https://b.example.com",
    "JWT_SECRET": 's3cr=t"with#hash, and $HOME',
    "GREETING": 'say "hi", then = leave',
    "PRIVATE_PEM": "-----BEGIN KEY-----\nline two = with, commas\n-----END KEY-----",
    "CITY": "Zürich ✓",
}

CONFIG = """\
# The team's config. This comment must survive the import.
[services.api]
project = "{project}"
region = "{region}"
service = "api"
image = "{region}-docker.pkg.dev/{project}/apps/api"

[services.api.source]
git = "."

[environments.prod]
service = "api"
env = {{ LOG_LEVEL = "info" }}  # plain values stay plain

[environments.prod.secrets]
# MONGODB_URL used to be a hand-made secret
MONGODB_URL = "mongodb-url"  # keep this comment

[environments.prod.run]
port = 8080
"""


@pytest.fixture
def world(gcp: Sandbox, tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """(config path, dotenv path, project): a fresh project, DEPLOYER_CONFIG set."""
    project = f"imp-{uuid.uuid4().hex[:10]}"
    config = tmp_path / "deployer.toml"
    config.write_text(CONFIG.format(project=project, region=REGION), encoding="utf-8")
    dotenv = tmp_path / ".env.prod"
    dotenv.write_text(DOTENV, encoding="utf-8")
    os.environ["DEPLOYER_CONFIG"] = str(config)
    yield config, dotenv, project


def _client() -> secretmanager_v1.SecretManagerServiceClient:
    return google_client(secretmanager_v1.SecretManagerServiceClient)


def _read(project: str, secret: str, version: str) -> bytes:
    name = f"projects/{project}/secrets/{secret}/versions/{version}"
    data: bytes = _client().access_secret_version(name=name).payload.data
    return data


def _no_value_in(text: str) -> None:
    for value in EXPECTED.values():
        assert value not in text
    assert "p@ss" not in text and "s3cr=t" not in text


def test_import_writes_every_value_exactly_and_pins_it(
    world: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config_path, dotenv, project = world
    assert cli.main(["env", "import", str(dotenv), "--env", "prod"]) == 0
    out = capsys.readouterr()
    _no_value_in(out.out + out.err)

    for name, value in EXPECTED.items():
        secret = "prod-" + name.lower().replace("_", "-")
        assert _read(project, secret, "1") == value.encode("utf-8"), name
        assert re.search(rf"^  {name} +{secret}:1 +created", out.out, re.MULTILINE), out.out
    assert "(was mongodb-url:latest)" in out.out

    settings = load_config(config_path).environment("prod")
    assert settings.secrets == {
        name: SecretRef(secret="prod-" + name.lower().replace("_", "-"), version="1")
        for name in EXPECTED
    }
    assert settings.env == {"LOG_LEVEL": "info"}
    text = config_path.read_text(encoding="utf-8")
    assert text.startswith("# The team's config. This comment must survive the import.\n")
    assert 'MONGODB_URL = "prod-mongodb-url:1"  # keep this comment\n' in text
    assert "# MONGODB_URL used to be a hand-made secret\n" in text
    assert 'env = { LOG_LEVEL = "info" }  # plain values stay plain\n' in text

    # Cloud Run's own names are skipped, said so, and never become secrets.
    for name in ("PORT", "K_SERVICE", "CLOUD_RUN_WORKER"):
        assert f"{name}" in out.out and "skipped: Cloud Run sets it itself" in out.out
        with pytest.raises(exceptions.NotFound):
            _client().get_secret(
                name=f"projects/{project}/secrets/prod-{name.lower().replace('_', '-')}"
            )
    assert "EMPTY" in out.out and "skipped: empty" in out.out


def test_reimport_says_unchanged_and_a_new_value_adds_a_version(
    world: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config_path, dotenv, project = world
    assert cli.main(["env", "import", str(dotenv), "--env", "prod"]) == 0
    capsys.readouterr()
    before = config_path.read_bytes()

    assert cli.main(["env", "import", str(dotenv), "--env", "prod"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r":1 +unchanged$", out, re.MULTILINE)) == len(EXPECTED)
    assert "already pins these versions; not changed" in out
    assert config_path.read_bytes() == before

    dotenv.write_text(DOTENV.replace("Zürich", "Genève"), encoding="utf-8")
    assert cli.main(["env", "import", str(dotenv), "--env", "prod"]) == 0
    out = capsys.readouterr().out
    assert "CITY" in out and "prod-city:2" in out and "new version (was prod-city:1)" in out
    assert _read(project, "prod-city", "2") == "Genève ✓".encode()
    assert load_config(config_path).environment("prod").secrets["CITY"].version == "2"
    assert load_config(config_path).environment("prod").secrets["GREETING"].version == "1"


def test_dry_run_changes_nothing(
    world: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config_path, dotenv, project = world
    before = config_path.read_bytes()
    assert cli.main(["env", "import", str(dotenv), "--env", "prod", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run, nothing changed" in out
    assert out.count("would create the secret") == len(EXPECTED)
    _no_value_in(out)
    assert config_path.read_bytes() == before
    listed = list(_client().list_secrets(parent=f"projects/{project}"))
    assert listed == []


def test_prefix_names_the_secrets(
    world: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config_path, dotenv, project = world
    dotenv.write_text("API_TOKEN=abc,def=ghi\n", encoding="utf-8")
    assert cli.main(["env", "import", str(dotenv), "--env", "prod", "--prefix", "backend"]) == 0
    assert "backend-api-token:1" in capsys.readouterr().out
    assert _read(project, "backend-api-token", "1") == b"abc,def=ghi"
    assert str(load_config(config_path).environment("prod").secrets["API_TOKEN"]) == (
        "backend-api-token:1"
    )


def test_refuses_names_set_as_plain_values(
    world: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config_path, dotenv, project = world
    before = config_path.read_bytes()
    dotenv.write_text("LOG_LEVEL=debug\nAPI_TOKEN=abc\n", encoding="utf-8")
    assert cli.main(["env", "import", str(dotenv), "--env", "prod"]) != 0
    err = capsys.readouterr().err
    assert "LOG_LEVEL already set as plain values in environments.prod.env" in err
    assert "Nothing was changed" in err
    assert config_path.read_bytes() == before
    assert list(_client().list_secrets(parent=f"projects/{project}")) == []


def test_refuses_names_that_collide(
    world: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, dotenv, project = world
    dotenv.write_text("API_TOKEN=a\napi_token=b\n", encoding="utf-8")
    assert cli.main(["env", "import", str(dotenv), "--env", "prod"]) != 0
    assert "API_TOKEN and api_token -> prod-api-token" in capsys.readouterr().err
    assert list(_client().list_secrets(parent=f"projects/{project}")) == []


def test_references_are_kept_literally_and_warned_about_by_name_only(
    world: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, dotenv, project = world
    password = f"pw-{uuid.uuid4().hex}"
    os.environ.pop("xkcd9", None)
    dotenv.write_text(
        "A=${B}\n"
        f'DATABASE_URL="postgres://app:{password}@${{DB_HOST}}:5432/${{DB_NAME:-app}}"\n'
        f"DB_PASSWORD=Tr0ub4dor{password}$xkcd9\n"  # a `$` in a password: no name shown
        "LITERAL='${SINGLE}'\n",
        encoding="utf-8",
    )
    for dry_run in (["--dry-run"], []):
        assert cli.main(["env", "import", str(dotenv), "--env", "prod", *dry_run]) == 0
        out = capsys.readouterr()
        text = out.out + out.err
        warnings = [line for line in text.splitlines() if line.startswith("warning: ")]
        assert warnings == [
            "warning: A: value refers to ${B}, which is kept literally (not expanded)",
            "warning: DATABASE_URL: value refers to ${DB_HOST} and ${DB_NAME}, which are kept "
            "literally (not expanded)",
            "warning: DB_PASSWORD: value refers to a `$NAME`, which is kept literally (not "
            "expanded); a `$word` naming no variable of the file or of this environment is "
            "not shown: it may be part of the value",
        ], text
        for secret in (password, "Tr0ub4dor", "xkcd9", "postgres://", "-app}", "SINGLE"):
            assert secret not in text, secret
    # Stored exactly as written: nothing was expanded.
    assert _read(project, "prod-a", "1") == b"${B}"
    assert _read(project, "prod-database-url", "1") == (
        f"postgres://app:{password}@${{DB_HOST}}:5432/${{DB_NAME:-app}}".encode()
    )
    assert _read(project, "prod-literal", "1") == b"${SINGLE}"


# --- the config edit on its own ----------------------------------------------------------


def test_edit_creates_the_table_after_its_environment_keeping_crlf() -> None:
    text = '[environments.dev]\r\nservice = "api"\r\n\r\n[environments.dev.run]\r\nport = 1\r\n'
    edited = pin_secret_refs(text, "dev", {"A": "dev-a:3"})
    assert edited == (
        '[environments.dev]\r\nservice = "api"\r\n'
        '\r\n[environments.dev.secrets]\r\nA = "dev-a:3"\r\n'
        "\r\n[environments.dev.run]\r\nport = 1\r\n"
    )


def test_edit_refuses_inline_secret_tables() -> None:
    text = '[environments.dev]\nservice = "api"\nsecrets = { A = "x" }\n'
    with pytest.raises(ConfigError, match=r"\[environments\.dev\.secrets\] table"):
        pin_secret_refs(text, "dev", {"B": "dev-b:1"})


def test_edit_ignores_look_alike_lines_in_multiline_strings() -> None:
    text = (
        '[environments.dev]\nservice = "api"\nnote = """\n[environments.dev.secrets]\n"""\n'
        '\n[environments.dev.secrets]\nA = "old:1"\n'
    )
    edited = pin_secret_refs(text, "dev", {"A": "dev-a:2"})
    assert edited.endswith('[environments.dev.secrets]\nA = "dev-a:2"\n')
    assert 'note = """\n[environments.dev.secrets]\n"""' in edited
