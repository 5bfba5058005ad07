"""Revisions and job tasks run as Cloud Run runs them: PORT is the container port, each
container has a network of its own, the sandbox's endpoints are relayed in, and the
template's command and args override the image's ENTRYPOINT and CMD.

Everything goes through the real run_v2 clients over gRPC against the sandbox.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from deployer_sandbox.common.images import Image
from deployer_sandbox.common.netns import SWITCH_ENV, ContainerNetwork
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import run_v2, secretmanager

from deployer.adapters.google_clients import google_client
from tests.conftest import PROJECT, REGION
from tests.firestore_emulator import unavailable
from tests.run_world import OP_TIMEOUT, PARENT, short, unique

REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION

# Answers GET / with what it runs as; /fetch?url= fetches a URL from inside the container;
# /secret?name= reads a secret version over gRPC from $SECRETS_AT. Listens on $LISTEN_ON
# when set (an app with its own fixed port), else on $PORT.
APP = textwrap.dedent(
    """
    import json, os, sys, urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    LISTEN = int(os.environ.get("LISTEN_ON") or os.environ["PORT"])

    def secret(name):
        import grpc
        from google.cloud import secretmanager
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )
        channel = grpc.insecure_channel(os.environ["SECRETS_AT"])
        client = secretmanager.SecretManagerServiceClient(
            transport=SecretManagerServiceGrpcTransport(channel=channel)
        )
        return client.access_secret_version(name=name, timeout=10).payload.data.decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                if url.path == "/fetch":
                    with urllib.request.urlopen(query["url"], timeout=5) as response:
                        answer = {"body": response.read().decode()}
                elif url.path == "/secret":
                    answer = {"secret": secret(query["name"])}
                else:
                    answer = {
                        "revision": os.environ.get("K_REVISION"),
                        "port": os.environ.get("PORT"),
                        "argv": sys.argv[1:],
                    }
            except Exception as error:
                answer = {"error": f"{type(error).__name__}: {error}"}
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    print(f"listening on {LISTEN}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", LISTEN), Handler).serve_forever()
    """
)


def _require_namespaces(sandbox: Sandbox) -> None:
    if sandbox.network_isolation is not None:
        unavailable(f"network namespaces are unavailable: {sandbox.network_isolation}")


def _push(sandbox: Sandbox, folder: Path, **image: object) -> str:
    """The app, pushed as a host image; its digest reference."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "netapp.py").write_text(APP)
    repository = f"{REGION}-docker.pkg.dev/{PROJECT}/apps/net-{uuid.uuid4().hex[:8]}"
    digest = "sha256:" + uuid.uuid4().hex * 2
    fields: dict[str, object] = {"cmd": ("python", "netapp.py"), **image}
    sandbox.images.push(Image(repository, digest, folder, **fields), ["latest"])
    return f"{repository}@{digest}"


def _container(image: str, **fields: object) -> run_v2.Container:
    env = fields.pop("env", {})
    assert isinstance(env, dict)
    variables = [run_v2.EnvVar(name=k, value=v) for k, v in env.items()]
    return run_v2.Container(image=image, env=variables, **fields)


def _quick_start() -> run_v2.Probe:
    """A TCP startup probe that gives up after ~3 s (the default waits 30 s)."""
    return run_v2.Probe(tcp_socket=run_v2.TCPSocketAction(), period_seconds=1, failure_threshold=3)


def _deploy(
    services: run_v2.ServicesClient, container: run_v2.Container, service_id: str | None = None
) -> run_v2.Service:
    """A public service running `container`, ready."""
    service = run_v2.Service(
        template=run_v2.RevisionTemplate(containers=[container]), invoker_iam_disabled=True
    )
    operation = services.create_service(
        parent=PARENT, service_id=service_id or unique("net"), service=service
    )
    created: run_v2.Service = operation.result(timeout=OP_TIMEOUT)
    return created


def _get(url: str) -> dict[str, object]:
    response = httpx.get(url, timeout=20)
    response.raise_for_status()
    body: dict[str, object] = response.json()
    return body


def test_two_revisions_of_one_service_both_listen_on_8080(gcp: Sandbox, services, tmp_path):
    _require_namespaces(gcp)
    image = _push(gcp, tmp_path / "app")
    first = _deploy(services, _container(image))
    one = short(first.latest_ready_revision)
    changed = run_v2.Service(first)
    changed.template.containers[0].env.append(run_v2.EnvVar(name="SECOND", value="yes"))
    second = services.update_service(service=changed).result(timeout=OP_TIMEOUT)
    two = short(second.latest_ready_revision)
    split = run_v2.Service(second)
    split.traffic = [
        run_v2.TrafficTarget(type_=REVISION, revision=one, percent=50),
        run_v2.TrafficTarget(type_=REVISION, revision=two, percent=50),
    ]
    services.update_service(service=split).result(timeout=OP_TIMEOUT)

    seen: dict[object, object] = {}
    for _ in range(60):
        answer = _get(first.uri)
        seen[answer["revision"]] = answer["port"]
        if len(seen) == 2:
            break

    assert seen == {one: "8080", two: "8080"}
    for revision in (one, two):
        running = gcp.run.processes.get(revision)
        assert running is not None and running.alive() and running.port == 8080


def test_an_app_on_its_own_port_is_ready_when_that_is_the_container_port(
    gcp: Sandbox, services, tmp_path
):
    _require_namespaces(gcp)
    image = _push(gcp, tmp_path / "app", env={"LISTEN_ON": "8000"})

    ready = _deploy(
        services,
        _container(
            image, ports=[run_v2.ContainerPort(container_port=8000)], startup_probe=_quick_start()
        ),
    )

    assert _get(ready.uri) == {
        "revision": short(ready.latest_ready_revision),
        "port": "8000",
        "argv": [],
    }
    # Without the container port, PORT is 8080, which this app ignores: Cloud Run fails it.
    with pytest.raises(exceptions.GoogleAPICallError, match="PORT=8080"):
        _deploy(services, _container(image, startup_probe=_quick_start()))


