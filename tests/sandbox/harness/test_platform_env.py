"""What every process the sandbox runs finds in its environment: the sandbox's addresses,
as production finds Google, Slack and GitHub by DNS, with nothing written into the
service by whoever deployed it."""

from __future__ import annotations

import io
import zipfile

import httpx
import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import functions_v2, run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from tests.conftest import REGION, GoogleClients

NAMES = (
    "DEPLOYER_GCP_EMULATOR_HOST",
    "SLACK_API_URL",
    "DEPLOYER_GITHUB_API_URL",
    "FIRESTORE_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "GCE_METADATA_HOST",
)


def test_a_function_finds_the_sandbox_in_its_environment(
    gcp: Sandbox, google_clients: GoogleClients, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set in the sandbox's process (for this test only: other tests run their own emulator).
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8681")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "main.py",
            "import json, os\n"
            "def env(request):\n"
            f"    return json.dumps({{n: os.environ.get(n) for n in {NAMES!r}}})\n",
        )
    client = google_clients(functions_v2.FunctionServiceClient)
    parent = f"projects/{project}/locations/{REGION}"
    upload = client.generate_upload_url(request={"parent": parent})
    httpx.put(
        upload.upload_url, content=buffer.getvalue(), headers={"Content-Type": "application/zip"}
    ).raise_for_status()
    made = client.create_function(
        parent=parent,
        function_id="env-reader",
        function=functions_v2.Function(
            build_config=functions_v2.BuildConfig(
                runtime="python311",
                entry_point="env",
                source=functions_v2.Source(storage_source=upload.storage_source),
            )
        ),
    ).result(timeout=60)
    google_clients(run_v2.ServicesClient).set_iam_policy(
        request=iam_policy_pb2.SetIamPolicyRequest(
            resource=made.service_config.service,
            policy=policy_pb2.Policy(
                bindings=[policy_pb2.Binding(role="roles/run.invoker", members=["allUsers"])]
            ),
        )
    )

    found = httpx.get(made.url).json()

    assert found == {
        "DEPLOYER_GCP_EMULATOR_HOST": gcp.grpc_address,
        "SLACK_API_URL": gcp.slack_api_url,
        "DEPLOYER_GITHUB_API_URL": gcp.github_api_url,
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8681",
        "STORAGE_EMULATOR_HOST": gcp.storage_url,
        "GCE_METADATA_HOST": gcp.metadata_address,
    }
    assert made.service_config.environment_variables.keys() <= {"LOG_EXECUTION_ID"}
