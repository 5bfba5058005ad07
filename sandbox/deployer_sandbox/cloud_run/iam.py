"""IAM on Cloud Run services: `GetIamPolicy`, `SetIamPolicy`, `TestIamPermissions`.

These three methods belong to `google.cloud.run.v2.Services` and speak
`google.iam.v1` messages. The policy is stored on the service (it goes when the
service goes) and decides what the router lets through:

    policy grants roles/run.invoker to allUsers (no condition)  -> public: anyone may call
    otherwise                                                   -> private: only requests
                                                                   with an ID token for the
                                                                   service get in

As on Google: a new service has an empty policy (etag `ACAB`), so it is private;
`SetIamPolicy` with the etag of an older read is ABORTED (a write without an
etag always applies); bindings come back merged per role and condition,
members sorted, empty bindings dropped; version is 3 when a binding has a
condition, 1 otherwise. The sandbox cannot evaluate conditions, so a
conditional binding never makes a service public.

The sandbox's caller is anonymous and may do anything: `TestIamPermissions`
answers with every asked permission that exists on a Cloud Run service
(`SERVICE_PERMISSIONS`), and drops the rest as Google drops permissions the
caller lacks or that do not apply to the resource. While a `caller_roles` fault is
armed the caller holds only those roles, and only what they grant is answered
(`cloud_run.roles`).

While an `iam_org_policy` fault is armed, the project sits under an organization
enforcing domain restricted sharing (`constraints/iam.allowedPolicyMemberDomains`):
a `SetIamPolicy` whose policy would name allUsers or allAuthenticatedUsers is refused
with FAILED_PRECONDITION and Google's text (`ORG_POLICY_REFUSAL`), and nothing changes.

Jobs serve the same three methods (`cloud_run.job_iam`) through the helpers here:
`check_get`, `prepare_write`, `written`, `check_test` and `tested`.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.iam.v1 import iam_policy_pb2, policy_pb2

from deployer_sandbox.cloud_run.names import parse_service
from deployer_sandbox.cloud_run.roles import SERVICE_PERMISSIONS, held
from deployer_sandbox.cloud_run.router import Router
from deployer_sandbox.cloud_run.state import RunState
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.rpc import RpcError, aborted, failed_precondition, invalid, unary

INVOKER_ROLE = "roles/run.invoker"
PUBLIC_MEMBER = "allUsers"
# The members that name no one in particular.
EVERYONE = frozenset({PUBLIC_MEMBER, "allAuthenticatedUsers"})
# What Cloud Run answers to a policy naming a member the organization's domain restricted
# sharing constraint (constraints/iam.allowedPolicyMemberDomains) does not permit, verbatim,
# two spaces after the comma included, as Terraform's Cloud Run IAM resources quote it
# ("googleapi: Error 400: One or more users ...") in LayerZero-Labs/gasolina-gcp#15,
# GoogleCloudPlatform/genai-for-marketing#139 and #153, googlemaps/js-route-optimization-app#198;
# gcloud shows the same words as "FAILED_PRECONDITION: One or more users ..." (its
# `run services add-iam-policy-binding`, as quoted in deployment notes); web pages that quote
# it with one space have had their white space collapsed. Cloud Resource Manager's answer for
# projects stops after "customer." and carries a google.rpc.PreconditionFailure naming the
# constraint (Google's knowledge base, "Organization Policy violation when setting IAM
# policy", 000004666); no Cloud Run report shows such details, so none is attached here.
ORG_POLICY_REFUSAL = (
    "One or more users named in the policy do not belong to a permitted customer,  "
    "perhaps due to an organization policy."
)
_VERSIONS = (0, 1, 3)
_MASK_PATHS = frozenset({"bindings", "etag", "version", "audit_configs", "auditConfigs"})
_DEFAULT_MASK: tuple[str, ...] = ("bindings", "etag")
_ROLE = re.compile(r"(roles|projects/[^/]+/roles|organizations/\d+/roles)/[A-Za-z0-9_.]+")
_MEMBER_PREFIXES = (
    "user:",
    "serviceAccount:",
    "group:",
    "domain:",
    "principal://",
    "principalSet://",
    "deleted:",
)


def is_public(policy: policy_pb2.Policy) -> bool:
    """Whether `policy` lets anyone invoke: allUsers holds roles/run.invoker without a condition."""
    return any(
        binding.role == INVOKER_ROLE
        and not binding.HasField("condition")
        and PUBLIC_MEMBER in binding.members
        for binding in policy.bindings
    )


def members(policy: policy_pb2.Policy) -> set[str]:
    """Every member named in any of `policy`'s bindings."""
    return {member for binding in policy.bindings for member in binding.members}


