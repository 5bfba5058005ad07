"""Where deploy records and environment locks live (`DEPLOYER_STORE`).

    sqlite:///PATH                       the embedded store, one machine (the default:
                                         sqlite:///.deployer/state.db)
    firestore                            Cloud Firestore, the production store; project from
                                         GOOGLE_CLOUD_PROJECT, else Application Default Credentials
    firestore://PROJECT[/PREFIX]         that project; PREFIX keeps several deployers (or test
                                         runs) apart in one database, under deployers/PREFIX
    firestore:///PREFIX                  the environment's project, under deployers/PREFIX
    firestore://...?database=NAME        a named Firestore database

`FIRESTORE_EMULATOR_HOST` sends the Firestore client to the emulator. The
Firestore store's module documents its layout, the index it needs and its rights.
"""

from __future__ import annotations

import os
from pathlib import Path

from deployer.errors import RefusedError
from deployer.store.protocol import Store
from deployer.store.sqlite import SqliteStore

STORE_ENV = "DEPLOYER_STORE"
DEFAULT_STORE = "sqlite:///.deployer/state.db"


def open_store(url: str | None = None) -> Store:
    """The store `url` (default `DEPLOYER_STORE`, else the embedded SQLite file) names.

    A store that cannot be named or built is a RefusedError, never a fallback to another.
    """
    url = url or os.environ.get(STORE_ENV) or DEFAULT_STORE
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url.removeprefix("sqlite:///")))
    if url == "firestore" or url.startswith("firestore:"):
        # Imported here: the Firestore client library is heavy, and SQLite users never need it.
        from deployer.store.firestore import FirestoreStore

        return FirestoreStore.from_url(url)
    raise RefusedError(
        f"{STORE_ENV}={url!r} is not a store this deployer knows; use sqlite:///PATH, "
        "firestore or firestore://PROJECT/PREFIX. "
        "Without a store there are no locks, so nothing is deployed."
    )


__all__ = ["DEFAULT_STORE", "STORE_ENV", "Store", "open_store"]
