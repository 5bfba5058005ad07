"""IAM on Cloud Run services: `GetIamPolicy`, `SetIamPolicy`, `TestIamPermissions`.

These three methods belong to `google.cloud.run.v2.Services` and speak
`google.iam.v1` messages. The policy is stored on the service (it goes when the
service goes) and decides what the router lets through:

    policy grants roles/run.invoker to allUsers (no condition)  -> public: anyone may call
    otherwise                                                   -> private: only requests
                                                                   with an ID token for the
                                                                   service get in (router.py)

As on Google: a new service has an empty policy (etag `ACAB`), so it is private;
`SetIamPolicy` with the etag of an older read is ABORTED (a write without an
etag always applies); bindings come back merged per role and condition,
members sorted, empty bindings dropped; version is 3 when a binding has a
condition, 1 otherwise. The sandbox cannot evaluate conditions, so a
conditional binding never makes a service public.

The sandbox's caller is anonymous and may do anything: `TestIamPermissions`
answers with every asked permission that exists on a Cloud Run service
(`SERVICE_PERMISSIONS`), and drops the rest as Google drops permissions the
caller lacks or that do not apply to the resource.
"""

from __future__ import annotations

import base64
import re
import secrets

import grpc
from google.iam.v1 import iam_policy_pb2, policy_pb2

from deployer.sandbox.faults import Faults
from deployer.sandbox.router import Router
from deployer.sandbox.rpc import RpcError, aborted, invalid, unary
from deployer.sandbox.run_names import parse_service
from deployer.sandbox.run_state import RunState

INVOKER_ROLE = "roles/run.invoker"
PUBLIC_MEMBER = "allUsers"
# Permissions that apply to one Cloud Run service (Cloud Run's IAM permissions page).
SERVICE_PERMISSIONS = frozenset(
    {
        "run.services.get",
        "run.services.list",
        "run.services.create",
        "run.services.update",
        "run.services.delete",
        "run.services.getIamPolicy",
        "run.services.setIamPolicy",
        "run.routes.invoke",
    }
)
_VERSIONS = (0, 1, 3)
_MASK_PATHS = frozenset({"bindings", "etag", "version", "audit_configs", "auditConfigs"})
_DEFAULT_MASK = ("bindings", "etag")
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


def _check_member(member: str) -> None:
    if member in (PUBLIC_MEMBER, "allAuthenticatedUsers"):
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


class ServiceIam:
    """The IAM methods of `google.cloud.run.v2.Services`, over the services in `state`."""

    def __init__(self, state: RunState, router: Router, faults: Faults) -> None:
        self._state = state
        self._router = router
        self._faults = faults

    def methods(self) -> dict[str, grpc.RpcMethodHandler]:
        """Method handlers to serve under `google.cloud.run.v2.Services`."""
        return {
            "GetIamPolicy": unary(self._get, iam_policy_pb2.GetIamPolicyRequest, policy_pb2.Policy),
            "SetIamPolicy": unary(self._set, iam_policy_pb2.SetIamPolicyRequest, policy_pb2.Policy),
            "TestIamPermissions": unary(
                self._test,
                iam_policy_pb2.TestIamPermissionsRequest,
                iam_policy_pb2.TestIamPermissionsResponse,
            ),
        }

    def _get(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        version = request.options.requested_policy_version
        if version not in _VERSIONS:
            raise invalid(f"Invalid requested policy version {version}: use 0, 1 or 3.")
        with self._state.lock:
            record = self._state.record(request.resource, "resource")
            answer = policy_pb2.Policy()
            answer.CopyFrom(record.policy)
        return answer

    def _set(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        name = parse_service(request.resource, "resource").name
        if not request.HasField("policy"):
            raise invalid("Violation in SetIamPolicyRequest.policy: should be set")
        given = request.policy
        if given.version not in _VERSIONS:
            raise invalid(f"Invalid policy version {given.version}: use 0, 1 or 3.")
        paths = list(request.update_mask.paths) or list(_DEFAULT_MASK)
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
        with self._state.lock:
            record = self._state.record(name, "resource")
            if self._faults.take("iam_denied") is not None:
                raise RpcError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"Permission 'run.services.setIamPolicy' denied on resource '{name}' "
                    "(or it may not exist).",
                )
            if self._faults.take("iam_conflict") is not None:
                record.policy.etag = secrets.token_bytes(8)  # someone else's write, just now
            current = record.policy
            if given.etag and given.etag != current.etag:
                raise _concurrent_change(given.etag, current.etag)
            updated = policy_pb2.Policy()
            updated.CopyFrom(current)
            if bindings is not None:
                del updated.bindings[:]
                updated.bindings.extend(bindings)
            if "audit_configs" in paths or "auditConfigs" in paths:
                del updated.audit_configs[:]
                updated.audit_configs.extend(given.audit_configs)
            conditional = any(b.HasField("condition") for b in updated.bindings)
            updated.version = 3 if conditional else 1
            updated.etag = secrets.token_bytes(8)
            record.policy = updated
            # Under the state lock, so two writers cannot leave the router on the older policy.
            self._router.set_public(name, is_public(updated))
            answer = policy_pb2.Policy()
            answer.CopyFrom(updated)
        return answer

    def _test(
        self, request: iam_policy_pb2.TestIamPermissionsRequest
    ) -> iam_policy_pb2.TestIamPermissionsResponse:
        wild = [p for p in request.permissions if "*" in p]
        if wild:
            raise invalid(
                f"Permissions with wildcards are not allowed: {', '.join(wild)}. "
                "Ask for each permission by its full name."
            )
        with self._state.lock:
            self._state.record(request.resource, "resource")
        held = list(dict.fromkeys(p for p in request.permissions if p in SERVICE_PERMISSIONS))
        return iam_policy_pb2.TestIamPermissionsResponse(permissions=held)


def _concurrent_change(given: bytes, current: bytes) -> RpcError:
    """ABORTED, worded as IAM words a stale etag."""
    return aborted(
        "There were concurrent policy changes. Please retry the whole read-modify-write with "
        f"exponential backoff. The request's ETag '{_b64(given)}' did not match the current "
        f"policy's ETag '{_b64(current)}'."
    )


def _b64(etag: bytes) -> str:
    return base64.b64encode(etag).decode()
