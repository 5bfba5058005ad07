"""IAM on sandbox Cloud Run services, through the real `run_v2.ServicesClient`, and the router
that enforces it: private services refuse calls without an ID token for them (what else the
door checks of the token: test_sandbox_id_tokens.py)."""

from __future__ import annotations

import httpx
import pytest
from google.api_core import exceptions
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.type import expr_pb2

from tests.run_world import LATEST, OP_TIMEOUT, PARENT, id_token_for, template, unique

INVOKER_ROLE = "roles/run.invoker"
EMPTY_ETAG = b"\x00\x20\x01"  # "ACAB", what Google gives a policy never set


def _service(services: run_v2.ServicesClient, image: str) -> run_v2.Service:
    """A ready service whose URL has a tag `t1` too."""
    service = run_v2.Service(
        template=template(image),
        traffic=[run_v2.TrafficTarget(type_=LATEST, percent=100, tag="t1")],
    )
    operation = services.create_service(parent=PARENT, service_id=unique("iam"), service=service)
    return operation.result(timeout=OP_TIMEOUT)


def _tag_url(service: run_v2.Service) -> str:
    return next(s.uri for s in service.traffic_statuses if s.tag == "t1")


def _get(client: run_v2.ServicesClient, name: str) -> policy_pb2.Policy:
    return client.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=name))


def _set(client: run_v2.ServicesClient, name: str, policy: policy_pb2.Policy) -> policy_pb2.Policy:
    return client.set_iam_policy(
        request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy)
    )


def _public(policy: policy_pb2.Policy) -> policy_pb2.Policy:
    """`policy` with allUsers added as invoker, etag kept (what `add-iam-policy-binding` sends)."""
    changed = policy_pb2.Policy()
    changed.CopyFrom(policy)
    changed.bindings.append(policy_pb2.Binding(role=INVOKER_ROLE, members=["allUsers"]))
    return changed


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    return httpx.get(f"{url}/health", headers=headers or {}, timeout=10).status_code


def test_a_new_service_is_private_its_urls_refuse_calls_without_a_token(
    gcp, services, image
) -> None:
    service = _service(services, image)
    token = id_token_for(gcp, service.uri)

    policy = _get(services, service.name)

    assert list(policy.bindings) == [] and policy.etag == EMPTY_ETAG
    for url in (service.uri, _tag_url(service)):
        refused = httpx.get(f"{url}/health?x=1", timeout=10)
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("text/html")
        assert "<title>403 Forbidden</title>" in refused.text
        assert (
            "Your client does not have permission to get URL <code>/health</code> "
            "from this server." in refused.text
        )
        assert _status(url, {"Authorization": f"Bearer {token}"}) == 200
        assert _status(url, {"X-Serverless-Authorization": f"Bearer {token}"}) == 200
        assert _status(url, {"Authorization": "Basic dXNlcjpwdw=="}) == 403
        assert _status(url, {"Authorization": "Bearer"}) == 403


def test_granting_allusers_the_invoker_role_makes_it_public_and_revoking_private(
    services, image
) -> None:
    service = _service(services, image)

    granted = _set(services, service.name, _public(_get(services, service.name)))

    assert [(b.role, list(b.members)) for b in granted.bindings] == [(INVOKER_ROLE, ["allUsers"])]
    assert granted.version == 1 and granted.etag not in (b"", EMPTY_ETAG)
    assert _get(services, service.name) == granted
    assert _status(service.uri) == 200 and _status(_tag_url(service)) == 200

    del granted.bindings[:]
    revoked = _set(services, service.name, granted)

    assert list(revoked.bindings) == [] and revoked.etag != granted.etag
    assert _status(service.uri) == 403 and _status(_tag_url(service)) == 403


def test_a_stale_etag_is_aborted_and_a_write_without_one_applies(services, image) -> None:
    name = _service(services, image).name
    read = _get(services, name)
    first = _set(services, name, _public(read))

    with pytest.raises(exceptions.Aborted, match="There were concurrent policy changes") as caught:
        _set(services, name, policy_pb2.Policy(etag=read.etag))
    assert "did not match the current policy's ETag" in str(caught.value)
    assert _get(services, name) == first  # untouched

    blind = _set(services, name, policy_pb2.Policy())  # no etag: last writer wins
    assert list(blind.bindings) == []


