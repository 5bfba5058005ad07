"""The embedded SQLite store: records survive, and a lock has exactly one holder."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import RefusedError
from deployer.store import open_store
from tests.store_contract import StoreContract, make_record


class TestSqliteStore(StoreContract):
    """The shared store contract (tests/store_contract.py) on a fresh SQLite file."""

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'state.db'}"


def test_unknown_store_url_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEPLOYER_STORE", "redis://localhost")
    with pytest.raises(RefusedError, match="not a store"):
        open_store()
    monkeypatch.setenv("DEPLOYER_STORE", f"sqlite:///{tmp_path}/s.db")
    open_store().save(make_record())
    assert (tmp_path / "s.db").exists()
