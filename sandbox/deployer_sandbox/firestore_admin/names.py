"""Firestore Admin resource names, the database ID rules, and the API's wording about them.

    projects/P                                               ListDatabases' parent
    projects/P/databases/D                                   a database
    projects/P/databases/D/collectionGroups/C                an index's parent (`-`: every
                                                             collection group, to list)
    projects/P/databases/D/collectionGroups/C/indexes/I      a composite index

A database ID, per `CreateDatabaseRequest.database_id` (google/firestore/admin/v1/
firestore_admin.proto): "This value should be 4-63 characters. Valid characters are
/[a-z][0-9]-/ with first character a letter and the last a letter or a number. Must not
be UUID-like /[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}/. "(default)" database ID is
also valid if the database is Standard edition."
"""

from __future__ import annotations

import re

from deployer_sandbox.common.rpc import RpcError, already_exists, invalid, not_found

DEFAULT_DATABASE = "(default)"
_PROJECT = r"projects/(?P<project>[a-z0-9:.-]+)"
_DATABASE = rf"{_PROJECT}/databases/(?P<database>\(default\)|[a-z][a-z0-9-]{{2,61}}[a-z0-9])"
_GROUP = rf"(?P<db>{_DATABASE})/collectionGroups/(?P<group>[^/]+)"
_PROJECT_RE = re.compile(rf"^{_PROJECT}$")
_DATABASE_RE = re.compile(rf"^{_DATABASE}$")
_GROUP_RE = re.compile(rf"^{_GROUP}$")
_INDEX_RE = re.compile(rf"^(?P<parent>{_GROUP})/indexes/(?P<index>[A-Za-z0-9_-]+)$")
_DATABASE_ID_RE = re.compile(r"^[a-z][a-z0-9-]{2,61}[a-z0-9]$")
_UUID_LIKE = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")


def check_project(parent: str) -> str:
    """The project of `projects/P`, or INVALID_ARGUMENT."""
    match = _PROJECT_RE.match(parent)
    if match is None:
        raise invalid(f"Invalid parent [{parent}]: expected projects/{{project_id}}.")
    return match["project"]


def check_database_id(database_id: str, standard_edition: bool) -> None:
    """INVALID_ARGUMENT unless `database_id` follows the rules quoted above."""
    if database_id == DEFAULT_DATABASE:
        if not standard_edition:
            raise invalid('Database ID "(default)" is valid for Standard edition databases only.')
        return
    if not _DATABASE_ID_RE.match(database_id) or _UUID_LIKE.search(database_id):
        raise invalid(
            f"Invalid database_id [{database_id}]: it should be 4-63 characters of [a-z0-9-], "
            "the first a letter and the last a letter or a number, not UUID-like; or (default)."
        )


def parse_database(name: str) -> tuple[str, str]:
    """(project, database id) of `projects/P/databases/D`, or INVALID_ARGUMENT."""
    match = _DATABASE_RE.match(name)
    if match is None:
        raise invalid(f"Invalid database name [{name}]: expected projects/*/databases/*.")
    return match["project"], match["database"]


def parse_collection_group(parent: str) -> tuple[str, str]:
    """(database name, collection group id) of an index's parent, or INVALID_ARGUMENT."""
    match = _GROUP_RE.match(parent)
    if match is None:
        raise invalid(
            f"Invalid parent [{parent}]: expected projects/*/databases/*/collectionGroups/*."
        )
    return match["db"], match["group"]


def parse_index(name: str) -> tuple[str, str]:
    """(collection group parent, index id) of an index's name, or INVALID_ARGUMENT."""
    match = _INDEX_RE.match(name)
    if match is None:
        raise invalid(
            f"Invalid index name [{name}]: expected "
            "projects/*/databases/*/collectionGroups/*/indexes/*."
        )
    return match["parent"], match["index"]


def database_exists() -> RpcError:
    """ALREADY_EXISTS, in the API's words (GoogleCloudPlatform/core-solution-services#6)."""
    return already_exists("Database already exists. Please use another database_id")


def database_not_found(name: str) -> RpcError:
    """NOT_FOUND, in the API's words ("The database -default- does not exist for project
    misterapp-500516", firebase/firebase-admin-python#978)."""
    project, database = name.split("/")[1], name.split("/")[3]
    return not_found(f"The database {database} does not exist for project {project}")


def index_exists() -> RpcError:
    """ALREADY_EXISTS for an index defined twice ("HTTP Error: 409, index already exists",
    firebase/firebase-tools#1483)."""
    return already_exists("index already exists")


def index_not_found(name: str) -> RpcError:
    return not_found(f"Index {name} not found.")
