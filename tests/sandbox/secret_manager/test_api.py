"""Secret Manager v1 in the sandbox, through the real `secretmanager_v1` client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import google_crc32c
import pytest
from google.api_core import exceptions
from google.cloud import secretmanager_v1
from google.protobuf import field_mask_pb2

from tests.conftest import GoogleClients

State = secretmanager_v1.SecretVersion.State
AUTOMATIC = {"replication": {"automatic": {}}}


@pytest.fixture
def client(google_clients: GoogleClients) -> secretmanager_v1.SecretManagerServiceClient:
    return google_clients(secretmanager_v1.SecretManagerServiceClient)


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


def make_secret(
    client: secretmanager_v1.SecretManagerServiceClient, project: str, secret_id: str = "db"
) -> str:
    created = client.create_secret(
        parent=f"projects/{project}", secret_id=secret_id, secret=AUTOMATIC
    )
    return str(created.name)


def add(client: secretmanager_v1.SecretManagerServiceClient, secret: str, data: bytes) -> str:
    version = client.add_secret_version(
        parent=secret, payload={"data": data, "data_crc32c": crc32c(data)}
    )
    return str(version.name)


def test_create_then_get_returns_the_secret(client, project) -> None:
    created = client.create_secret(
        parent=f"projects/{project}",
        secret_id="api-key",
        secret={"replication": {"automatic": {}}, "labels": {"team": "web"}},
    )
    fetched = client.get_secret(name=f"projects/{project}/secrets/api-key")

    assert fetched.name == created.name == f"projects/{project}/secrets/api-key"
    assert dict(fetched.labels) == {"team": "web"}
    assert "automatic" in fetched.replication
    assert fetched.create_time.timestamp() > 0
    assert fetched.etag == created.etag != ""


def test_create_without_replication_is_invalid(client, project) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="replication"):
        client.create_secret(parent=f"projects/{project}", secret_id="db", secret={})


def test_create_an_existing_secret_is_already_exists(client, project) -> None:
    name = make_secret(client, project)
    with pytest.raises(exceptions.AlreadyExists, match=rf"Secret \[{name}\] already exists"):
        make_secret(client, project)


def test_create_with_a_malformed_secret_id_is_invalid(client, project) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=r"Secret ID \[no spaces\]"):
        client.create_secret(parent=f"projects/{project}", secret_id="no spaces", secret=AUTOMATIC)


def test_list_secrets_pages_through_every_secret(client, project) -> None:
    for index in range(5):
        make_secret(client, project, f"s{index}")

    pager = client.list_secrets(request={"parent": f"projects/{project}", "page_size": 2})
    pages = [[s.name.rsplit("/", 1)[-1] for s in page.secrets] for page in pager.pages]

    assert pages == [["s0", "s1"], ["s2", "s3"], ["s4"]]


def test_list_secrets_filters_by_label(client, project) -> None:
    parent = f"projects/{project}"
    client.create_secret(
        parent=parent, secret_id="tagged", secret={**AUTOMATIC, "labels": {"env": "prod"}}
    )
    make_secret(client, project, "plain")

    listed = client.list_secrets(request={"parent": parent, "filter": "labels.env=prod"})

    assert [s.name for s in listed] == [f"{parent}/secrets/tagged"]


def test_update_replaces_labels_named_in_the_mask(client, project) -> None:
    name = make_secret(client, project)
    before = client.get_secret(name=name)

    updated = client.update_secret(
        secret={"name": name, "labels": {"owner": "ops"}, "annotations": {"ignored": "yes"}},
        update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
    )

    assert dict(updated.labels) == {"owner": "ops"}
    assert dict(updated.annotations) == {}
    assert updated.etag != before.etag


def test_update_with_a_stale_etag_is_aborted(client, project) -> None:
    name = make_secret(client, project)
    stale = client.get_secret(name=name).etag
    client.update_secret(
        secret={"name": name, "labels": {"a": "1"}}, update_mask={"paths": ["labels"]}
    )

    with pytest.raises(exceptions.Aborted, match="etag"):
        client.update_secret(
            secret={"name": name, "labels": {"a": "2"}, "etag": stale},
            update_mask={"paths": ["labels"]},
        )


def test_delete_secret_removes_it(client, project) -> None:
    name = make_secret(client, project)
    client.delete_secret(name=name)

    with pytest.raises(exceptions.NotFound, match=rf"Secret \[{name}\] not found"):
        client.get_secret(name=name)


def test_add_then_access_returns_the_payload_and_its_crc32c(client, project) -> None:
    secret = make_secret(client, project)
    version = client.add_secret_version(
        parent=secret, payload={"data": b"s3cr3t", "data_crc32c": crc32c(b"s3cr3t")}
    )

    accessed = client.access_secret_version(name=version.name)

    assert version.name == f"{secret}/versions/1"
    assert version.state == State.ENABLED
    assert version.client_specified_payload_checksum is True
    assert accessed.payload.data == b"s3cr3t"
    assert accessed.payload.data_crc32c == crc32c(accessed.payload.data)


def test_add_without_a_checksum_still_gets_one_on_access(client, project) -> None:
    secret = make_secret(client, project)
    version = client.add_secret_version(parent=secret, payload={"data": b"plain"})

    accessed = client.access_secret_version(name=version.name)

    assert version.client_specified_payload_checksum is False
    assert accessed.payload.data_crc32c == crc32c(b"plain")


def test_add_with_a_wrong_checksum_is_invalid(client, project) -> None:
    secret = make_secret(client, project)
    with pytest.raises(exceptions.InvalidArgument, match="Checksum mismatch"):
        client.add_secret_version(parent=secret, payload={"data": b"abc", "data_crc32c": 1})

    assert list(client.list_secret_versions(parent=secret)) == []


def test_add_a_payload_over_64_kib_is_invalid(client, project) -> None:
    secret = make_secret(client, project)
    with pytest.raises(exceptions.InvalidArgument, match="64KiB"):
        client.add_secret_version(parent=secret, payload={"data": b"x" * (64 * 1024 + 1)})


def test_concurrent_adds_get_distinct_version_numbers(client, project) -> None:
    secret = make_secret(client, project)
    with ThreadPoolExecutor(max_workers=8) as pool:
        names = list(pool.map(lambda n: add(client, secret, str(n).encode()), range(16)))

    assert sorted(int(n.rsplit("/", 1)[-1]) for n in names) == list(range(1, 17))


def test_latest_resolves_to_the_newest_version_by_name(client, project) -> None:
    secret = make_secret(client, project)
    add(client, secret, b"one")
    add(client, secret, b"two")

    accessed = client.access_secret_version(name=f"{secret}/versions/latest")
    described = client.get_secret_version(name=f"{secret}/versions/latest")

    assert accessed.name == described.name == f"{secret}/versions/2"
    assert accessed.payload.data == b"two"


def test_disabled_version_cannot_be_accessed_until_enabled(client, project) -> None:
    secret = make_secret(client, project)
    version = add(client, secret, b"value")

    disabled = client.disable_secret_version(name=version)
    with pytest.raises(
        exceptions.FailedPrecondition, match=rf"Secret Version \[{version}\] is in DISABLED state"
    ):
        client.access_secret_version(name=version)
    enabled = client.enable_secret_version(name=version)

    assert disabled.state == State.DISABLED
    assert enabled.state == State.ENABLED
    assert client.access_secret_version(name=version).payload.data == b"value"


def test_latest_does_not_skip_a_disabled_newest_version(client, project) -> None:
    # The real API: `latest` is the most recently created version, whatever its state.
    secret = make_secret(client, project)
    first = add(client, secret, b"old")
    newest = add(client, secret, b"new")
    client.disable_secret_version(name=newest)

    with pytest.raises(exceptions.FailedPrecondition, match=rf"\[{newest}\] is in DISABLED"):
        client.access_secret_version(name=f"{secret}/versions/latest")
    assert client.access_secret_version(name=first).payload.data == b"old"


def test_destroyed_version_loses_its_payload_for_good(client, project) -> None:
    secret = make_secret(client, project)
    version = add(client, secret, b"gone")

    destroyed = client.destroy_secret_version(name=version)

    assert destroyed.state == State.DESTROYED
    assert destroyed.destroy_time.timestamp() > 0
    with pytest.raises(exceptions.FailedPrecondition, match="is in DESTROYED state"):
        client.access_secret_version(name=version)
    with pytest.raises(exceptions.FailedPrecondition, match="is in DESTROYED state"):
        client.enable_secret_version(name=version)


def test_list_versions_newest_first_and_by_state(client, project) -> None:
    secret = make_secret(client, project)
    versions = [add(client, secret, f"v{n}".encode()) for n in range(3)]
    client.disable_secret_version(name=versions[1])

    listed = [v.name for v in client.list_secret_versions(parent=secret)]
    enabled = client.list_secret_versions(request={"parent": secret, "filter": "state:ENABLED"})

    assert listed == list(reversed(versions))
    assert [v.name for v in enabled] == [versions[2], versions[0]]


def test_unknown_secret_is_not_found(client, project) -> None:
    missing = f"projects/{project}/secrets/missing"
    with pytest.raises(exceptions.NotFound, match=rf"Secret \[{missing}\] not found or has no"):
        client.access_secret_version(name=f"{missing}/versions/latest")


def test_secret_without_versions_has_no_latest(client, project) -> None:
    secret = make_secret(client, project)
    with pytest.raises(exceptions.NotFound, match="not found or has no versions"):
        client.access_secret_version(name=f"{secret}/versions/latest")


def test_unknown_version_is_not_found(client, project) -> None:
    secret = make_secret(client, project)
    add(client, secret, b"one")
    with pytest.raises(exceptions.NotFound, match=rf"Secret Version \[{secret}/versions/7\]"):
        client.access_secret_version(name=f"{secret}/versions/7")


@pytest.mark.parametrize(
    "name",
    ["db", "projects/p/secrets/has space/versions/1", "projects/p/secrets/db"],
)
def test_malformed_version_name_is_invalid(client, name) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="does not match the expected format"):
        client.access_secret_version(name=name)


def test_regional_secret_is_its_own_resource(client, project) -> None:
    parent = f"projects/{project}/locations/europe-west1"
    secret = client.create_secret(parent=parent, secret_id="db", secret={}).name
    add(client, secret, b"regional")

    accessed = client.access_secret_version(name=f"{secret}/versions/latest")

    assert accessed.name == f"{parent}/secrets/db/versions/1"
    with pytest.raises(exceptions.NotFound):
        client.get_secret(name=f"projects/{project}/secrets/db")


def test_sandbox_access_resolves_a_bare_secret_name_to_latest(gcp, client, project) -> None:
    version = gcp.secrets.create_secret_with_value(project, "token", b"abc")
    gcp.secrets.create_secret_with_value(project, "token", b"def")

    name, data = gcp.secrets.access(f"projects/{project}/secrets/token")

    assert version == f"projects/{project}/secrets/token/versions/1"
    assert (name, data) == (f"projects/{project}/secrets/token/versions/2", b"def")
    assert client.access_secret_version(name=version).payload.data == b"abc"