def test_bindings_come_back_merged_and_sorted_and_conditions_need_version_3(
    services, image
) -> None:
    service = _service(services, image)
    name = service.name
    policy = policy_pb2.Policy(
        bindings=[
            policy_pb2.Binding(role=INVOKER_ROLE, members=["user:b@example.com"]),
            policy_pb2.Binding(role="roles/run.viewer", members=[]),
            policy_pb2.Binding(
                role=INVOKER_ROLE, members=["serviceAccount:a@p.iam.gserviceaccount.com"]
            ),
            policy_pb2.Binding(role=INVOKER_ROLE, members=["user:b@example.com"]),
        ]
    )

    stored = _set(services, name, policy)

    assert [(b.role, list(b.members)) for b in stored.bindings] == [
        (INVOKER_ROLE, ["serviceAccount:a@p.iam.gserviceaccount.com", "user:b@example.com"])
    ]
    conditional = policy_pb2.Binding(
        role=INVOKER_ROLE,
        members=["allUsers"],
        condition=expr_pb2.Expr(title="office hours", expression="request.time.getHours() < 18"),
    )
    with pytest.raises(exceptions.InvalidArgument, match="must have version 3"):
        _set(services, name, policy_pb2.Policy(bindings=[conditional]))
    with_condition = _set(services, name, policy_pb2.Policy(version=3, bindings=[conditional]))
    assert with_condition.version == 3
    # The sandbox cannot evaluate a condition: it never makes a service public.
    assert _status(service.uri) == 403


@pytest.mark.parametrize(
    ("binding", "words"),
    [
        (policy_pb2.Binding(role="run.invoker", members=["allUsers"]), "is not supported"),
        (policy_pb2.Binding(role=INVOKER_ROLE, members=["bob@example.com"]), "Invalid member"),
    ],
)
def test_bad_roles_and_members_are_invalid(services, image, binding, words) -> None:
    name = _service(services, image).name
    with pytest.raises(exceptions.InvalidArgument, match=words):
        _set(services, name, policy_pb2.Policy(bindings=[binding]))
    with pytest.raises(exceptions.InvalidArgument, match="Invalid policy version"):
        _set(services, name, policy_pb2.Policy(version=2))


def test_test_iam_permissions_answers_what_exists_on_a_service(services, image) -> None:
    name = _service(services, image).name
    asked = [
        "run.services.get",
        "run.services.setIamPolicy",
        "run.routes.invoke",
        "storage.objects.get",
        "run.services.get",
    ]

    answer = services.test_iam_permissions(
        request=iam_policy_pb2.TestIamPermissionsRequest(resource=name, permissions=asked)
    )

    assert list(answer.permissions) == [
        "run.services.get",
        "run.services.setIamPolicy",
        "run.routes.invoke",
    ]
    with pytest.raises(exceptions.InvalidArgument, match="wildcards"):
        services.test_iam_permissions(
            request=iam_policy_pb2.TestIamPermissionsRequest(resource=name, permissions=["run.*"])
        )


def test_an_unknown_service_is_not_found(services) -> None:
    name = f"{PARENT}/services/{unique('nope')}"
    with pytest.raises(exceptions.NotFound, match="of kind 'SERVICE'"):
        _get(services, name)
    with pytest.raises(exceptions.NotFound, match="of kind 'SERVICE'"):
        _set(services, name, policy_pb2.Policy())
    with pytest.raises(exceptions.NotFound, match="of kind 'SERVICE'"):
        services.test_iam_permissions(
            request=iam_policy_pb2.TestIamPermissionsRequest(
                resource=name, permissions=["run.services.get"]
            )
        )
    with pytest.raises(exceptions.InvalidArgument, match="Invalid resource"):
        _get(services, "projects/p/services/x")


def test_faults_deny_or_race_a_policy_write(gcp, services, image) -> None:
    name = _service(services, image).name
    read = _get(services, name)

    gcp.faults.arm("iam_denied")
    with pytest.raises(
        exceptions.PermissionDenied, match=r"Permission 'run\.services\.setIamPolicy' denied"
    ):
        _set(services, name, _public(read))
    gcp.faults.arm("iam_conflict")
    with pytest.raises(exceptions.Aborted):
        _set(services, name, _public(read))

    assert list(_set(services, name, _public(_get(services, name))).bindings)
