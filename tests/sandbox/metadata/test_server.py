"""The sandbox's metadata server, through real google-auth and real HTTP: credentials and ID
tokens as code on Cloud Run gets them, in this process, in a fresh one, in a revision and in a
job's task."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import google.auth
import google.auth.transport.requests
import google.oauth2.id_token
import httpx
import pytest
from deployer_sandbox.common.images import Image
from deployer_sandbox.harness.sandbox import Sandbox
from deployer_sandbox.metadata.id_tokens import IdTokenKey
from deployer_sandbox.metadata.server import MetadataServer
from google.api_core import exceptions
from google.auth import compute_engine, jwt
from google.cloud import run_v2

from deployer.adapters.google_clients import google_client
from tests.conftest import REGION
from tests.run_world import OP_TIMEOUT, PARENT, unique, use_metadata_server

FLAVOR = {"Metadata-Flavor": "Google"}
V1 = "/computeMetadata/v1"
ACCOUNT = f"{V1}/instance/service-accounts/default"


def _get(sandbox: Sandbox, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(f"http://{sandbox.metadata_address}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]


def _claims(sandbox: Sandbox, token: str, audience: str) -> dict[str, object]:
    """The token's claims, checked by google-auth's own JWT code against the sandbox's key."""
    claims: dict[str, object] = jwt.decode(
        token, certs=sandbox.id_tokens.certs(), audience=audience
    )
    return claims


# --- the server, over plain HTTP --------------------------------------------------------


def test_the_ping_answers_with_the_flavor_and_every_request_needs_it(gcp: Sandbox) -> None:
    ping = _get(gcp, "/", headers=FLAVOR)
    assert ping.status_code == 200 and ping.headers["metadata-flavor"] == "Google"

    for headers in ({}, {"Metadata-Flavor": "google-ish"}):
        refused = _get(gcp, f"{V1}/project/project-id", headers=headers)
        assert refused.status_code == 403
        assert refused.headers["metadata-flavor"] == "Google"
        assert 'Missing required header "Metadata-Flavor": "Google"' in refused.text
    proxied = _get(
        gcp, f"{V1}/project/project-id", headers={**FLAVOR, "X-Forwarded-For": "1.2.3.4"}
    )
    assert proxied.status_code == 403


def test_project_account_and_access_token(gcp: Sandbox) -> None:
    project = _get(gcp, f"{V1}/project/project-id", headers=FLAVOR)
    assert (project.status_code, project.text) == (200, gcp.metadata.project_id)
    assert project.headers["content-type"] == "application/text"
    email = _get(gcp, f"{ACCOUNT}/email", headers=FLAVOR).text
    assert email == gcp.metadata.service_account_email
    assert email == f"deployer@{gcp.metadata.project_id}.iam.gserviceaccount.com"

    info = _get(gcp, f"{ACCOUNT}/", params={"recursive": "true"}, headers=FLAVOR)
    assert info.headers["content-type"] == "application/json"
    assert info.json() == {
        "aliases": ["default"],
        "email": email,
        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
    }
    # The account is also known by its email (google-auth asks so on its second refresh).
    by_email = _get(
        gcp,
        f"{V1}/instance/service-accounts/{email}/",
        params={"recursive": "true"},
        headers=FLAVOR,
    )
    assert by_email.json() == info.json()

    token = _get(gcp, f"{ACCOUNT}/token", headers=FLAVOR).json()
    assert set(token) == {"access_token", "expires_in", "token_type"}
    assert token["token_type"] == "Bearer" and 0 < token["expires_in"] <= 3600
    assert (
        token["access_token"]
        != _get(gcp, f"{ACCOUNT}/token", headers=FLAVOR).json()["access_token"]
    )


def test_the_identity_endpoint_signs_an_id_token_for_the_audience(gcp: Sandbox) -> None:
    audience = f"https://{uuid.uuid4().hex[:8]}.example.com"

    answer = _get(
        gcp, f"{ACCOUNT}/identity", params={"audience": audience, "format": "full"}, headers=FLAVOR
    )

    assert answer.status_code == 200 and answer.headers["metadata-flavor"] == "Google"
    header = jwt.decode_header(answer.text)
    assert header["alg"] == "RS256" and header["kid"] == gcp.id_tokens.key_id
    claims = _claims(gcp, answer.text, audience)
    email = gcp.metadata.service_account_email
    assert claims["aud"] == audience and claims["iss"] == "https://accounts.google.com"
    assert claims["email"] == email and claims["email_verified"] is True
    assert (
        isinstance(claims["sub"], str)
        and claims["sub"].isdigit()
        and claims["azp"] == claims["sub"]
    )
    assert claims["exp"] == claims["iat"] + 3600  # type: ignore[operator]


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        (f"{ACCOUNT}/identity", {}, 400),
        (f"{ACCOUNT}/identity", {"audience": ""}, 400),
        (f"{V1}/instance/attributes/anything", {}, 404),
        (f"{V1}/instance/service-accounts/someone-else@p.iam.gserviceaccount.com/token", {}, 404),
        ("/latest/meta-data/", {}, 404),
    ],
)
def test_bad_requests(gcp: Sandbox, path: str, params: dict[str, str], status: int) -> None:
    answer = _get(gcp, path, params=params, headers=FLAVOR)
    assert answer.status_code == status
    assert answer.headers["metadata-flavor"] == "Google"
    if status == 400:
        assert answer.text.strip() == "non-empty audience parameter required"


