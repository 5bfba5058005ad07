"""Step `firestore`: the `(default)` database in native mode, in the setup's region,
and the composite indexes of `infra/firestore.indexes.json` (the Firebase CLI's format,
the one file `gcloud` and `firebase deploy` read too), through Firestore Admin.

A database in Datastore mode cannot be switched once it holds data: setup stops and
says so rather than guess. An index is compared by its fields, without the `__name__`
Firestore appends (index.proto: "__name__ ... will be added" last).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore_admin_v1
from google.cloud.firestore_admin_v1.types import database as database_types

from deployer.adapters.polling import operation_result
from deployer.setup.context import Setup
from deployer.setup.steps import CALL_TIMEOUT, OPERATION_TIMEOUT, Changes, SetupFailed, StepResult

STEP = "firestore"
DATABASE = "(default)"
_Index = firestore_admin_v1.Index
_Database = database_types.Database
# Setup runs from a clone of this repository (the worker's image holds no infra/).
_INDEXES_FILE = Path(__file__).resolve().parents[2] / "infra" / "firestore.indexes.json"


def index_definitions() -> list[dict[str, Any]]:
    """The composite indexes the store's queries need (`deployer history`)."""
    indexes: list[dict[str, Any]] = json.loads(_INDEXES_FILE.read_text())["indexes"]
    return indexes


def _fields(definition: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (f["fieldPath"], f.get("order") or f.get("arrayConfig", "")) for f in definition["fields"]
    )


def _index_fields(index: _Index) -> tuple[tuple[str, str], ...]:
    found = []
    for field in index.fields:
        if field.field_path == "__name__":
            continue
        mode = field.order.name if field.order else field.array_config.name
        found.append((field.field_path, mode))
    return tuple(found)


def _database(setup: Setup, client: firestore_admin_v1.FirestoreAdminClient) -> str | None:
    """The database's state: None when it had to be (or would be) created, else ""."""
    name = f"projects/{setup.project}/databases/{DATABASE}"
    try:
        database = client.get_database(name=name, timeout=CALL_TIMEOUT)
    except exceptions.NotFound:
        if not setup.dry_run:
            created = client.create_database(
                parent=f"projects/{setup.project}",
                database=_Database(
                    type_=_Database.DatabaseType.FIRESTORE_NATIVE,
                    location_id=setup.region,
                ),
                database_id=DATABASE,
                timeout=CALL_TIMEOUT,
            )
            operation_result(created, OPERATION_TIMEOUT)
        return None
    if database.type_ != _Database.DatabaseType.FIRESTORE_NATIVE:
        raise SetupFailed(
            STEP,
            f"the database {DATABASE} of {setup.project} is in Datastore mode",
            "The deployer's store needs Firestore in native mode: use a project whose "
            "database is native (or empty, to switch it in the console)",
        )
    return ""


def ensure_firestore(setup: Setup) -> StepResult:
    client = setup.client(firestore_admin_v1.FirestoreAdminClient)
    changes = Changes()
    created = _database(setup, client) is None
    if created:
        changes.done.append(f"{'create' if setup.dry_run else 'created'} {DATABASE} (native)")
    database = f"projects/{setup.project}/databases/{DATABASE}"
    for definition in index_definitions():
        group = f"{database}/collectionGroups/{definition['collectionGroup']}"
        existing: Any = (
            []
            if created and setup.dry_run
            else client.list_indexes(parent=group, timeout=CALL_TIMEOUT)
        )
        if any(_index_fields(index) == _fields(definition) for index in existing):
            continue
        label = (
            f"index {definition['collectionGroup']}({', '.join(f for f, _ in _fields(definition))})"
        )
        if setup.dry_run:
            changes.done.append(f"create {label}")
            continue
        index = _Index(
            query_scope=getattr(_Index.QueryScope, definition.get("queryScope", "COLLECTION")),
            fields=[
                _Index.IndexField(field_path=path, order=getattr(_Index.IndexField.Order, order))
                for path, order in _fields(definition)
            ],
        )
        try:
            operation = client.create_index(parent=group, index=index, timeout=CALL_TIMEOUT)
            operation_result(operation, OPERATION_TIMEOUT)
        except exceptions.AlreadyExists:
            continue  # built between our read and our create
        changes.done.append(f"created {label}")
    return changes.result(STEP, setup.dry_run, f"{DATABASE} (native) and its index")