def _check_member(member: str) -> None:
    if member in EVERYONE:
        return
    if not any(member.startswith(p) and len(member) > len(p) for p in _MEMBER_PREFIXES):
        raise invalid(
            f"Invalid member '{member}' in the policy: use allUsers, allAuthenticatedUsers, "
            "or a principal such as user:EMAIL, serviceAccount:EMAIL, group:EMAIL, domain:DOMAIN."
        )


def _normalised(given: policy_pb2.Policy) -> list[policy_pb2.Binding]:
    """Bindings merged per (role, condition), members unique and sorted, empty ones dropped."""
    merged: dict[tuple[str, bytes], tuple[policy_pb2.Binding, set[str]]] = {}
    for binding in given.bindings:
        if not _ROLE.fullmatch(binding.role):
            raise invalid(f"Role {binding.role or '(empty)'} is not supported for this resource.")
        for member in binding.members:
            _check_member(member)
        condition = binding.condition.SerializeToString() if binding.HasField("condition") else b""
        key = (binding.role, condition)
        if key not in merged:
            first = policy_pb2.Binding(role=binding.role)
            if binding.HasField("condition"):
                first.condition.CopyFrom(binding.condition)
            merged[key] = (first, set())
        merged[key][1].update(binding.members)
    bindings = []
    for binding, members in merged.values():
        if members:
            binding.members.extend(sorted(members))
            bindings.append(binding)
    return bindings


@dataclass(frozen=True)
class Write:
    """A `SetIamPolicy` request, checked: what it writes (`paths`) and the bindings it sets."""

    request: iam_policy_pb2.SetIamPolicyRequest
    paths: tuple[str, ...]
    bindings: list[policy_pb2.Binding] | None  # None: the mask leaves the bindings alone

    def named(self, current: policy_pb2.Policy) -> set[str]:
        """Every member the policy names once this write is made over `current`."""
        if self.bindings is None:
            return members(current)
        return {member for binding in self.bindings for member in binding.members}


def check_get(request: iam_policy_pb2.GetIamPolicyRequest) -> None:
    """INVALID_ARGUMENT for a policy version IAM does not serve."""
    version = request.options.requested_policy_version
    if version not in _VERSIONS:
        raise invalid(f"Invalid requested policy version {version}: use 0, 1 or 3.")


def prepare_write(request: iam_policy_pb2.SetIamPolicyRequest) -> Write:
    """Check what can be checked before the stored policy is read; INVALID_ARGUMENT if bad."""
    if not request.HasField("policy"):
        raise invalid("Violation in SetIamPolicyRequest.policy: should be set")
    given = request.policy
    if given.version not in _VERSIONS:
        raise invalid(f"Invalid policy version {given.version}: use 0, 1 or 3.")
    paths = tuple(request.update_mask.paths) or _DEFAULT_MASK
    unknown = [path for path in paths if path not in _MASK_PATHS]
    if unknown:
        raise invalid(f"Invalid update_mask path(s) {', '.join(unknown)} for a policy.")
    bindings = _normalised(given) if "bindings" in paths else None
    if (
        bindings is not None
        and given.version < 3
        and any(b.HasField("condition") for b in bindings)
    ):
        raise invalid(
            "Policies with conditional role bindings must have version 3; "
            f"the request's policy has version {given.version}."
        )
    return Write(request, paths, bindings)


def written(current: policy_pb2.Policy, write: Write) -> policy_pb2.Policy:
    """The policy `write` makes of `current` (a new message, new etag); ABORTED if stale."""
    given = write.request.policy
    if given.etag and given.etag != current.etag:
        raise _concurrent_change(given.etag, current.etag)
    updated = policy_pb2.Policy()
    updated.CopyFrom(current)
    if write.bindings is not None:
        del updated.bindings[:]
        updated.bindings.extend(write.bindings)
    if "audit_configs" in write.paths or "auditConfigs" in write.paths:
        del updated.audit_configs[:]
        updated.audit_configs.extend(given.audit_configs)
    conditional = any(b.HasField("condition") for b in updated.bindings)
    updated.version = 3 if conditional else 1
    updated.etag = secrets.token_bytes(8)
    return updated