def test_only_gets_are_served(gcp: Sandbox) -> None:
    answer = httpx.post(f"{gcp.metadata.url}{ACCOUNT}/token", headers=FLAVOR, timeout=10)
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD"


def test_the_identity_is_settable() -> None:
    key = IdTokenKey()
    server = MetadataServer(key, project_id="acme-prod").start()
    try:
        assert server.service_account_email == "deployer@acme-prod.iam.gserviceaccount.com"
        server.set_identity("acme-dev", "ci@acme-dev.iam.gserviceaccount.com")
        base = f"{server.url}{V1}"
        assert httpx.get(f"{base}/project/project-id", headers=FLAVOR).text == "acme-dev"
        token = httpx.get(
            f"{base}/instance/service-accounts/default/identity",
            params={"audience": "a"},
            headers=FLAVOR,
        ).text
        assert key.verify(token, {"a"})["email"] == "ci@acme-dev.iam.gserviceaccount.com"
    finally:
        server.close()


# --- google-auth in this process --------------------------------------------------------


@pytest.fixture
def on_cloud_run(monkeypatch: pytest.MonkeyPatch, gcp: Sandbox, tmp_path: Path) -> Sandbox:
    """google-auth here sees the sandbox's metadata server and nothing else."""
    use_metadata_server(monkeypatch, gcp)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no gcloud ADC file
    for name in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    return gcp


def test_fetch_id_token_returns_a_token_for_the_audience(on_cloud_run: Sandbox) -> None:
    audience = f"http://127.0.0.1:1/{uuid.uuid4().hex[:6]}"
    request = google.auth.transport.requests.Request()

    token = google.oauth2.id_token.fetch_id_token(request, audience)

    claims = _claims(on_cloud_run, token, audience)
    assert claims["aud"] == audience
    assert claims["email"] == on_cloud_run.metadata.service_account_email
    assert on_cloud_run.id_tokens.verify(token, {audience})["sub"] == claims["sub"]


def test_default_credentials_are_compute_engine_ones_that_refresh(on_cloud_run: Sandbox) -> None:
    credentials, project = google.auth.default()

    assert isinstance(credentials, compute_engine.Credentials)
    assert project == on_cloud_run.metadata.project_id
    request = google.auth.transport.requests.Request()
    credentials.refresh(request)
    first = credentials.token
    assert first.startswith("ya29.") and credentials.valid
    assert credentials.service_account_email == on_cloud_run.metadata.service_account_email
    credentials.refresh(request)  # now asks for the account by its email
    assert credentials.token != first and credentials.valid


# --- processes: only the environment ----------------------------------------------------

# Fetches an ID token for $AUDIENCE with google-auth, then GETs $TARGET/health with it.
CALLER = textwrap.dedent(
    """
    import json, os, urllib.error, urllib.request
    import google.auth.transport.requests, google.oauth2.id_token

    def call():
        token = google.oauth2.id_token.fetch_id_token(
            google.auth.transport.requests.Request(), os.environ["AUDIENCE"]
        )
        request = urllib.request.Request(
            os.environ["TARGET"] + "/health", headers={"Authorization": "Bearer " + token}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status = answer.status
        except urllib.error.HTTPError as refused:
            status = refused.code
        seen = {k: v for k, v in os.environ.items() if k.startswith("GCE_METADATA")}
        return {"status": status, "token": token, "env": seen}
    """
)


