"""Cloud Functions v2 in the sandbox, through the real `functions_v2` client over gRPC:
sources uploaded with a PUT to the generated URL, functions answering on their own URL."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import functions_v2, run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import field_mask_pb2

from deployer.adapters.google_clients import google_client
from tests.conftest import GoogleClients

REGION = "europe-west1"
State = functions_v2.Function.State
# What gcloud and google-github-actions/deploy-cloud-functions send with the zip.
UPLOAD_HEADERS = {
    "Content-Type": "application/zip",
    "x-goog-content-length-range": "0,104857600",
}


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def http_function(answer: str, name: str = "hello") -> bytes:
    """A main.py with one HTTP function answering `answer`, and the env it finds."""
    return zipped(
        {
            "main.py": (
                "import os\n"
                f"def {name}(request):\n"
                f"    return {answer!r} + '|' + os.environ.get(request.args.get('env', 'K_SERVICE'), '-')\n"
            ),
            "requirements.txt": "functions-framework==3.*\nsome-package-never-installed==9.9\n",
        }
    )


@pytest.fixture
def client(google_clients: GoogleClients) -> functions_v2.FunctionServiceClient:
    return google_clients(functions_v2.FunctionServiceClient)


@pytest.fixture
def parent(project: str) -> str:
    return f"projects/{project}/locations/{REGION}"


def upload(
    client: functions_v2.FunctionServiceClient, parent: str, archive: bytes
) -> functions_v2.StorageSource:
    answer = client.generate_upload_url(request={"parent": parent})
    put = httpx.put(answer.upload_url, content=archive, headers=UPLOAD_HEADERS)
    assert put.status_code == 200, put.text
    return answer.storage_source


def function_of(
    source: functions_v2.StorageSource, entry_point: str = "hello", **service: object
) -> functions_v2.Function:
    return functions_v2.Function(
        build_config=functions_v2.BuildConfig(
            runtime="python311",
            entry_point=entry_point,
            source=functions_v2.Source(storage_source=source),
        ),
        service_config=functions_v2.ServiceConfig(**service),  # type: ignore[arg-type]
    )


def make_public(services: run_v2.ServicesClient, service: str) -> None:
    """What `gcloud functions deploy --allow-unauthenticated` does for a 2nd-gen function."""
    services.set_iam_policy(
        request=iam_policy_pb2.SetIamPolicyRequest(
            resource=service,
            policy=policy_pb2.Policy(
                bindings=[policy_pb2.Binding(role="roles/run.invoker", members=["allUsers"])]
            ),
        )
    )


def test_a_function_runs_from_its_uploaded_zip_and_updates_to_new_code(
    client: functions_v2.FunctionServiceClient,
    services: run_v2.ServicesClient,
    parent: str,
) -> None:
    source = upload(client, parent, http_function("v1"))
    assert source.bucket.startswith("gcf-v2-uploads-")
    function = client.create_function(
        parent=parent,
        function=function_of(source, environment_variables={"GREETING": "hi"}),
        function_id="hello",
    ).result(timeout=60)

    assert function.state == State.ACTIVE
    assert function.url == function.service_config.uri
    assert function.service_config.service == f"{parent}/services/hello"
    # The underlying Cloud Run service exists, and decides who may invoke.
    assert services.get_service(name=function.service_config.service).uri == function.url
    assert httpx.get(function.url).status_code == 403  # private until run.invoker is granted
    make_public(services, function.service_config.service)
    assert httpx.get(function.url).text == "v1|hello"
    assert httpx.get(function.url, params={"env": "GREETING"}).text == "v1|hi"

    new_source = upload(client, parent, http_function("v2"))
    function.build_config.source.storage_source = new_source
    updated = client.update_function(
        function=function,
        update_mask=field_mask_pb2.FieldMask(paths=["build_config.source"]),
    ).result(timeout=60)
    assert updated.state == State.ACTIVE
    assert updated.url == function.url
    assert httpx.get(updated.url).text == "v2|hello"
    assert httpx.get(updated.url, params={"env": "GREETING"}).text == "v2|hi"

    listed = client.list_functions(parent=parent)
    assert [f.name for f in listed] == [f"{parent}/functions/hello"]
    everywhere = client.list_functions(parent=parent.rsplit("/", 1)[0] + "/-")
    assert [f.name for f in everywhere] == [f"{parent}/functions/hello"]


def test_a_bad_entry_point_fails_the_function_with_the_process_output(
    client: functions_v2.FunctionServiceClient, parent: str
) -> None:
    source = upload(client, parent, http_function("v1"))
    operation = client.create_function(
        parent=parent, function=function_of(source, entry_point="nowhere"), function_id="broken"
    )
    with pytest.raises(exceptions.GoogleAPICallError) as raised:
        operation.result(timeout=60)
    assert "Could not create or update Cloud Run service broken" in raised.value.message
    # functions-framework's own words about the missing function.
    assert "nowhere" in raised.value.message
    stored = client.get_function(name=f"{parent}/functions/broken")
    assert stored.state == State.FAILED
    assert "expected to contain a function named 'nowhere'" in stored.state_messages[0].message


def test_a_secret_env_var_reaches_the_function_and_a_missing_one_fails_the_deploy(
    gcp: Sandbox,
    client: functions_v2.FunctionServiceClient,
    services: run_v2.ServicesClient,
    project: str,
    parent: str,
) -> None:
    gcp.secrets.create_secret_with_value(project, "token", b"s3cret")
    source = upload(client, parent, http_function("v1"))
    secret = functions_v2.SecretEnvVar(key="TOKEN", project_id=project, secret="token", version="1")
    function = client.create_function(
        parent=parent,
        function=function_of(source, secret_environment_variables=[secret]),
        function_id="with-secret",
    ).result(timeout=60)
    make_public(services, function.service_config.service)
    assert httpx.get(function.url, params={"env": "TOKEN"}).text == "v1|s3cret"

    missing = functions_v2.SecretEnvVar(key="TOKEN", secret="absent", version="latest")
    with pytest.raises(exceptions.GoogleAPICallError) as raised:
        client.create_function(
            parent=parent,
            function=function_of(source, secret_environment_variables=[missing]),
            function_id="no-secret",
        ).result(timeout=60)
    assert (
        f"projects/{project}/secrets/absent/versions/latest was not found" in raised.value.message
    )


def test_uploads_and_sources_are_checked_as_google_does(
    client: functions_v2.FunctionServiceClient, parent: str
) -> None:
    answer = client.generate_upload_url(request={"parent": parent})
    # The URL is signed for application/zip: another Content-Type does not match.
    refused = httpx.put(answer.upload_url, content=b"x", headers={"Content-Type": "text/plain"})
    assert refused.status_code == 403
    assert "SignatureDoesNotMatch" in refused.text

    # A source nobody uploaded is refused at once.
    never = functions_v2.StorageSource(bucket=answer.storage_source.bucket, object_="nothing.zip")
    with pytest.raises(exceptions.InvalidArgument):
        client.create_function(parent=parent, function=function_of(never), function_id="ghost")

    # Bytes that are not a zip fail the build.
    put = httpx.put(answer.upload_url, content=b"not a zip", headers=UPLOAD_HEADERS)
    assert put.status_code == 200
    with pytest.raises(exceptions.GoogleAPICallError) as raised:
        client.create_function(
            parent=parent, function=function_of(answer.storage_source), function_id="not-zip"
        ).result(timeout=30)
    assert "Build failed" in raised.value.message
    assert client.get_function(name=f"{parent}/functions/not-zip").state == State.FAILED


def test_delete_stops_the_function_and_its_service(
    client: functions_v2.FunctionServiceClient,
    services: run_v2.ServicesClient,
    parent: str,
) -> None:
    source = upload(client, parent, http_function("bye"))
    function = client.create_function(
        parent=parent, function=function_of(source), function_id="short-lived"
    ).result(timeout=60)
    client.delete_function(name=function.name).result(timeout=30)
    with pytest.raises(exceptions.NotFound):
        client.get_function(name=function.name)
    with pytest.raises(exceptions.NotFound):
        services.get_service(name=function.service_config.service)


def test_a_functions_process_ends_with_the_sandbox(tmp_path: Path) -> None:
    own = Sandbox(tmp_path / "sandbox").start()
    try:
        client = google_client(functions_v2.FunctionServiceClient, host=own.grpc_address)
        parent = f"projects/p-{uuid.uuid4().hex[:8]}/locations/{REGION}"
        source = upload(client, parent, http_function("up"))
        function = client.create_function(
            parent=parent, function=function_of(source), function_id="ending"
        ).result(timeout=60)
        running = own.run.processes.get(function.service_config.revision)
        assert running is not None and running.alive()
        client.transport.close()
    finally:
        own.stop()
    assert not running.alive()
