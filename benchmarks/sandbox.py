"""Sandbox speed: start to ready, UpdateService to revision Ready, per-RPC overhead.

    uv run python benchmarks/sandbox.py [--starts N] [--updates N] [--rpcs N]

Prints the figures and saves them to benchmarks/results/sandbox.json. Targets on
a 2-core machine: ready <= 3 s, revision Ready <= 2 s, RPC overhead <= 5 ms median.
"""

from __future__ import annotations

import argparse
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from deployer_sandbox.common.images import Image
from deployer_sandbox.harness.sandbox import Sandbox
from figures import save, summary
from google.cloud import run_v2, secretmanager_v1

from deployer.adapters.google_clients import google_client
from deployer.adapters.polling import operation_result

ROOT = Path(__file__).resolve().parent.parent
PROJECT, REGION = "bench-project", "europe-west1"


def start_to_ready(runs: int, demo: bool) -> list[float]:
    """Seconds from launching `deployer sandbox` to its state file existing."""
    samples = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp) / "state.json"
            command = [sys.executable, "-m", "deployer.cli", "sandbox", "--state-file", str(state)]
            if not demo:
                command.append("--no-demo")
            started = time.perf_counter()
            process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
            while not state.exists():
                if process.poll() is not None or time.perf_counter() - started > 60:
                    raise SystemExit("deployer sandbox did not become ready")
                time.sleep(0.005)
            samples.append(time.perf_counter() - started)
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    return samples


def update_to_ready(sandbox: Sandbox, updates: int) -> list[float]:
    """Seconds from UpdateService to its operation done with the new revision Ready."""
    image = "europe-west1-docker.pkg.dev/bench-project/deployer/backend"
    sandbox.images.push(
        Image(
            repository=image,
            digest="sha256:" + "b" * 64,
            context=ROOT / "service",
            cmd=("python", "-m", "app"),
            env={"APP_COMMIT": "bench"},
            commit="bench",
        ),
        ["latest"],
    )
    services = google_client(run_v2.ServicesClient, sandbox.grpc_address)
    revisions = google_client(run_v2.RevisionsClient, sandbox.grpc_address)
    env = [
        run_v2.EnvVar(name="MONGODB_URL", value="mongodb://x"),
        run_v2.EnvVar(name="SECRET_KEY", value="k"),
    ]
    template = run_v2.RevisionTemplate(
        containers=[run_v2.Container(image=f"{image}:latest", env=env)]
    )
    parent = f"projects/{PROJECT}/locations/{REGION}"
    service = operation_result(
        services.create_service(
            parent=parent, service_id="bench", service=run_v2.Service(template=template)
        ),
        60,
    )
    samples = []
    for number in range(updates):
        service.template.revision = f"bench-update-{number}"
        service.traffic = [
            run_v2.TrafficTarget(
                type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
                percent=100,
            )
        ]
        started = time.perf_counter()
        service = operation_result(services.update_service(service=service), 60)
        samples.append(time.perf_counter() - started)
        ready = revisions.get_revision(
            name=f"{parent}/services/bench/revisions/bench-update-{number}"
        )
        assert any(
            c.type_ == "Ready" and c.state == run_v2.Condition.State.CONDITION_SUCCEEDED
            for c in ready.conditions
        )
    return samples


def rpc_overhead(calls: int, call: Callable[[], object]) -> list[float]:
    """Milliseconds per unary call, after a warm-up."""
    for _ in range(20):
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--rpcs", type=int, default=500)
    args = parser.parse_args()

    figures: dict[str, object] = {
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "start_to_ready_s": summary(start_to_ready(args.starts, demo=True)),
        "start_to_ready_no_demo_s": summary(start_to_ready(args.starts, demo=False)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Sandbox(Path(tmp)).start()
        try:
            figures["update_service_to_ready_s"] = summary(update_to_ready(sandbox, args.updates))
            services = google_client(run_v2.ServicesClient, sandbox.grpc_address)
            name = f"projects/{PROJECT}/locations/{REGION}/services/bench"
            figures["rpc_get_service_ms"] = summary(
                rpc_overhead(args.rpcs, lambda: services.get_service(name=name))
            )
            secrets = google_client(
                secretmanager_v1.SecretManagerServiceClient, sandbox.grpc_address
            )
            version = sandbox.secrets.create_secret_with_value(PROJECT, "bench-secret", b"value")
            figures["rpc_access_secret_ms"] = summary(
                rpc_overhead(args.rpcs, lambda: secrets.access_secret_version(name=version))
            )
        finally:
            sandbox.stop()
    save("sandbox", figures)


if __name__ == "__main__":
    main()
