"""ID tokens at Cloud Run's door in the sandbox: a private service lets in only a current ID
token signed by the sandbox's key whose audience is the service's URL (or a custom audience),
whichever of its URLs is called. Tokens are fetched with google-auth from the metadata server."""

from __future__ import annotations

import time
import uuid

import google.auth.transport.requests
import google.oauth2.id_token
import httpx
import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from deployer_sandbox.metadata.id_tokens import IdTokenKey, InvalidIdToken, WrongAudience
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from tests.run_world import LATEST, OP_TIMEOUT, PARENT, template, unique, use_metadata_server

FORBIDDEN = "Your client does not have permission to get URL <code>/health</code> from this server."
UNAUTHORIZED = "Your client does not have permission to the requested URL <code>/health</code>."


def _service(services: run_v2.ServicesClient, image: str, **fields: object) -> run_v2.Service:
    """A ready service (private, as every new one) whose URL has a tag `t1` too."""
    service = run_v2.Service(
        template=template(image),
        traffic=[run_v2.TrafficTarget(type_=LATEST, percent=100, tag="t1")],
        **fields,
    )
    operation = services.create_service(parent=PARENT, service_id=unique("tok"), service=service)
    created: run_v2.Service = operation.result(timeout=OP_TIMEOUT)
    return created


def _tag_url(service: run_v2.Service) -> str:
    return next(s.uri for s in service.traffic_statuses if s.tag == "t1")


def _call(url: str, token: str | None = None, header: str = "Authorization") -> httpx.Response:
    headers = {} if token is None else {header: f"Bearer {token}"}
    return httpx.get(f"{url}/health", headers=headers, timeout=10)


@pytest.fixture
def fetch(monkeypatch: pytest.MonkeyPatch, gcp: Sandbox):
    """audience -> an ID token, by google-auth's `fetch_id_token` from the metadata server."""
    use_metadata_server(monkeypatch, gcp)
    request = google.auth.transport.requests.Request()

    def token(audience: str) -> str:
        fetched: str = google.oauth2.id_token.fetch_id_token(request, audience)
        return fetched

    return token


# --- the key ----------------------------------------------------------------------------


def test_the_key_verifies_its_own_tokens_for_the_accepted_audiences() -> None:
    key = IdTokenKey()
    token = key.sign("https://a.example", "sa@p.iam.gserviceaccount.com")

    claims = key.verify(token, {"https://a.example", "https://b.example"})

    assert claims["aud"] == "https://a.example" and claims["email_verified"] is True
    with pytest.raises(WrongAudience):
        key.verify(token, {"https://b.example"})
    with pytest.raises(InvalidIdToken):
        IdTokenKey().verify(token, {"https://a.example"})  # another key
    expired = key.sign("https://a.example", "sa@p", issued_at=int(time.time()) - 7200)
    with pytest.raises(InvalidIdToken, match="expired"):
        key.verify(expired, {"https://a.example"})
    early = key.sign("https://a.example", "sa@p", issued_at=int(time.time()) + 600)
    with pytest.raises(InvalidIdToken, match="too early"):
        key.verify(early, {"https://a.example"})
    not_google = key.sign("https://a.example", "sa@p", extra={"iss": "https://evil.example"})
    with pytest.raises(InvalidIdToken, match="issuer"):
        key.verify(not_google, {"https://a.example"})
    for garbage in ("test-identity-token", "a.b.c", "ya29.a0AfH6SM", token[:-8]):
        with pytest.raises(InvalidIdToken):
            key.verify(garbage, {"https://a.example"})


# --- the door ---------------------------------------------------------------------------


def test_a_private_service_wants_a_token_for_its_url_at_every_url(
    gcp, services, image, fetch
) -> None:
    service = _service(services, image)
    tag_url = _tag_url(service)
    token = fetch(service.uri)

    for url in (service.uri, tag_url):
        refused = _call(url)
        assert refused.status_code == 403 and FORBIDDEN in refused.text
        assert _call(url, token).status_code == 200
        assert _call(url, token, "X-Serverless-Authorization").status_code == 200
        # The service's URL with a final slash is the same audience (Google's samples send it).
        assert _call(url, fetch(f"{service.uri}/")).status_code == 200


