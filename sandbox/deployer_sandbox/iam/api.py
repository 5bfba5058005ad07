"""IAM admin v1 in the sandbox: service accounts and their own policies, served as
`google.iam.admin.v1.IAM` over gRPC.

    CreateServiceAccount     account_id 6-30 of `[a-z]([-a-z0-9]*[a-z0-9])`, else
                             INVALID_ARGUMENT; a second create is ALREADY_EXISTS "Service
                             account A already exists within project projects/P."
    GetServiceAccount        by email or unique ID, under the project or `-` (`accounts`)
    ListServiceAccounts      the accounts created in the project, by email; pages of 20 by
                             default, at most 100 (the proto)
    GetIamPolicy             the account's own policy: who may act as it, mint its tokens...
    SetIamPolicy             checked as Cloud Run's are (`cloud_run.iam`: a stale etag is
                             ABORTED, bindings merged and sorted), and as IAM checks a
                             service account's: only roles that apply to one
                             (`roles.SERVICE_ACCOUNT_ROLES`; others INVALID_ARGUMENT "Role R is
                             not supported for this resource."), and every `serviceAccount:`
                             member must exist (`policies`)
    TestIamPermissions       the asked permissions that apply to a service account
                             (`roles.SERVICE_ACCOUNT_PERMISSIONS`); the caller holds them all

Only the accounts created through this API exist here, plus the ones Google manages
once their API is enabled (`roles.MANAGED_ACCOUNTS`, through Service Usage). Keys,
roles, SignBlob/SignJwt, updating, disabling and deleting accounts are not served.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.cloud.iam_admin_v1.types import iam
from google.iam.v1 import iam_policy_pb2, policy_pb2

from deployer_sandbox.cloud_run.iam import check_get, check_test, prepare_write, written
from deployer_sandbox.common import rpc
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.protos import clone
from deployer_sandbox.common.rpc import invalid, unary
from deployer_sandbox.iam.accounts import ServiceAccounts
from deployer_sandbox.iam.policies import check_service_accounts
from deployer_sandbox.iam.roles import (
    SERVICE_ACCOUNT_PERMISSIONS,
    SERVICE_ACCOUNT_ROLES,
    managed_account,
    unsupported_role,
)
from deployer_sandbox.resource_manager.projects import Projects
from deployer_sandbox.service_usage.api import ServiceUsage

SERVICE = "google.iam.admin.v1.IAM"


class IamAdmin:
    """Service accounts over gRPC; `exists` answers for every policy in the sandbox."""

    def __init__(self, projects: Projects, service_usage: ServiceUsage) -> None:
        self._projects = projects
        self._service_usage = service_usage
        self.accounts = ServiceAccounts(projects)

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler for `google.iam.admin.v1.IAM`."""
        account, ip = iam.ServiceAccount, iam_policy_pb2
        table: list[tuple[str, Any, Any, Any]] = [
            (
                "CreateServiceAccount",
                self.accounts.create,
                iam.CreateServiceAccountRequest,
                account,
            ),
            ("GetServiceAccount", self._get, iam.GetServiceAccountRequest, account),
            (
                "ListServiceAccounts",
                self._list,
                iam.ListServiceAccountsRequest,
                iam.ListServiceAccountsResponse,
            ),
            ("GetIamPolicy", self._get_policy, ip.GetIamPolicyRequest, policy_pb2.Policy),
            ("SetIamPolicy", self._set_policy, ip.SetIamPolicyRequest, policy_pb2.Policy),
            (
                "TestIamPermissions",
                self._test,
                ip.TestIamPermissionsRequest,
                ip.TestIamPermissionsResponse,
            ),
        ]
        return rpc.service(SERVICE, {n: unary(h, req, resp) for n, h, req, resp in table})

    def exists(self, email: str) -> bool:
        """Whether a service account with this email exists anywhere in the sandbox."""
        if self.accounts.created(email):
            return True
        managed = managed_account(email)
        if managed is None:
            return False
        number, api = managed
        project = self._projects.find(number)
        return project is not None and self._service_usage.is_enabled(project.project_id, api)

    def _get(self, request: iam.GetServiceAccountRequest) -> iam.ServiceAccount:
        with self.accounts.lock:
            return clone(self.accounts.find(request.name).meta)

    def _list(self, request: iam.ListServiceAccountsRequest) -> iam.ListServiceAccountsResponse:
        project = self.accounts.project(request.name, "iam.serviceAccounts.list")
        found, token = page(
            self.accounts.listed(project),
            request.page_size,
            request.page_token,
            default_size=20,
            max_size=100,
        )
        return iam.ListServiceAccountsResponse(accounts=found, next_page_token=token)

    def _get_policy(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        check_get(request)
        with self.accounts.lock:
            return _copy(self.accounts.find(request.resource).policy)

    def _set_policy(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        write = prepare_write(request)
        for binding in write.bindings or []:
            if binding.role not in SERVICE_ACCOUNT_ROLES:
                raise invalid(unsupported_role(binding.role))
        check_service_accounts(write.bindings or [], self.exists)
        with self.accounts.lock:
            account = self.accounts.find(request.resource)
            account.policy = written(account.policy, write)
            return _copy(account.policy)

    def _test(
        self, request: iam_policy_pb2.TestIamPermissionsRequest
    ) -> iam_policy_pb2.TestIamPermissionsResponse:
        check_test(request)
        with self.accounts.lock:
            self.accounts.find(request.resource)
        asked = [p for p in request.permissions if p in SERVICE_ACCOUNT_PERMISSIONS]
        return iam_policy_pb2.TestIamPermissionsResponse(permissions=list(dict.fromkeys(asked)))


def _copy(policy: policy_pb2.Policy) -> policy_pb2.Policy:
    answer = policy_pb2.Policy()
    answer.CopyFrom(policy)
    return answer