def check_test(request: iam_policy_pb2.TestIamPermissionsRequest) -> None:
    """INVALID_ARGUMENT for wildcards, which IAM does not take in TestIamPermissions."""
    wild = [p for p in request.permissions if "*" in p]
    if wild:
        raise invalid(
            f"Permissions with wildcards are not allowed: {', '.join(wild)}. "
            "Ask for each permission by its full name."
        )


def tested(
    request: iam_policy_pb2.TestIamPermissionsRequest, applicable: frozenset[str], faults: Faults
) -> iam_policy_pb2.TestIamPermissionsResponse:
    """The answer: the asked permissions that apply and that the caller's roles grant."""
    permissions = held(list(request.permissions), applicable, faults.caller_roles())
    return iam_policy_pb2.TestIamPermissionsResponse(permissions=permissions)


def _copy(policy: policy_pb2.Policy) -> policy_pb2.Policy:
    answer = policy_pb2.Policy()
    answer.CopyFrom(policy)
    return answer


def iam_methods(
    get: Callable[[iam_policy_pb2.GetIamPolicyRequest], policy_pb2.Policy],
    set_: Callable[[iam_policy_pb2.SetIamPolicyRequest], policy_pb2.Policy],
    test: Callable[
        [iam_policy_pb2.TestIamPermissionsRequest], iam_policy_pb2.TestIamPermissionsResponse
    ],
) -> dict[str, grpc.RpcMethodHandler]:
    """The `google.iam.v1` trio as a Cloud Run API serves it on its own service name."""
    return {
        "GetIamPolicy": unary(get, iam_policy_pb2.GetIamPolicyRequest, policy_pb2.Policy),
        "SetIamPolicy": unary(set_, iam_policy_pb2.SetIamPolicyRequest, policy_pb2.Policy),
        "TestIamPermissions": unary(
            test,
            iam_policy_pb2.TestIamPermissionsRequest,
            iam_policy_pb2.TestIamPermissionsResponse,
        ),
    }


class ServiceIam:
    """The IAM methods of `google.cloud.run.v2.Services`, over the services in `state`."""

    def __init__(self, state: RunState, router: Router, faults: Faults) -> None:
        self._state = state
        self._router = router
        self._faults = faults

    def methods(self) -> dict[str, grpc.RpcMethodHandler]:
        """Method handlers to serve under `google.cloud.run.v2.Services`."""
        return iam_methods(self._get, self._set, self._test)

    def _get(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        check_get(request)
        with self._state.lock:
            return _copy(self._state.record(request.resource, "resource").policy)

    def _set(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        name = parse_service(request.resource, "resource").name
        write = prepare_write(request)
        with self._state.lock:
            record = self._state.record(name, "resource")
            if self._faults.take("iam_denied") is not None:
                raise RpcError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"Permission 'run.services.setIamPolicy' denied on resource '{name}' "
                    "(or it may not exist).",
                )
            # The constraint is checked against the whole policy written, members kept from
            # before included (Google's knowledge base, 000004666: "Review all the members of
            # the IAM policy that you're trying to set and not just the newly added members").
            if write.named(record.policy) & EVERYONE and self._faults.armed("iam_org_policy"):
                raise failed_precondition(ORG_POLICY_REFUSAL)
            if self._faults.take("iam_conflict") is not None:
                record.policy.etag = secrets.token_bytes(8)  # someone else's write, just now
            updated = written(record.policy, write)
            record.policy = updated
            # Under the state lock, so two writers cannot leave the router on the older policy.
            self._router.set_public(name, is_public(updated))
            return _copy(updated)

    def _test(
        self, request: iam_policy_pb2.TestIamPermissionsRequest
    ) -> iam_policy_pb2.TestIamPermissionsResponse:
        check_test(request)
        with self._state.lock:
            self._state.record(request.resource, "resource")
        return tested(request, SERVICE_PERMISSIONS, self._faults)


def _concurrent_change(given: bytes, current: bytes) -> RpcError:
    """ABORTED, worded as IAM words a stale etag."""
    return aborted(
        "There were concurrent policy changes. Please retry the whole read-modify-write with "
        f"exponential backoff. The request's ETag '{_b64(given)}' did not match the current "
        f"policy's ETag '{_b64(current)}'."
    )


def _b64(etag: bytes) -> str:
    return base64.b64encode(etag).decode()
