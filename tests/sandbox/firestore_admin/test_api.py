"""Firestore Admin v1 in the sandbox, through the real `firestore_admin_v1` client over gRPC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.cloud import firestore_admin_v1
from google.cloud.firestore_admin_v1.types import database as database_types
from google.cloud.firestore_admin_v1.types import operation as operation_types

from tests.conftest import GoogleClients

Database = database_types.Database
Index = firestore_admin_v1.Index
Order = Index.IndexField.Order
NATIVE = Database.DatabaseType.FIRESTORE_NATIVE


@pytest.fixture
def client(google_clients: GoogleClients) -> firestore_admin_v1.FirestoreAdminClient:
    return google_clients(firestore_admin_v1.FirestoreAdminClient)


def create_database(client, project: str, database_id: str = "(default)", **fields) -> Database:
    database = Database(type_=fields.pop("type_", NATIVE), location_id="europe-west1", **fields)
    created: Database = client.create_database(
        parent=f"projects/{project}", database=database, database_id=database_id
    ).result(timeout=10)
    return created


def infra_index(repo_root: Path) -> tuple[str, Index]:
    """The deployer's composite index as infra/firestore.indexes.json declares it."""
    [declared] = json.loads((repo_root / "infra" / "firestore.indexes.json").read_text())["indexes"]
    index = Index(
        query_scope=Index.QueryScope[declared["queryScope"]],
        fields=[
            Index.IndexField(field_path=f["fieldPath"], order=Order[f["order"]])
            for f in declared["fields"]
        ],
    )
    return declared["collectionGroup"], index


# --- databases ---------------------------------------------------------------------------


def test_create_the_default_database_with_the_api_defaults(client, project) -> None:
    created = create_database(client, project)
    fetched = client.get_database(name=f"projects/{project}/databases/(default)")

    assert fetched == created
    assert fetched.name == f"projects/{project}/databases/(default)"
    assert fetched.type_ == NATIVE and fetched.location_id == "europe-west1"
    assert fetched.database_edition == Database.DatabaseEdition.STANDARD
    assert fetched.concurrency_mode == Database.ConcurrencyMode.PESSIMISTIC
    assert fetched.free_tier is True
    assert fetched.uid and fetched.etag
    assert [d.name for d in client.list_databases(parent=f"projects/{project}").databases] == [
        fetched.name
    ]


def test_a_named_datastore_mode_database(client, project) -> None:
    create_database(client, project)
    second = create_database(
        client, project, "deploys-eu", type_=Database.DatabaseType.DATASTORE_MODE
    )

    assert second.type_ == Database.DatabaseType.DATASTORE_MODE
    assert second.free_tier is False  # the project's first database has it
    listed = client.list_databases(parent=f"projects/{project}").databases
    assert [d.name.rsplit("/", 1)[1] for d in listed] == ["(default)", "deploys-eu"]


def test_create_twice_is_already_exists(client, project) -> None:
    create_database(client, project)

    with pytest.raises(exceptions.AlreadyExists, match="Database already exists"):
        create_database(client, project)


@pytest.mark.parametrize(
    "database_id",
    [
        "abc",
        "Upper-case",
        "1starts-with-digit",
        "ends-with-dash-",
        "x" * 64,
        "db-12345678-1234-1234-1234-123456789abc",
    ],
)
def test_invalid_database_ids_are_refused(client, project, database_id) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="database_id"):
        create_database(client, project, database_id)


def test_default_id_is_for_standard_edition_only(client, project) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="Standard edition"):
        create_database(client, project, database_edition=Database.DatabaseEdition.ENTERPRISE)


def test_type_and_location_are_required(client, project) -> None:
    parent = f"projects/{project}"
    with pytest.raises(exceptions.InvalidArgument, match="type"):
        client.create_database(
            parent=parent, database=Database(location_id="nam5"), database_id="(default)"
        )
    with pytest.raises(exceptions.InvalidArgument, match="location_id"):
        client.create_database(
            parent=parent, database=Database(type_=NATIVE), database_id="(default)"
        )