def _private_target(services: run_v2.ServicesClient, image: str) -> run_v2.Service:
    """A private service (the sample) to call, with a tag URL."""
    service = run_v2.Service(
        template=run_v2.RevisionTemplate(
            containers=[
                run_v2.Container(
                    image=image,
                    env=[
                        run_v2.EnvVar(name="MONGODB_URL", value="mongodb://db.invalid/app"),
                        run_v2.EnvVar(name="SECRET_KEY", value="s3cret"),
                    ],
                )
            ]
        ),
        traffic=[
            run_v2.TrafficTarget(
                type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
                percent=100,
                tag="green",
            )
        ],
    )
    operation = services.create_service(parent=PARENT, service_id=unique("target"), service=service)
    created: run_v2.Service = operation.result(timeout=OP_TIMEOUT)
    return created


def _env_for_child(sandbox: Sandbox, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCE_", "CLOUDSDK_"))
    }
    return {**env, **sandbox.metadata.environment(), "CLOUDSDK_CONFIG": str(tmp_path), **extra}


def test_a_fresh_process_needs_only_the_two_variables(
    gcp: Sandbox, services, image, tmp_path: Path
) -> None:
    target = _private_target(services, image)
    tag_url = next(s.uri for s in target.traffic_statuses if s.tag == "green")
    script = CALLER + "print(json.dumps(call()))\n"

    for url in (target.uri, tag_url):
        env = _env_for_child(gcp, tmp_path, AUDIENCE=target.uri, TARGET=url)
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["status"] == 200, url
        assert gcp.id_tokens.verify(answer["token"], {target.uri})["aud"] == target.uri


def test_a_job_task_calls_a_private_service_with_a_token_from_the_metadata_server(
    gcp: Sandbox, services, image, tmp_path: Path
) -> None:
    target = _private_target(services, image)
    out = tmp_path / "answer.json"
    script = CALLER + f"open({str(out)!r}, 'w').write(json.dumps(call()))\n"
    container = run_v2.Container(
        image=f"{REGION}-docker.pkg.dev/test-project/tools/caller:latest",  # never pushed
        command=[sys.executable, "-c", script],
        env=[
            run_v2.EnvVar(name="AUDIENCE", value=target.uri),
            run_v2.EnvVar(name="TARGET", value=target.uri),
            # The platform's address wins over the container's.
            run_v2.EnvVar(name="GCE_METADATA_HOST", value="127.0.0.1:9"),
        ],
    )
    job = run_v2.Job(
        template=run_v2.ExecutionTemplate(
            template=run_v2.TaskTemplate(containers=[container], max_retries=0)
        )
    )
    jobs = google_client(run_v2.JobsClient)
    try:
        created = jobs.create_job(
            parent=PARENT, job=job, job_id=f"job-{uuid.uuid4().hex[:8]}"
        ).result(timeout=10)
        with contextlib.suppress(exceptions.GoogleAPICallError):
            jobs.run_job(name=created.name).result(timeout=60)
    finally:
        jobs.transport.close()

    answer = json.loads(out.read_text())
    assert answer["env"] == gcp.metadata.environment()
    assert answer["status"] == 200


# A revision that, on GET /, calls $TARGET as above and answers what it saw.
REVISION_APP = CALLER + textwrap.dedent(
    """
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(call()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
    """
)


@pytest.fixture
def caller_image(gcp: Sandbox, tmp_path: Path) -> Iterator[str]:
    (tmp_path / "app.py").write_text(REVISION_APP)
    repository = f"{REGION}-docker.pkg.dev/test-project/apps/caller-{uuid.uuid4().hex[:8]}"
    image = Image(
        repository=repository,
        digest="sha256:" + uuid.uuid4().hex * 2,
        context=tmp_path,
        cmd=("python", "app.py"),
        env={},
        commit="caller",
    )
    gcp.images.push(image, [])
    yield image.uri


def test_a_revision_calls_another_private_service_service_to_service(
    gcp: Sandbox, services, image, caller_image: str, tmp_path: Path
) -> None:
    target = _private_target(services, image)
    caller = services.create_service(
        parent=PARENT,
        service_id=unique("caller"),
        service=run_v2.Service(
            template=run_v2.RevisionTemplate(
                containers=[
                    run_v2.Container(
                        image=caller_image,
                        env=[
                            run_v2.EnvVar(name="AUDIENCE", value=target.uri),
                            run_v2.EnvVar(name="TARGET", value=target.uri),
                        ],
                    )
                ]
            )
        ),
    ).result(timeout=OP_TIMEOUT)
    token = gcp.metadata.id_token(caller.uri)

    answer = httpx.get(caller.uri, headers={"Authorization": f"Bearer {token}"}, timeout=60).json()

    assert answer["env"] == gcp.metadata.environment()
    assert answer["status"] == 200
    assert _claims(gcp, answer["token"], target.uri)["email"] == gcp.metadata.service_account_email