@pytest.fixture
def host_only_listener() -> Iterator[int]:
    """A host loopback server that neither the sandbox nor any container env names."""

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"host only")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_revision_reaches_the_sandbox_and_later_urls_from_its_namespace_only(
    gcp: Sandbox, services, tmp_path, host_only_listener
):
    _require_namespaces(gcp)
    secrets = google_client(secretmanager.SecretManagerServiceClient)
    secret_id = unique("net-secret")
    secret = secrets.create_secret(
        parent=f"projects/{PROJECT}",
        secret_id=secret_id,
        secret=secretmanager.Secret(replication={"automatic": {}}),
    )
    version = secrets.add_secret_version(parent=secret.name, payload={"data": b"from-grpc"})
    caller = _deploy(
        services, _container(_push(gcp, tmp_path / "caller"), env={"SECRETS_AT": gcp.grpc_address})
    )
    # Created after the caller started: its URL is relayed into the running namespace.
    later = _deploy(services, _container(_push(gcp, tmp_path / "later")))

    assert _get(f"{caller.uri}/secret?name={quote(version.name)}") == {"secret": "from-grpc"}
    fetched = _get(f"{caller.uri}/fetch?url={quote(later.uri)}")
    assert json.loads(str(fetched["body"]))["revision"] == short(later.latest_ready_revision)
    # A host port the container was never given stays out of its network.
    refused = _get(f"{caller.uri}/fetch?url={quote(f'http://127.0.0.1:{host_only_listener}/')}")
    assert "Connection refused" in str(refused["error"])
    assert httpx.get(f"http://127.0.0.1:{host_only_listener}/", timeout=5).text == "host only"


@pytest.mark.parametrize(
    ("command", "args", "argv"),
    [
        ([], [], ["from-cmd"]),  # ENTRYPOINT + CMD
        ([], ["a1", "a2"], ["a1", "a2"]),  # args replace CMD, after ENTRYPOINT
        (["python", "netapp.py", "c1"], [], ["c1"]),  # command alone: CMD dropped
        (["python", "netapp.py"], ["a1"], ["a1"]),  # command + args
    ],
)
def test_command_and_args_override_entrypoint_and_cmd(
    gcp: Sandbox, services, tmp_path, command, args, argv
):
    image = _push(gcp, tmp_path / "app", entrypoint=("python", "netapp.py"), cmd=("from-cmd",))

    ready = _deploy(services, _container(image, command=command, args=args))

    assert _get(ready.uri)["argv"] == argv


def test_a_job_task_reaches_what_its_env_names_and_nothing_else(
    gcp: Sandbox, tmp_path, host_only_listener
):
    _require_namespaces(gcp)
    named = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=named.serve_forever, daemon=True).start()
    script = textwrap.dedent(
        """
        import json, os, socket
        def reach(port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                return "reached"
            except OSError as error:
                return type(error).__name__
        seen = {
            "named": reach(int(os.environ["NAMED"].rsplit(":", 1)[1])),
            "grpc": reach(int(os.environ["GRPC"].rsplit(":", 1)[1])),
            "other": reach(int(os.environ["OTHER_PORT"])),
        }
        open(os.environ["OUT"], "w").write(json.dumps(seen))
        """
    )
    out = tmp_path / "seen.json"
    env = {
        "NAMED": f"127.0.0.1:{named.server_address[1]}",
        "GRPC": gcp.grpc_address,
        "OTHER_PORT": str(host_only_listener),  # a bare number: not an address it was given
        "OUT": str(out),
    }
    container = _container(
        "europe-west1-docker.pkg.dev/p/tools/never-pushed:latest",
        command=[sys.executable, "-c", script],
        env=env,
    )
    job = run_v2.Job(
        template=run_v2.ExecutionTemplate(
            template=run_v2.TaskTemplate(containers=[container], max_retries=0)
        )
    )
    jobs = google_client(run_v2.JobsClient)
    try:
        created = jobs.create_job(parent=PARENT, job=job, job_id=unique("netjob")).result(
            timeout=OP_TIMEOUT
        )
        jobs.run_job(name=created.name).result(timeout=OP_TIMEOUT)
    finally:
        named.shutdown()
        named.server_close()

    assert json.loads(out.read_text()) == {
        "named": "reached",
        "grpc": "reached",
        "other": "ConnectionRefusedError",
    }


def test_without_namespaces_port_is_remapped_and_the_sandbox_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="deployer_sandbox.harness.sandbox")
    sandbox = Sandbox(tmp_path / "sandbox", container_namespaces=False).start()
    try:
        services = google_client(run_v2.ServicesClient, sandbox.grpc_address)
        image = _push(sandbox, tmp_path / "app")
        first = _deploy(services, _container(image))
        second = _deploy(services, _container(image))

        answers = [_get(first.uri), _get(second.uri)]
    finally:
        sandbox.stop()

    assert sandbox.network_isolation == "turned off for this sandbox"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Containers share the host's network (turned off for this sandbox): each revision "
        "listens on a free port given as PORT, not on its container port."
    ]
    ports = {str(answer["port"]) for answer in answers}
    assert len(ports) == 2 and "8080" not in ports  # each a free host port


def test_the_environment_switch_turns_namespaces_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SWITCH_ENV, "off")

    assert ContainerNetwork().unavailable == f"turned off by {SWITCH_ENV}=off"
    assert not ContainerNetwork().isolated
