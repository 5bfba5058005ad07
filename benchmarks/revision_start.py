"""Revision start inside a network namespace against the host: start to ready, and a request.

    uv run python benchmarks/revision_start.py [--starts N] [--requests N]

A small revision (a stdlib HTTP server listening on $PORT) is started N times in
each mode, alternating: inside its own network namespace behind the relay
(`common.netns`), and on the host with a remapped port (the fallback). Figures:
seconds from `RevisionProcesses.start` to the port accepting, milliseconds per GET
to a running revision, and the namespace/host ratio of the medians. Prints them and
saves them to benchmarks/results/revision_start.json.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from deployer_sandbox.cloud_run.processes import RevisionProcesses
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.images import Image
from deployer_sandbox.common.netns import ContainerNetwork
from figures import save, summary

APP = """
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


def start_to_ready(processes: RevisionProcesses, image: Image, name: str) -> float:
    """Seconds from start to the revision's port accepting connections."""
    started = time.perf_counter()
    running = processes.start(name, image, {})
    failure = running.wait_ready(timeout=30)
    elapsed = time.perf_counter() - started
    if failure is not None:
        raise SystemExit(f"{name} did not start: {running.last_log_lines()}")
    return elapsed


def request_ms(url: str, requests: int) -> list[float]:
    """Milliseconds per GET over one kept-alive connection, after a warm-up."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    samples = []
    for number in range(requests + 20):
        started = time.perf_counter()
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.read() == b"ok"
        if number >= 20:
            samples.append((time.perf_counter() - started) * 1000)
    connection.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    namespaced = ContainerNetwork()
    if namespaced.unavailable is not None:
        raise SystemExit(f"network namespaces are unavailable here: {namespaced.unavailable}")
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "app"
        app.mkdir()
        (app / "server.py").write_text(APP)
        image = Image("bench/small", "sha256:" + "5" * 64, app, ("python", "server.py"))
        modes = {
            "namespace": RevisionProcesses(Path(tmp) / "ns", Faults(), namespaced),
            "host": RevisionProcesses(
                Path(tmp) / "host", Faults(), ContainerNetwork(namespaces=False)
            ),
        }
        starts: dict[str, list[float]] = {mode: [] for mode in modes}
        requests: dict[str, list[float]] = {}
        try:
            for number in range(args.starts):
                for mode, processes in modes.items():
                    name = f"{mode}-{number}"
                    starts[mode].append(start_to_ready(processes, image, name))
                    if number == args.starts - 1:
                        running = processes.get(name)
                        assert running is not None
                        requests[mode] = request_ms(running.url, args.requests)
                    processes.stop(name)
        finally:
            for processes in modes.values():
                processes.close()

    figures: dict[str, object] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "start_to_ready_namespace_s": summary(starts["namespace"]),
        "start_to_ready_host_s": summary(starts["host"]),
        "request_namespace_ms": summary(requests["namespace"]),
        "request_host_ms": summary(requests["host"]),
    }
    ns_start = summary(starts["namespace"])["median"]
    host_start = summary(starts["host"])["median"]
    figures["start_ratio_namespace_to_host"] = round(ns_start / host_start, 2)
    figures["request_ratio_namespace_to_host"] = round(
        summary(requests["namespace"])["median"] / summary(requests["host"])["median"], 2
    )
    save("revision_start", figures)


if __name__ == "__main__":
    main()
