"""What Firestore checks in a composite index, and how it completes one.

rule                                                   source (google/firestore/admin/v1/index.proto)
query_scope set; COLLECTION_RECURSIVE in Datastore     Index.QueryScope ("QUERY_SCOPE_UNSPECIFIED
  mode only                                              ... Not a valid option"; "Only available
                                                         for Datastore Mode databases")
MONGODB_COMPATIBLE_API in Enterprise edition only      Index.ApiScope, Index.multikey
each field: a field_path, and a value mode: `order`    Index.IndexField ("ORDER_UNSPECIFIED ...
  ASCENDING/DESCENDING, `array_config` CONTAINS, or      Not a valid option")
  `vector_config`
one array field at most, no field path twice           the sandbox's (stricter when unsure)
`__name__` last: added "with the same direction as     Index.fields
  that of the last field defined", ASCENDING if that
  one is not directional
2 to 100 fields; a lone field besides `__name__` is    Index.fields ("a minimum of 2 and a
  refused as Firestore refuses it ("this index is        maximum of 100 fields")
  not necessary, configure using single field index
  controls")
density SPARSE_ALL in Standard edition                 Index.Density.SPARSE_ALL ("both the
                                                         default and only allowed value for
                                                         Standard Edition databases")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.cloud import firestore_admin_v1
from google.cloud.firestore_admin_v1.types import database as database_types

from deployer_sandbox.common.rpc import invalid

# proto-plus messages and their enums, typed loosely: mypy reads enum members as plain ints.
Index: Any = firestore_admin_v1.Index
Field: Any = Index.IndexField
Database: Any = database_types.Database
NAME_FIELD = "__name__"
_MAX_FIELDS = 100


def check_and_complete(index: Index, database: Database) -> None:
    """INVALID_ARGUMENT for the first rule `index` breaks; else complete it as the API does."""
    standard = database.database_edition != Database.DatabaseEdition.ENTERPRISE
    if index.query_scope == Index.QueryScope.QUERY_SCOPE_UNSPECIFIED:
        raise invalid("Index.query_scope must be COLLECTION or COLLECTION_GROUP.")
    if (
        index.query_scope == Index.QueryScope.COLLECTION_RECURSIVE
        and database.type_ != Database.DatabaseType.DATASTORE_MODE
    ):
        raise invalid("COLLECTION_RECURSIVE query scope is only available in Datastore mode.")
    if index.api_scope == Index.ApiScope.MONGODB_COMPATIBLE_API and standard:
        raise invalid("MONGODB_COMPATIBLE_API indexes need an Enterprise edition database.")
    _check_fields(index.fields)
    if not index.fields or index.fields[-1].field_path != NAME_FIELD:
        if len(index.fields) == 1:
            raise invalid(
                "this index is not necessary, configure using single field index controls"
            )
        index.fields.append(Field(field_path=NAME_FIELD, order=_name_order(index.fields)))
    if not 2 <= len(index.fields) <= _MAX_FIELDS:
        raise invalid(f"A composite index needs 2 to {_MAX_FIELDS} fields, __name__ included.")
    if standard:
        if index.density not in (Index.Density.DENSITY_UNSPECIFIED, Index.Density.SPARSE_ALL):
            raise invalid("Standard edition databases allow SPARSE_ALL density only.")
        index.density = Index.Density.SPARSE_ALL


def same_definition(one: Index, other: Index) -> bool:
    """Whether two completed indexes index the same thing (the API's "already exists")."""
    return (
        one.query_scope == other.query_scope
        and one.api_scope == other.api_scope
        and [Field.to_dict(f) for f in one.fields] == [Field.to_dict(f) for f in other.fields]
    )


def _check_fields(fields: Sequence[Any]) -> None:
    seen: set[str] = set()
    arrays = 0
    for position, field in enumerate(fields):
        if not field.field_path:
            raise invalid(f"Index.fields[{position}].field_path is required.")
        if field.field_path in seen:
            raise invalid(f"Field path {field.field_path} appears twice in the index.")
        seen.add(field.field_path)
        mode = Field.pb(field).WhichOneof("value_mode")
        if mode is None:
            raise invalid(
                f"Index.fields[{position}] ({field.field_path}) needs an order or array_config."
            )
        if mode == "order" and field.order == Field.Order.ORDER_UNSPECIFIED:
            raise invalid(f"Index.fields[{position}].order must be ASCENDING or DESCENDING.")
        if mode == "array_config":
            if field.array_config == Field.ArrayConfig.ARRAY_CONFIG_UNSPECIFIED:
                raise invalid(f"Index.fields[{position}].array_config must be CONTAINS.")
            arrays += 1
        if field.field_path == NAME_FIELD and position != len(fields) - 1:
            raise invalid("__name__ must be the last field of an index.")
    if arrays > 1:
        raise invalid("An index may hold one array_config field at most.")


def _name_order(fields: Sequence[Any]) -> Any:
    last = fields[-1] if fields else None
    if last is not None and Field.pb(last).WhichOneof("value_mode") == "order":
        return Field.Order(last.order)
    return Field.Order.ASCENDING
