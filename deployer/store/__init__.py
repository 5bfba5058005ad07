"""Where deploy records and environment locks live (`DEPLOYER_STORE`)."""

from __future__ import annotations

import os
from pathlib import Path

from deployer.errors import RefusedError
from deployer.store.protocol import Store
from deployer.store.sqlite import SqliteStore

STORE_ENV = "DEPLOYER_STORE"
DEFAULT_STORE = "sqlite:///.deployer/state.db"


def open_store(url: str | None = None) -> Store:
    """The store `url` (default `DEPLOYER_STORE`, else the embedded SQLite file) names."""
    url = url or os.environ.get(STORE_ENV) or DEFAULT_STORE
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url.removeprefix("sqlite:///")))
    raise RefusedError(
        f"{STORE_ENV}={url!r} is not a store this deployer knows; use sqlite:///PATH. "
        "Without a store there are no locks, so nothing is deployed."
    )


__all__ = ["DEFAULT_STORE", "STORE_ENV", "Store", "open_store"]
