"""Firestore Admin v1 in the sandbox: databases and composite indexes, recorded.

`google.firestore.admin.v1.FirestoreAdmin`: CreateDatabase, GetDatabase,
ListDatabases, CreateIndex, GetIndex, ListIndexes and DeleteIndex, as
`firestore_admin_v1.FirestoreAdminClient` calls them. The databases and indexes are
recorded only: no document is stored here, and no query is checked against the
indexes (the Firestore emulator, where one runs, serves the documents and needs no
composite index). Names and their errors are in `firestore_admin.names`, the index
rules in `firestore_admin.indexes`.

    call            what the sandbox does                               source (firestore_admin.proto,
                                                                        database.proto, index.proto)
    CreateDatabase  an operation (metadata CreateDatabaseMetadata),     FirestoreAdminClient.create_database
                    already done, whose response is the database;
                    `type` FIRESTORE_NATIVE or DATASTORE_MODE and a
                    `location_id` required; the API's defaults filled
                    in (below); ALREADY_EXISTS for an ID taken
    GetDatabase,    the database; NOT_FOUND "The database D does not    ListDatabasesRequest
    ListDatabases   exist for project P"; every database of a project
    CreateIndex     an operation (metadata IndexOperationMetadata)      Index.State ("During index creation,
                    whose index is CREATING until it is built           an index will be in the CREATING
                    (`index_build_seconds` later), then READY, and      state ... READY")
                    the operation ends with the index
    GetIndex,       the index; ListIndexes by name, the collection      ListIndexesRequest
    ListIndexes     group `-` lists the database's every index;
                    `filter` is not served (INVALID_ARGUMENT)
    DeleteIndex     forgets the index                                   DeleteIndexRequest

A database reads back with, where the request left them unset: `database_edition`
STANDARD ("This is the default setting if not specified"), `concurrency_mode`
PESSIMISTIC ("the default setting for Cloud Firestore Standard Edition databases"),
`app_engine_integration_mode` DISABLED ("the default setting for databases created with
the Firestore API"), `point_in_time_recovery_enablement` DISABLED and a
`version_retention_period` of 1 hour ("If the PITR feature is enabled, the retention
period is 7 days. Otherwise, the retention period is 1 hour"),
`delete_protection_state` DISABLED, and `free_tier` for a project's first database
("The first (or next) database that is created in a project without a free tier
database will be marked as eligible").
"""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.cloud import firestore_admin_v1
from google.cloud.firestore_admin_v1.types import database as database_types
from google.cloud.firestore_admin_v1.types import firestore_admin, operation
from google.longrunning.operations_pb2 import Operation as _Operation
from google.protobuf import empty_pb2

from deployer_sandbox.common import rpc
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.protos import clone, new_etag, now
from deployer_sandbox.common.rpc import invalid, unary
from deployer_sandbox.firestore_admin.indexes import check_and_complete, same_definition
from deployer_sandbox.firestore_admin.names import (
    check_database_id,
    check_project,
    database_exists,
    database_not_found,
    index_exists,
    index_not_found,
    parse_collection_group,
    parse_database,
    parse_index,
)

SERVICE = "google.firestore.admin.v1.FirestoreAdmin"
# proto-plus messages and their enums, typed loosely: mypy reads enum members as plain ints.
Database: Any = database_types.Database
Index: Any = firestore_admin_v1.Index
OperationState: Any = operation.OperationState
# https://cloud.google.com/firestore/docs/locations: the multi-regions by name, the
# regions by their shape (`europe-west1`).
_MULTI_REGIONS = ("nam5", "nam7", "eur3")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")


