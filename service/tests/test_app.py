"""The content-api service: its answers, its start-up failure, and its command."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from app.main import app
from fastapi.testclient import TestClient
from pydantic import ValidationError

SERVICE_DIR = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-value-that-must-never-be-printed"

# Variables the service reads; each test states the ones it wants.
SERVICE_VARIABLES = (
    "MONGODB_URL",
    "SECRET_KEY",
    "APP_COMMIT",
    "K_SERVICE",
    "K_REVISION",
    "HOST",
    "PORT",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URL", "mongodb://db.internal:27017/content")
    monkeypatch.setenv("SECRET_KEY", SECRET)


@pytest.fixture
def client(configured: None) -> Iterator[TestClient]:
    # The context manager runs the lifespan, where settings are loaded.
    with TestClient(app) as test_client:
        yield test_client


def test_root_names_the_service(client: TestClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.json() == {"message": "Content Management API", "status": "running"}


def test_health_without_cloud_run_variables(client: TestClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy",
        "service": "content-api",
        "version": {"commit": "unknown", "revision": None},
    }


def test_health_reports_build_commit_and_revision(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("K_SERVICE", "backend")
    monkeypatch.setenv("K_REVISION", "backend-00042-xyz")

    with TestClient(app) as client:
        body = client.get("/health").json()

    assert body == {
        "status": "healthy",
        "service": "backend",
        "version": {
            "commit": "0123456789abcdef0123456789abcdef01234567",
            "revision": "backend-00042-xyz",
        },
    }


def test_startup_fails_in_process_without_required_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRET_KEY", SECRET)

    with pytest.raises(ValidationError) as failure, TestClient(app):
        pass

    message = str(failure.value)
    assert "mongodb_url\n  Field required" in message
    assert SECRET not in message


def _service_environment(**variables: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    environment.update(variables)
    return environment


def test_missing_variable_ends_the_process_at_startup() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=SERVICE_DIR,
        env=_service_environment(SECRET_KEY=SECRET, PORT=str(_free_port())),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode != 0
    assert time.monotonic() - started < 15
    assert "mongodb_url\n  Field required" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    # It failed before serving: uvicorn never started.
    assert "Uvicorn running" not in result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_health(
    url: str, process: subprocess.Popen[bytes], deadline: float
) -> tuple[int, object]:
    """Poll until the server answers; return its status and JSON body."""
    while True:
        if process.poll() is not None:
            raise AssertionError(f"server exited early with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                return response.status, json.load(response)
        except (ConnectionError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_python_m_app_serves_health_on_port(tmp_path: Path) -> None:
    port = _free_port()
    log_path = tmp_path / "server.log"
    environment = _service_environment(
        MONGODB_URL="mongodb://db.internal:27017/content",
        SECRET_KEY=SECRET,
        PORT=str(port),
        HOST="127.0.0.1",
        APP_COMMIT="abc1234",
        K_REVISION="backend-00001-abc",
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=SERVICE_DIR,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            status, body = _wait_for_health(
                f"http://127.0.0.1:{port}/health", process, deadline=time.monotonic() + 20
            )
            # Cloud Run stops instances with SIGTERM; the server must exit promptly.
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    assert status == 200
    assert body == {
        "status": "healthy",
        "service": "content-api",
        "version": {"commit": "abc1234", "revision": "backend-00001-abc"},
    }
    output = log_path.read_text()
    # uvicorn shuts down cleanly, then re-raises the signal it caught.
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in output
    assert f"127.0.0.1:{port}" in output
    assert "GET /health" not in output  # access log is off
    assert SECRET not in output