def test_missing_database_is_not_found(client, project) -> None:
    with pytest.raises(
        exceptions.NotFound, match=f"database \\(default\\) does not exist for project {project}"
    ):
        client.get_database(name=f"projects/{project}/databases/(default)")


# --- indexes -----------------------------------------------------------------------------


def test_the_deployers_index_can_be_created(client, project, repo_root) -> None:
    create_database(client, project)
    group, index = infra_index(repo_root)
    parent = f"projects/{project}/databases/(default)/collectionGroups/{group}"

    operation = client.create_index(parent=parent, index=index)
    assert operation.metadata.state == operation_types.OperationState.PROCESSING
    created = operation.result(timeout=10)

    assert created.name.startswith(f"{parent}/indexes/")
    assert created.state == Index.State.READY
    assert [(f.field_path, f.order) for f in created.fields] == [
        ("environment", Order.ASCENDING),
        ("created_at", Order.DESCENDING),
        ("__name__", Order.DESCENDING),  # "with the same direction as that of the last field"
    ]
    assert client.get_index(name=created.name) == created
    assert [i.name for i in client.list_indexes(parent=parent)] == [created.name]
    everywhere = f"projects/{project}/databases/(default)/collectionGroups/-"
    assert [i.name for i in client.list_indexes(parent=everywhere)] == [created.name]
    with pytest.raises(exceptions.AlreadyExists, match="index already exists"):
        client.create_index(parent=parent, index=index)


def test_an_array_field_gets_an_ascending_name(client, project) -> None:
    create_database(client, project)
    parent = f"projects/{project}/databases/(default)/collectionGroups/deploys"
    index = Index(
        query_scope=Index.QueryScope.COLLECTION_GROUP,
        fields=[
            Index.IndexField(field_path="tags", array_config=Index.IndexField.ArrayConfig.CONTAINS),
            Index.IndexField(field_path="created_at", order=Order.DESCENDING),
        ],
    )

    created = client.create_index(parent=parent, index=index).result(timeout=10)

    assert created.fields[-1].field_path == "__name__"
    assert created.fields[-1].order == Order.DESCENDING
    assert created.query_scope == Index.QueryScope.COLLECTION_GROUP


@pytest.mark.parametrize(
    ("fields", "scope", "message"),
    [
        ([("a", Order.ASCENDING)], Index.QueryScope.COLLECTION, "single field index"),
        (
            [("a", Order.ASCENDING), ("b", Order.ORDER_UNSPECIFIED)],
            Index.QueryScope.COLLECTION,
            "order",
        ),
        (
            [("a", Order.ASCENDING), ("b", Order.ASCENDING)],
            Index.QueryScope.QUERY_SCOPE_UNSPECIFIED,
            "query_scope",
        ),
        ([("a", Order.ASCENDING), ("a", Order.DESCENDING)], Index.QueryScope.COLLECTION, "twice"),
        (
            [("a", Order.ASCENDING), ("b", Order.ASCENDING)],
            Index.QueryScope.COLLECTION_RECURSIVE,
            "Datastore mode",
        ),
    ],
)
def test_invalid_indexes_are_refused(client, project, fields, scope, message) -> None:
    create_database(client, project)
    parent = f"projects/{project}/databases/(default)/collectionGroups/deploys"
    index = Index(
        query_scope=scope,
        fields=[Index.IndexField(field_path=path, order=order) for path, order in fields],
    )

    with pytest.raises(exceptions.InvalidArgument, match=message):
        client.create_index(parent=parent, index=index)


def test_an_index_needs_its_database(client, project, repo_root) -> None:
    group, index = infra_index(repo_root)
    parent = f"projects/{project}/databases/(default)/collectionGroups/{group}"

    with pytest.raises(exceptions.NotFound, match="does not exist"):
        client.create_index(parent=parent, index=index)


def test_delete_index(client, project, repo_root) -> None:
    create_database(client, project)
    group, index = infra_index(repo_root)
    parent = f"projects/{project}/databases/(default)/collectionGroups/{group}"
    created = client.create_index(parent=parent, index=index).result(timeout=10)

    client.delete_index(name=created.name)

    with pytest.raises(exceptions.NotFound):
        client.get_index(name=created.name)
    assert list(client.list_indexes(parent=parent)) == []