class FirestoreAdmin:
    """Recorded Firestore databases and composite indexes, served over gRPC. Thread-safe."""

    def __init__(self, operations: Operations, index_build_seconds: float = 0.2) -> None:
        """`index_build_seconds`: how long a new index stays CREATING."""
        self._operations = operations
        self._build_seconds = index_build_seconds
        self._lock = threading.Lock()
        self._databases: dict[str, Database] = {}
        self._indexes: dict[str, Index] = {}

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler for `google.firestore.admin.v1.FirestoreAdmin`."""
        f = firestore_admin
        table: list[tuple[str, Any, Any, Any]] = [
            ("CreateDatabase", self._create_database, f.CreateDatabaseRequest, _Operation),
            ("GetDatabase", self._get_database, f.GetDatabaseRequest, Database),
            (
                "ListDatabases",
                self._list_databases,
                f.ListDatabasesRequest,
                f.ListDatabasesResponse,
            ),
            ("CreateIndex", self._create_index, f.CreateIndexRequest, _Operation),
            ("GetIndex", self._get_index, f.GetIndexRequest, Index),
            ("ListIndexes", self._list_indexes, f.ListIndexesRequest, f.ListIndexesResponse),
            ("DeleteIndex", self._delete_index, f.DeleteIndexRequest, empty_pb2.Empty),
        ]
        methods = {name: unary(handler, req, resp) for name, handler, req, resp in table}
        return rpc.service(SERVICE, methods)

    # --- databases -----------------------------------------------------------------------

    def _create_database(self, request: firestore_admin.CreateDatabaseRequest) -> Any:
        project = check_project(request.parent)
        database = clone(request.database)
        edition = database.database_edition or Database.DatabaseEdition.STANDARD
        check_database_id(request.database_id, edition == Database.DatabaseEdition.STANDARD)
        if database.type_ == Database.DatabaseType.DATABASE_TYPE_UNSPECIFIED:
            raise invalid("Database.type must be FIRESTORE_NATIVE or DATASTORE_MODE.")
        if database.location_id not in _MULTI_REGIONS and not _REGION.match(database.location_id):
            raise invalid(
                f"Invalid location_id [{database.location_id}]: see "
                "https://cloud.google.com/firestore/docs/locations."
            )
        name = f"{request.parent}/databases/{request.database_id}"
        with self._lock:
            if name in self._databases:
                raise database_exists()
            first = not any(n.startswith(f"projects/{project}/") for n in self._databases)
            _fill_database(database, name, edition, free_tier=first)
            self._databases[name] = database
            created = clone(database)
        operation_name = self._operations.start(name, firestore_admin.CreateDatabaseMetadata())
        self._operations.succeed(operation_name, created)
        return self._operations.get(operation_name)

    def _get_database(self, request: firestore_admin.GetDatabaseRequest) -> Database:
        with self._lock:
            return clone(self._database(request.name))

    def _list_databases(
        self, request: firestore_admin.ListDatabasesRequest
    ) -> firestore_admin.ListDatabasesResponse:
        check_project(request.parent)
        prefix = f"{request.parent}/databases/"
        with self._lock:
            found = [clone(d) for n, d in sorted(self._databases.items()) if n.startswith(prefix)]
        return firestore_admin.ListDatabasesResponse(databases=found)

    # --- indexes -------------------------------------------------------------------------

    def _create_index(self, request: firestore_admin.CreateIndexRequest) -> Any:
        database_name, group = parse_collection_group(request.parent)
        if group == "-":
            raise invalid("CreateIndex needs a collection group, not '-'.")
        index = clone(request.index)
        with self._lock:
            database = self._database(database_name)
            check_and_complete(index, database)
            siblings = [i for n, i in self._indexes.items() if n.startswith(request.parent + "/")]
            if any(same_definition(index, sibling) for sibling in siblings):
                raise index_exists()
            index.name = f"{request.parent}/indexes/{_index_id()}"
            index.state = Index.State.CREATING
            self._indexes[index.name] = index
            creating = clone(index)
        metadata = operation.IndexOperationMetadata(
            start_time=now(), index=creating.name, state=OperationState.PROCESSING
        )
        operation_name = self._operations.start(database_name, metadata)
        timer = threading.Timer(
            self._build_seconds, self._built, args=(creating.name, operation_name, metadata)
        )
        timer.daemon = True
        timer.start()
        return self._operations.get(operation_name)

    def _built(
        self, name: str, operation_name: str, metadata: operation.IndexOperationMetadata
    ) -> None:
        """The index is built: READY, and its operation ends with it."""
        built: Index | None = None
        with self._lock:
            index = self._indexes.get(name)
            if index is not None:
                index.state = Index.State.READY
                built = clone(index)
        metadata.end_time = now()
        if built is None:  # deleted while it was being built
            metadata.state = OperationState.CANCELLED
            self._operations.fail(
                operation_name, rpc.RpcError(grpc.StatusCode.CANCELLED, "Index deleted."), metadata
            )
            return
        metadata.state = OperationState.SUCCESSFUL
        self._operations.succeed(operation_name, built, metadata)

    def _get_index(self, request: firestore_admin.GetIndexRequest) -> Index:
        parse_index(request.name)
        with self._lock:
            index = self._indexes.get(request.name)
            if index is None:
                raise index_not_found(request.name)
            return clone(index)

    def _list_indexes(
        self, request: firestore_admin.ListIndexesRequest
    ) -> firestore_admin.ListIndexesResponse:
        database_name, group = parse_collection_group(request.parent)
        if request.filter:
            raise invalid("The sandbox does not serve ListIndexes filters.")
        prefix = f"{database_name}/collectionGroups/" if group == "-" else request.parent + "/"
        with self._lock:
            self._database(database_name)
            found = [clone(i) for n, i in sorted(self._indexes.items()) if n.startswith(prefix)]
        listed, token = page(found, request.page_size, request.page_token, default_size=None)
        return firestore_admin.ListIndexesResponse(indexes=listed, next_page_token=token)

    def _delete_index(self, request: firestore_admin.DeleteIndexRequest) -> empty_pb2.Empty:
        parse_index(request.name)
        with self._lock:
            if self._indexes.pop(request.name, None) is None:
                raise index_not_found(request.name)
        return empty_pb2.Empty()

    # --- lookups (callers hold the lock) -------------------------------------------------

    def _database(self, name: str) -> Database:
        parse_database(name)
        database = self._databases.get(name)
        if database is None:
            raise database_not_found(name)
        return database


def _fill_database(database: Database, name: str, edition: Any, free_tier: bool) -> None:
    """The output-only fields and the defaults the API fills in (see the module's docstring)."""
    database.name = name
    database.uid = str(uuid.uuid4())
    database.create_time = database.update_time = now()
    database.etag = new_etag()
    database.database_edition = edition
    if not database.concurrency_mode:
        standard = edition == Database.DatabaseEdition.STANDARD
        database.concurrency_mode = (
            Database.ConcurrencyMode.PESSIMISTIC
            if standard
            else Database.ConcurrencyMode.OPTIMISTIC
        )
    if not database.app_engine_integration_mode:
        database.app_engine_integration_mode = Database.AppEngineIntegrationMode.DISABLED
    pitr = Database.PointInTimeRecoveryEnablement
    if not database.point_in_time_recovery_enablement:
        database.point_in_time_recovery_enablement = pitr.POINT_IN_TIME_RECOVERY_DISABLED
    enabled = database.point_in_time_recovery_enablement == pitr.POINT_IN_TIME_RECOVERY_ENABLED
    retention = timedelta(days=7) if enabled else timedelta(hours=1)
    raw = Database.pb(database)
    raw.version_retention_period.FromTimedelta(retention)
    raw.earliest_version_time.FromDatetime(datetime.now(UTC) - retention)
    if not database.delete_protection_state:
        database.delete_protection_state = Database.DeleteProtectionState.DELETE_PROTECTION_DISABLED
    database.free_tier = free_tier


def _index_id() -> str:
    """A server-defined index ID, shaped like Firestore's (`CICAgOjXh4EK`)."""
    return "CICAg" + secrets.token_urlsafe(6)[:7].replace("-", "A").replace("_", "B")
