"""IAM policies kept by resource name, for a kind of resource whose own store says whether
one exists: what Cloud Run's jobs and Secret Manager's secrets share (`cloud_run.job_iam`,
`secret_manager.iam`).

A resource's policy starts empty (etag `ACAB`) and goes with it (`forget`); GetIamPolicy
and SetIamPolicy answer as `cloud_run.iam`'s helpers do (a stale etag ABORTED, bindings
merged and sorted); an unknown resource is refused as its store refuses it. Each kind says
which bindings it refuses (`_refuse`) and answers TestIamPermissions itself.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import grpc
from google.iam.v1 import iam_policy_pb2, policy_pb2

from deployer_sandbox.cloud_run.iam import Write, check_get, iam_methods, prepare_write, written
from deployer_sandbox.cloud_run.state import empty_policy

Lock = AbstractContextManager[Any]  # a threading.Lock or RLock


class StoredPolicies:
    """`lock` is the resources' lock; `exists(name)` answers the stored resource (lock held)
    or raises as the kind's other methods do for an unknown or malformed name."""

    def __init__(self, lock: Lock, exists: Callable[[str], object]) -> None:
        self._lock = lock
        self._exists = exists
        self._policies: dict[str, policy_pb2.Policy] = {}

    def methods(self) -> dict[str, grpc.RpcMethodHandler]:
        """Method handlers to serve under the kind's gRPC service."""
        return iam_methods(self._get, self._set, self._test)

    def forget(self, name: str) -> None:
        """Drop the policy of `name`, which is being deleted (lock held)."""
        self._policies.pop(name, None)

    def _policy(self, name: str) -> policy_pb2.Policy:
        """The stored policy of `name` (lock held); refused if there is no such resource."""
        self._exists(name)
        stored = self._policies.get(name)
        return empty_policy() if stored is None else stored

    def _get(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        check_get(request)
        answer = policy_pb2.Policy()
        with self._lock:
            answer.CopyFrom(self._policy(request.resource))
        return answer

    def _refuse(self, write: Write) -> None:
        """Raise for a binding this kind of resource does not take (none by default)."""

    def _set(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        write = prepare_write(request)
        self._refuse(write)
        answer = policy_pb2.Policy()
        with self._lock:
            updated = written(self._policy(request.resource), write)
            self._policies[request.resource] = updated
            answer.CopyFrom(updated)
        return answer

    def _test(
        self, request: iam_policy_pb2.TestIamPermissionsRequest
    ) -> iam_policy_pb2.TestIamPermissionsResponse:
        raise NotImplementedError
