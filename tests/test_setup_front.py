"""`deployer setup`'s front step against the sandbox, through the real client libraries:
the function built from this checkout answers on its own URL (its own process), with the
environment and secret references README's "In production" lists; `--front run` does the
same as a Cloud Run service; a second run uploads nothing."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import functions_v2, resourcemanager_v3, run_v2
from google.protobuf import field_mask_pb2

from deployer.front.verify import slack_signature
from deployer.setup import front_source, roles
from deployer.setup.front_function import SOURCE_LABEL
from deployer.setup.run import steps
from tests.checkout_snapshot import _front_from_snapshot, checkout_snapshot  # noqa: F401
from tests.checkout_snapshot import copy_checkout as snapshot
from tests.conftest import REGION, GoogleClients
from tests.test_setup import SIGNING, World

STEPS = len(steps())  # every step says one line, front and service grants included


@pytest.fixture
def world(gcp: Sandbox, google_clients: GoogleClients, project: str, tmp_path: Path) -> World:
    return World(gcp, google_clients, project, tmp_path)


def front_name(world: World) -> str:
    return f"projects/{world.project}/locations/{REGION}/functions/deployer"


def service_name(world: World) -> str:
    return f"projects/{world.project}/locations/{REGION}/services/deployer"


def read_function(world: World) -> functions_v2.Function:
    client = world.clients(functions_v2.FunctionServiceClient)
    return client.get_function(name=front_name(world))


def signed(url: str, secret: str, body: bytes, content_type: str) -> httpx.Response:
    stamp = str(int(time.time()))
    return httpx.post(
        f"{url}/slack/events",
        content=body,
        headers={
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": slack_signature(secret, stamp, body),
        },
    )


def copy_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of this checkout (what the function is built from), which setup then uses."""
    checkout = snapshot(front_source.repository_root(), tmp_path / "checkout")
    monkeypatch.setattr(front_source, "repository_root", lambda: checkout)
    return checkout


def test_setup_deploys_the_function_and_its_own_url_answers(world, capsys) -> None:
    code, out = world.setup(capsys)

    assert code == 0, out
    assert "front: changed (created function deployer)" in out
    function = read_function(world)
    assert function.state == functions_v2.Function.State.ACTIVE
    url = function.url
    assert url and httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    # The signing secret reached the function: unsigned or wrongly signed requests are
    # refused, one signed with the stored secret passes the signature check (and is then
    # refused for its content type, before anything is handled).
    assert httpx.post(f"{url}/slack/events", content=b"command=/deploy").status_code == 401
    assert signed(url, "not-the-secret", b"{}", "application/json").status_code == 401
    assert signed(url, SIGNING, b"{}", "application/json").status_code == 415
    # Slack and GitHub call it without a Google identity: allUsers on its Cloud Run service.
    services = world.clients(run_v2.ServicesClient)
    policy = services.get_iam_policy(request={"resource": function.service_config.service})
    assert {b.role: set(b.members) for b in policy.bindings} == {"roles/run.invoker": {"allUsers"}}
    # What to paste names the real URL.
    assert f"deployer slack-manifest --url {url}\n" in out
    assert f"Payload URL   {url}/github/webhook\n" in out
    assert "FRONT_URL" not in out


