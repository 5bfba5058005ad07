"""IAM on Cloud Run jobs: `GetIamPolicy`, `SetIamPolicy`, `TestIamPermissions` of
`google.cloud.run.v2.Jobs`, over the jobs `RunJobs` keeps.

They answer as the services' do (`cloud_run.iam`, whose helpers they use): a job's policy starts
empty (etag `ACAB`) and goes with the job; a stale etag is ABORTED; bindings come back merged
and sorted; an unknown job is NOT_FOUND ("Resource 'J' of kind 'JOB' ..."); wildcards in
`TestIamPermissions` are INVALID_ARGUMENT. `TestIamPermissions` answers the asked permissions
that exist on a job (`JOB_PERMISSIONS`: run.jobs.*, run.executions.*, run.tasks.get/list) and
that the caller holds: everything, or what the roles of an armed `caller_roles` grant.

Unlike a service, a job cannot be made public: a binding for allUsers or
allAuthenticatedUsers is INVALID_ARGUMENT "Member allUsers is invalid due to membership type
restrictions on the resource." (as `gcloud beta run jobs add-iam-policy-binding` was answered
in hashicorp/terraform-provider-google#13592, January 2023). Nothing is enforced by a job's
policy: RunJob and the rest go through whoever calls. The service faults `iam_denied`,
`iam_conflict` and `iam_org_policy` do not touch jobs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from google.iam.v1 import iam_policy_pb2

from deployer_sandbox.cloud_run.iam import EVERYONE, Write, check_test, tested
from deployer_sandbox.cloud_run.roles import JOB_PERMISSIONS
from deployer_sandbox.cloud_run.stored_policies import StoredPolicies
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.rpc import invalid


class JobIam(StoredPolicies):
    """The IAM methods of `google.cloud.run.v2.Jobs`.

    `lock` is the jobs' lock; `job(name)` answers the stored job (lock held) or raises
    INVALID_ARGUMENT for a malformed name and NOT_FOUND for an unknown one. Policies are kept
    here by job name; `forget` drops one when its job is deleted (lock held).
    """

    def __init__(self, lock: threading.Lock, job: Callable[[str], object], faults: Faults) -> None:
        super().__init__(lock, job)
        self._faults = faults

    def _refuse(self, write: Write) -> None:
        everyone = sorted({m for b in write.bindings or () for m in b.members} & EVERYONE)
        if everyone:
            raise invalid(
                f"Member {everyone[0]} is invalid due to membership type restrictions on the "
                "resource."
            )

    def _test(
        self, request: iam_policy_pb2.TestIamPermissionsRequest
    ) -> iam_policy_pb2.TestIamPermissionsResponse:
        check_test(request)
        with self._lock:
            self._exists(request.resource)
        return tested(request, JOB_PERMISSIONS, self._faults)
