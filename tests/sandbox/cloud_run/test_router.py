"""The router: service and tag URLs proxy to revisions by traffic split, with health faults."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from deployer_sandbox.cloud_run.router import Router
from deployer_sandbox.common.child_processes import free_port
from deployer_sandbox.common.faults import Faults

SERVICE = "projects/p/locations/europe-west1/services/content-api"

Backend = Callable[[str], str]


def _echo_handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.dumps(
                {
                    "backend": name,
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": self.rfile.read(length).decode(),
                }
            ).encode()
            self.send_response(201 if self.command == "POST" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Backend", name)
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

    return Echo


def _public(router: Router) -> Router:
    """These tests are about routing: SERVICE lets anyone in (access: test_sandbox_run_iam.py)."""
    router.set_public(SERVICE, True)
    return router


@pytest.fixture
def router() -> Iterator[Router]:
    running = _public(Router(Faults()))
    yield running
    running.close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    """Start echo servers standing in for revision processes; returns their URLs."""
    servers: list[ThreadingHTTPServer] = []

    def start(name: str) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _echo_handler(name))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _served_by(client: httpx.Client, url: str, n: int) -> Counter[str]:
    return Counter(client.get(url).headers["X-Sandbox-Revision"] for _ in range(n))


def test_full_split_goes_to_one_revision(router: Router, backend: Backend) -> None:
    r1, r2 = backend("r1"), backend("r2")
    router.update(SERVICE, [("r1", r1, 100), ("r2", r2, 0)], {})

    with httpx.Client() as client:
        assert _served_by(client, router.service_url(SERVICE), 30) == Counter({"r1": 30})


def test_even_split_shares_traffic(router: Router, backend: Backend) -> None:
    router.update(SERVICE, [("r1", backend("r1"), 50), ("r2", backend("r2"), 50)], {})

    with httpx.Client() as client:
        served = _served_by(client, router.service_url(SERVICE), 200)

    assert 70 <= served["r1"] <= 130
    assert served["r1"] + served["r2"] == 200


def test_request_and_response_are_proxied(router: Router, backend: Backend) -> None:
    router.update(SERVICE, [("r1", backend("r1"), 100)], {})
    url = router.service_url(SERVICE)

    response = httpx.post(
        f"{url}/items?limit=2&q=a%20b",
        content=b'{"title": "x"}',
        headers={"X-Custom": "yes", "Connection": "keep-alive, X-Private", "X-Private": "hop"},
    )

    assert response.status_code == 201
    assert response.headers["X-Backend"] == "r1"
    assert response.headers["X-Sandbox-Revision"] == "r1"
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/items?limit=2&q=a%20b"
    assert seen["body"] == '{"title": "x"}'
    assert seen["headers"]["x-custom"] == "yes"
    assert seen["headers"]["host"] == url.removeprefix("http://")
    assert "x-private" not in seen["headers"]  # named by Connection: hop-by-hop


def test_tag_url_reaches_its_revision(router: Router, backend: Backend) -> None:
    r1, r2 = backend("r1"), backend("r2")
    router.update(SERVICE, [("r1", r1, 100), ("r2", r2, 0)], {"candidate": ("r2", r2)})

    with httpx.Client() as client:
        assert _served_by(client, router.tag_url(SERVICE, "candidate"), 10) == Counter({"r2": 10})
        assert router.tag_url(SERVICE, "candidate") == router.tag_url(SERVICE, "candidate")
        assert router.tag_url(SERVICE, "candidate") != router.service_url(SERVICE)


def test_tag_no_longer_present_answers_404(router: Router, backend: Backend) -> None:
    r2 = backend("r2")
    router.update(SERVICE, [("r2", r2, 100)], {"candidate": ("r2", r2)})
    tag_url = router.tag_url(SERVICE, "candidate")

    router.update(SERVICE, [("r2", r2, 100)], {})

    response = httpx.get(tag_url)
    assert response.status_code == 404
    assert "candidate" in response.text


def test_update_moves_traffic_and_keeps_the_url(router: Router, backend: Backend) -> None:
    r1, r2 = backend("r1"), backend("r2")
    router.update(SERVICE, [("r1", r1, 100)], {})
    url = router.service_url(SERVICE)

    router.update(SERVICE, [("r1", r1, 0), ("r2", r2, 100)], {})

    assert router.service_url(SERVICE) == url
    with httpx.Client() as client:
        assert _served_by(client, url, 10) == Counter({"r2": 10})


def test_nothing_ready_answers_503(router: Router) -> None:
    url = router.service_url(SERVICE)

    response = httpx.get(url)

    assert response.status_code == 503
    assert "no revision is ready" in response.text


def test_unreachable_backend_answers_503(router: Router) -> None:
    router.update(SERVICE, [("gone", f"http://127.0.0.1:{free_port()}", 100)], {})

    response = httpx.get(router.service_url(SERVICE))

    assert response.status_code == 503
    assert response.headers["X-Sandbox-Revision"] == "gone"
    assert "gone is not reachable" in response.text


def test_split_must_sum_to_100(router: Router, backend: Backend) -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        router.update(SERVICE, [("r1", backend("r1"), 60)], {})


def test_health_500_sticks_to_its_revision(backend: Backend) -> None:
    faults = Faults()
    router = _public(Router(faults))
    try:
        r1, r2 = backend("r1"), backend("r2")
        router.update(SERVICE, [("r1", r1, 100)], {"r1": ("r1", r1), "r2": ("r2", r2)})
        faults.arm("health_500", revision="r1")

        for _ in range(2):  # the fault stays until cleared
            broken = httpx.get(router.service_url(SERVICE) + "/health")
            assert broken.status_code == 500
            assert broken.json() == {"status": "unhealthy", "detail": "sandbox fault"}
            assert broken.headers["X-Sandbox-Revision"] == "r1"
        assert httpx.get(router.tag_url(SERVICE, "r1") + "/health").status_code == 500
        assert httpx.get(router.tag_url(SERVICE, "r1") + "/other").status_code == 200
        assert httpx.get(router.tag_url(SERVICE, "r2") + "/health").status_code == 200

        faults.clear()
        assert httpx.get(router.service_url(SERVICE) + "/health").status_code == 200
    finally:
        router.close()


def test_health_hang_holds_the_request(backend: Backend) -> None:
    faults = Faults()
    router = _public(Router(faults))
    try:
        r1 = backend("r1")
        router.update(SERVICE, [("r1", r1, 100)], {})
        faults.arm("health_hang", revision="r1")
        url = router.service_url(SERVICE)

        with pytest.raises(httpx.ReadTimeout):
            httpx.get(url + "/health", timeout=0.5)
        assert httpx.get(url + "/", timeout=5).status_code == 200
    finally:
        router.close()


def test_remove_and_close_stop_the_listeners(router: Router, backend: Backend) -> None:
    router.update(SERVICE, [("r1", backend("r1"), 100)], {})
    url = router.service_url(SERVICE)
    assert httpx.get(url).status_code == 200

    router.remove(SERVICE)

    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    other = router.service_url(SERVICE + "-2")
    router.close()
    router.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(other)