def test_a_token_for_another_audience_is_403(gcp, services, image, fetch) -> None:
    service = _service(services, image)
    other = _service(services, image)

    for audience in (other.uri, _tag_url(service), f"{service.uri}/health", "https://example.com"):
        for url in (service.uri, _tag_url(service)):
            refused = _call(url, fetch(audience))
            assert refused.status_code == 403, (audience, url)
            assert FORBIDDEN in refused.text
    assert _call(other.uri, fetch(other.uri)).status_code == 200


def test_a_token_that_is_not_a_valid_id_token_is_401(gcp, services, image) -> None:
    service = _service(services, image)
    email = gcp.metadata.service_account_email
    stale = int(time.time()) - 7200
    invalid = {
        "made up": "test-identity-token",
        "access token": "ya29.a0AfH6SMBx",
        "another key's": IdTokenKey().sign(service.uri, email),
        "expired": gcp.id_tokens.sign(service.uri, email, issued_at=stale),
        "tampered": gcp.id_tokens.sign(service.uri, email)[:-6] + "AAAAAA",
    }

    for what, token in invalid.items():
        refused = _call(service.uri, token)
        assert refused.status_code == 401, what
        assert "<title>401 Unauthorized</title>" in refused.text
        assert UNAUTHORIZED in refused.text
    bare = httpx.get(f"{service.uri}/health", headers={"Authorization": "Bearer"}, timeout=10)
    assert bare.status_code == 403  # a scheme without a token is no token


def test_x_serverless_authorization_is_read_first(gcp, services, image, fetch) -> None:
    service = _service(services, image)
    good = fetch(service.uri)

    both = httpx.get(
        f"{service.uri}/health",
        headers={"X-Serverless-Authorization": f"Bearer {good}", "Authorization": "Bearer app"},
        timeout=10,
    )
    assert both.status_code == 200
    swapped = httpx.get(
        f"{service.uri}/health",
        headers={"X-Serverless-Authorization": "Bearer app", "Authorization": f"Bearer {good}"},
        timeout=10,
    )
    assert swapped.status_code == 401


def test_custom_audiences_are_accepted_beside_the_url(gcp, services, image, fetch) -> None:
    custom = f"https://{uuid.uuid4().hex[:8]}.example.com"
    service = _service(services, image, custom_audiences=[custom])

    assert _call(service.uri, fetch(custom)).status_code == 200
    assert _call(_tag_url(service), fetch(custom)).status_code == 200
    assert _call(service.uri, fetch(service.uri)).status_code == 200
    assert _call(service.uri, fetch("https://other.example.com")).status_code == 403

    cleared = run_v2.Service(service)
    cleared.custom_audiences = []
    services.update_service(service=cleared).result(timeout=OP_TIMEOUT)
    assert _call(service.uri, fetch(custom)).status_code == 403
    assert _call(service.uri, fetch(service.uri)).status_code == 200


def test_a_public_service_takes_any_request(gcp, services, image) -> None:
    service = _service(services, image)
    policy = services.get_iam_policy(
        request=iam_policy_pb2.GetIamPolicyRequest(resource=service.name)
    )
    policy.bindings.append(policy_pb2.Binding(role="roles/run.invoker", members=["allUsers"]))
    services.set_iam_policy(
        request=iam_policy_pb2.SetIamPolicyRequest(resource=service.name, policy=policy)
    )

    for url in (service.uri, _tag_url(service)):
        assert _call(url).status_code == 200
        # The Authorization header may be the application's own: the door leaves it alone.
        assert _call(url, "test-identity-token").status_code == 200


def test_invoker_iam_disabled_opens_the_service_without_a_policy(gcp, services, image) -> None:
    service = _service(services, image, invoker_iam_disabled=True)

    assert _call(service.uri).status_code == 200
    assert _call(_tag_url(service)).status_code == 200

    closed = run_v2.Service(service)
    closed.invoker_iam_disabled = False
    services.update_service(service=closed).result(timeout=OP_TIMEOUT)
    assert _call(service.uri).status_code == 403
