"""`main.py` as Cloud Functions loads it."""

from __future__ import annotations

from pathlib import Path

import functions_framework


def test_healthz_through_functions_framework(repo_root: Path) -> None:
    app = functions_framework.create_app("deployer_http", str(repo_root / "main.py"))
    client = app.test_client()
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ok"}
    assert client.post("/healthz").status_code == 405
    assert client.get("/nowhere").status_code == 404
