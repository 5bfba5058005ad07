"""IAM on secrets: `GetIamPolicy`, `SetIamPolicy` and `TestIamPermissions` of
`google.cloud.secretmanager.v1.SecretManagerService`, on `projects/P/secrets/S`.

They answer as Cloud Run's do (`cloud_run.iam`, whose helpers they use): a new secret's
policy is empty (etag `ACAB`) and goes with the secret (one created again under the same
name starts empty); a stale etag is ABORTED; bindings come back merged and sorted; an
unknown secret is NOT_FOUND as its other methods say it. Only the roles that apply to a
secret are taken (Secret Manager's predefined roles and the basic ones, per [Access
control with IAM](https://cloud.google.com/secret-manager/docs/access-control)); another
is INVALID_ARGUMENT "Role R is not supported for this resource.", IAM's wording for a
role a resource does not take. Policies are stored and answered, never enforced:
AccessSecretVersion goes through whoever calls, as every sandbox call does.
`TestIamPermissions` answers the asked permissions that exist on a secret.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from google.iam.v1 import iam_policy_pb2

from deployer_sandbox.cloud_run.iam import Write, check_test
from deployer_sandbox.cloud_run.stored_policies import StoredPolicies
from deployer_sandbox.common.rpc import invalid

SECRET_ROLES = frozenset(
    {
        "roles/owner",
        "roles/editor",
        "roles/viewer",
        "roles/secretmanager.admin",
        "roles/secretmanager.secretAccessor",
        "roles/secretmanager.secretVersionAdder",
        "roles/secretmanager.secretVersionManager",
        "roles/secretmanager.viewer",
    }
)
SECRET_PERMISSIONS = (
    "secretmanager.secrets.get",
    "secretmanager.secrets.update",
    "secretmanager.secrets.delete",
    "secretmanager.secrets.getIamPolicy",
    "secretmanager.secrets.setIamPolicy",
    "secretmanager.versions.access",
    "secretmanager.versions.add",
    "secretmanager.versions.get",
    "secretmanager.versions.list",
    "secretmanager.versions.enable",
    "secretmanager.versions.disable",
    "secretmanager.versions.destroy",
)


class SecretIam(StoredPolicies):
    """The IAM methods of Secret Manager. `lock` is the secrets' lock; `secret(name)`
    answers the stored secret (lock held) or raises as the other methods do."""

    def __init__(self, lock: threading.RLock, secret: Callable[[str], object]) -> None:
        super().__init__(lock, secret)

    def _refuse(self, write: Write) -> None:
        for binding in write.bindings or ():
            if binding.role not in SECRET_ROLES:
                raise invalid(f"Role {binding.role} is not supported for this resource.")

    def _test(
        self, request: iam_policy_pb2.TestIamPermissionsRequest
    ) -> iam_policy_pb2.TestIamPermissionsResponse:
        check_test(request)
        with self._lock:
            self._exists(request.resource)
        asked = [p for p in request.permissions if p in SECRET_PERMISSIONS]
        return iam_policy_pb2.TestIamPermissionsResponse(permissions=list(dict.fromkeys(asked)))
