"""A function's build account (`BuildConfig.service_account`) is checked as Google does:
its format, and that the account exists in IAM."""

from __future__ import annotations

import httpx
import pytest
from google.api_core import exceptions
from google.cloud import functions_v2, iam_admin_v1

from tests.conftest import GoogleClients

REGION = "europe-west1"


def source(client: functions_v2.FunctionServiceClient, parent: str) -> functions_v2.StorageSource:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", "def hello(request):\n    return 'hi'\n")
    answer = client.generate_upload_url(request={"parent": parent})
    httpx.put(
        answer.upload_url, content=buffer.getvalue(), headers={"Content-Type": "application/zip"}
    ).raise_for_status()
    return answer.storage_source


def function(storage: functions_v2.StorageSource, account: str) -> functions_v2.Function:
    return functions_v2.Function(
        build_config=functions_v2.BuildConfig(
            runtime="python311",
            entry_point="hello",
            source=functions_v2.Source(storage_source=storage),
            service_account=account,
        )
    )


def test_a_build_account_must_exist_and_be_named_in_full(
    google_clients: GoogleClients, project: str
) -> None:
    client = google_clients(functions_v2.FunctionServiceClient)
    parent = f"projects/{project}/locations/{REGION}"
    storage = source(client, parent)
    email = f"builder@{project}.iam.gserviceaccount.com"

    with pytest.raises(exceptions.InvalidArgument):
        client.create_function(
            parent=parent, function=function(storage, email), function_id="with-builder"
        )
    with pytest.raises(exceptions.NotFound) as raised:
        client.create_function(
            parent=parent,
            function=function(storage, f"projects/{project}/serviceAccounts/{email}"),
            function_id="with-builder",
        )
    assert f"Service account projects/-/serviceAccounts/{email} was not found" in str(raised.value)

    google_clients(iam_admin_v1.IAMClient).create_service_account(
        name=f"projects/{project}", account_id="builder"
    )
    made = client.create_function(
        parent=parent,
        function=function(storage, f"projects/{project}/serviceAccounts/{email}"),
        function_id="with-builder",
    ).result(timeout=60)
    assert made.build_config.service_account.endswith(email)