def test_the_function_runs_as_the_front_with_the_listed_env_and_secrets(world, capsys) -> None:
    world.setup(capsys)

    function = read_function(world)
    p, config = world.project, function.service_config
    assert config.service_account_email == f"deployer-front@{p}.iam.gserviceaccount.com"
    assert {k: v for k, v in config.environment_variables.items() if k != "LOG_EXECUTION_ID"} == {
        # Pinned to the versions setup stored: an instance reads them once, when it starts.
        "DEPLOYER_CONFIG": f"projects/{p}/secrets/deployer-config/versions/1",
        "DEPLOYER_STORE": f"firestore://{p}",
        "DEPLOYER_DISPATCH": f"projects/{p}/locations/{REGION}/jobs/deployer-worker",
        "GOOGLE_CLOUD_PROJECT": p,
    }
    assert sorted((s.key, s.secret, s.version) for s in config.secret_environment_variables) == [
        ("GITHUB_WEBHOOK_SECRET", "github-webhook-secret", "1"),
        ("SLACK_BOT_TOKEN", "slack-bot-token", "1"),
        ("SLACK_SIGNING_SECRET", "slack-signing-secret", "1"),
    ]
    build = function.build_config
    assert (build.runtime, build.entry_point) == ("python311", "deployer_http")
    assert build.service_account == (
        f"projects/{p}/serviceAccounts/deployer-builder@{p}.iam.gserviceaccount.com"
    )
    # The build account holds exactly the build's roles, on the project.
    projects = world.clients(resourcemanager_v3.ProjectsClient)
    held = projects.get_iam_policy(resource=f"projects/{p}")
    builder = f"serviceAccount:deployer-builder@{p}.iam.gserviceaccount.com"
    assert {b.role for b in held.bindings if builder in b.members} == {
        "roles/logging.logWriter",
        "roles/artifactregistry.writer",
        "roles/storage.objectViewer",
    }
    built = front_source.build_source(front_source.repository_root())
    assert function.labels[SOURCE_LABEL] == built.source_hash


def test_a_second_run_changes_nothing_and_uploads_nothing(world, capsys) -> None:
    world.setup(capsys)
    first = read_function(world)

    code, out = world.setup(capsys)

    assert code == 0, out
    assert "front: unchanged (function deployer)" in out
    assert out.endswith(f"\n0 changed, {STEPS} unchanged\n"), out
    again = read_function(world)
    assert again.build_config.source.storage_source == first.build_config.source.storage_source
    assert again.update_time == first.update_time
    assert f"--url {first.url}\n" in out  # the URL is said on a no-op run too
    # The function is not replaced by a service of its name without being asked.
    code, switched = world.setup(capsys, "--front", "run")
    assert code != 0
    assert (
        "setup stopped at front: deployer is deployed as a function, not as a service" in switched
    )
    assert "gcloud functions delete deployer" in switched


def test_a_config_change_repins_the_front_and_the_job_and_a_changed_checkout_updates_it(
    world, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.setup(capsys)
    first = read_function(world)
    world.config.write_text(world.config.read_text() + "\n# reviewed\n")

    _, out = world.setup(capsys)

    assert "secrets: changed (new version of deployer-config)" in out
    # Both now read the new version; the function's source stays as it was.
    assert "front: changed (updated function deployer)" in out
    assert "worker job: changed (updated" in out
    config = f"projects/{world.project}/secrets/deployer-config/versions/2"
    repinned = read_function(world)
    assert repinned.service_config.environment_variables["DEPLOYER_CONFIG"] == config
    assert repinned.build_config.source == first.build_config.source
    job = world.clients(run_v2.JobsClient).get_job(
        name=f"projects/{world.project}/locations/{REGION}/jobs/deployer-worker"
    )
    env = {v.name: v.value for v in job.template.template.containers[0].env}
    assert env["DEPLOYER_CONFIG"] == config
    # Someone's own setting on the function, which setup leaves alone.
    functions = world.clients(functions_v2.FunctionServiceClient)
    own = read_function(world)
    own.labels["team"] = "platform"
    own.service_config.environment_variables["LOG_LEVEL"] = "debug"
    own.service_config.min_instance_count = 1  # one instance kept warm (README)
    functions.update_function(
        function=own,
        update_mask=field_mask_pb2.FieldMask(
            paths=[
                "labels",
                "service_config.environment_variables",
                "service_config.min_instance_count",
            ]
        ),
    ).result(timeout=60)
    checkout = copy_checkout(tmp_path, monkeypatch)
    with (checkout / "deployer" / "errors.py").open("a") as edited:
        edited.write("\n# a changed line\n")

    _, out = world.setup(capsys)

    assert "front: changed (updated function deployer, new source)" in out
    updated = read_function(world)
    assert updated.labels[SOURCE_LABEL] != first.labels[SOURCE_LABEL]
    assert updated.build_config.source.storage_source != first.build_config.source.storage_source
    assert updated.url == first.url
    assert updated.labels["team"] == "platform"
    assert updated.service_config.environment_variables["LOG_LEVEL"] == "debug"
    assert updated.service_config.min_instance_count == 1
    assert httpx.get(f"{updated.url}/healthz").status_code == 200


def test_front_run_deploys_a_cloud_run_service_from_the_image(world, capsys) -> None:
    code, out = world.setup(capsys, "--front", "run")

    assert code == 0, out
    assert "front: changed (created service deployer)" in out
    services = world.clients(run_v2.ServicesClient)
    service = services.get_service(name=service_name(world))
    container = service.template.containers[0]
    assert container.image == world.image
    assert not container.command and not container.args  # the image's `deployer serve`
    assert service.template.service_account == roles.email(
        roles.account(roles.FRONT), world.project
    )
    refs = {v.name: v.value_source.secret_key_ref.secret for v in container.env if v.value_source}
    assert refs["SLACK_SIGNING_SECRET"] == "slack-signing-secret"
    assert httpx.get(f"{service.uri}/healthz").json() == {"status": "ok"}
    assert f"Payload URL   {service.uri}/github/webhook\n" in out
    # No function, and no build account's grants: nothing builds a function.
    functions = world.clients(functions_v2.FunctionServiceClient)
    assert list(functions.list_functions(parent=front_name(world).rsplit("/", 2)[0])) == []
    _, again = world.setup(capsys, "--front", "run")
    assert "front: unchanged (service deployer)" in again
    assert again.endswith(f"\n0 changed, {STEPS} unchanged\n"), again
    code, switched = world.setup(capsys)  # the default, a function, would take its name
    assert code != 0
    assert "deployer is deployed as a Cloud Run service, not as a function" in switched


def test_a_dry_run_plans_the_front_and_deploys_nothing(world, capsys) -> None:
    code, out = world.setup(capsys, "--dry-run")

    assert code == 0, out
    assert "front: planned (create function deployer)" in out
    functions = world.clients(functions_v2.FunctionServiceClient)
    parent = f"projects/{world.project}/locations/{REGION}"
    assert list(functions.list_functions(parent=parent)) == []
    assert "https://FRONT_URL" in out


def test_a_secret_not_stored_yet_is_left_out_and_said(world, capsys) -> None:
    code, out = world.setup(capsys, stdin="SLACK_BOT_TOKEN=xoxb-only\n")

    assert code == 1  # the secrets step is missing values
    assert "front: changed (created function deployer; without github-webhook-secret, " in out
    keys = {s.key for s in read_function(world).service_config.secret_environment_variables}
    assert keys == {"SLACK_BOT_TOKEN"}


def test_the_source_is_the_same_bytes_for_the_same_checkout() -> None:
    first, second = front_source.build_source(), front_source.build_source()

    assert first.archive == second.archive
    names = zipfile.ZipFile(io.BytesIO(first.archive)).namelist()
    assert names == sorted(names)
    assert {"main.py", "requirements.txt", "deployer/__init__.py", "deployer/cli.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    requirements = zipfile.ZipFile(io.BytesIO(first.archive)).read("requirements.txt").decode()
    assert "functions-framework==" in requirements and "\n-e " not in requirements


def test_a_function_that_does_not_start_stops_setup_with_googles_words_and_the_fix(
    world, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = copy_checkout(tmp_path, monkeypatch)
    entry_points = (checkout / "main.py").read_text()
    (checkout / "main.py").write_text("def other(request):\n    return 'no deployer_http here'\n")

    code, out = world.setup(capsys)

    assert code != 0
    assert "setup stopped at front: the function did not deploy: Could not create or update" in out
    assert "failed to start and listen on the port" in out  # Google's words, shortened
    assert "gcloud functions logs read deployer" in out
    assert read_function(world).state == functions_v2.Function.State.FAILED
    # Once fixed, the next run deploys it again.
    (checkout / "main.py").write_text(entry_points)
    _, again = world.setup(capsys)
    assert "front: changed (updated function deployer, new source)" in again
