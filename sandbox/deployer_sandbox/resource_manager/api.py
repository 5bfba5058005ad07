"""Cloud Resource Manager v3 in the sandbox: `google.cloud.resourcemanager.v3.Projects`'
GetProject and the project's IAM policy (GetIamPolicy, SetIamPolicy,
TestIamPermissions), over gRPC.

Which projects exist is `projects.Projects`' rule: every well-formed project ID,
from its first mention; `projects/NUMBER` once its ID has been named. Anything
else is PERMISSION_DENIED "Permission 'resourcemanager.projects.get' denied on
resource '//cloudresourcemanager.googleapis.com/projects/X' (or it may not
exist).", Google's answer to a project one may not see.

    GetProject          name `projects/NUMBER`, the ID in `project_id`, ACTIVE, no parent
    GetIamPolicy        a new project's policy holds one binding, roles/owner for
                        `PROJECT_OWNER` (Google makes the creator the owner), so a writer
                        that drops bindings it did not read is caught
    SetIamPolicy        checked as Cloud Run's are (`cloud_run.iam`): the etag of an older
                        read is ABORTED, bindings come back merged and sorted, a role must
                        be `roles/...` (the sandbox has no custom roles); and as IAM checks
                        every policy: a `serviceAccount:` member naming an account that does
                        not exist is INVALID_ARGUMENT "Service account E does not exist."
                        (`iam.policies`)
    TestIamPermissions  the asked permissions, each `service.resource.verb`: the caller
                        owns every project; wildcards are INVALID_ARGUMENT

Not served: creating, listing, searching, moving or deleting projects; folders and
organizations; organization policies on projects.
"""

from __future__ import annotations

import re
import secrets
import threading
from typing import Any

import grpc
from google.cloud.resourcemanager_v3.types import projects as rm
from google.iam.v1 import iam_policy_pb2, policy_pb2

from deployer_sandbox.cloud_run.iam import check_get, check_test, prepare_write, written
from deployer_sandbox.common import rpc
from deployer_sandbox.common.rpc import invalid, permission_denied, unary
from deployer_sandbox.iam.api import IamAdmin
from deployer_sandbox.iam.policies import check_service_accounts
from deployer_sandbox.iam.roles import unsupported_role
from deployer_sandbox.resource_manager.projects import Project, Projects

SERVICE = "google.cloud.resourcemanager.v3.Projects"
PROJECT_OWNER = "user:owner@example.com"
_PROJECT_NAME = re.compile(r"projects/([^/]+)")
_PERMISSION = re.compile(r"[a-z][a-zA-Z0-9]*\.[a-zA-Z0-9]+\.[a-zA-Z0-9]+")


class ResourceManager:
    """Projects and their IAM policies, served over gRPC."""

    def __init__(self, projects: Projects, iam_admin: IamAdmin) -> None:
        self._projects = projects
        self._iam = iam_admin
        self._lock = threading.Lock()
        self._policies: dict[str, policy_pb2.Policy] = {}  # project ID -> policy

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler for `google.cloud.resourcemanager.v3.Projects`."""
        ip = iam_policy_pb2
        table: list[tuple[str, Any, Any, Any]] = [
            ("GetProject", self._get_project, rm.GetProjectRequest, rm.Project),
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

    def policy(self, project_id: str) -> policy_pb2.Policy:
        """A copy of the project's policy, for tests and the rest of the sandbox."""
        project = self._project(f"projects/{project_id}", "resourcemanager.projects.getIamPolicy")
        with self._lock:
            return _copy(self._policy_of(project))

    def _get_project(self, request: rm.GetProjectRequest) -> rm.Project:
        project = self._project(request.name, "resourcemanager.projects.get")
        return rm.Project(
            name=f"projects/{project.number}",
            project_id=project.project_id,
            state=rm.Project.State.ACTIVE,
            display_name=project.project_id,
            create_time=project.create_time,
            update_time=project.create_time,
            etag=f'W/"{project.number}"',
        )

    def _get_policy(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        check_get(request)
        project = self._project(request.resource, "resourcemanager.projects.getIamPolicy")
        with self._lock:
            return _copy(self._policy_of(project))

    def _set_policy(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        project = self._project(request.resource, "resourcemanager.projects.setIamPolicy")
        write = prepare_write(request)
        for binding in write.bindings or []:
            if not binding.role.startswith("roles/"):
                raise invalid(unsupported_role(binding.role))
        check_service_accounts(write.bindings or [], self._iam.exists)
        with self._lock:
            updated = written(self._policy_of(project), write)
            self._policies[project.project_id] = updated
            return _copy(updated)

    def _test(
        self, request: iam_policy_pb2.TestIamPermissionsRequest
    ) -> iam_policy_pb2.TestIamPermissionsResponse:
        check_test(request)
        self._project(request.resource, "resourcemanager.projects.get")
        malformed = [p for p in request.permissions if not _PERMISSION.fullmatch(p)]
        if malformed:
            raise invalid(f"Permission {malformed[0]} is not valid.")
        asked = list(dict.fromkeys(request.permissions))
        return iam_policy_pb2.TestIamPermissionsResponse(permissions=asked)

    def _policy_of(self, project: Project) -> policy_pb2.Policy:
        """The stored policy (callers hold the lock); a new project's names its owner."""
        policy = self._policies.get(project.project_id)
        if policy is None:
            policy = policy_pb2.Policy(
                version=1,
                etag=secrets.token_bytes(8),
                bindings=[policy_pb2.Binding(role="roles/owner", members=[PROJECT_OWNER])],
            )
            self._policies[project.project_id] = policy
        return policy

    def _project(self, name: str, permission: str) -> Project:
        match = _PROJECT_NAME.fullmatch(name)
        project = self._projects.find(match[1]) if match else None
        if project is None:
            reference = match[1] if match else name
            raise permission_denied(
                f"Permission '{permission}' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{reference}' "
                "(or it may not exist)."
            )
        return project


def _copy(policy: policy_pb2.Policy) -> policy_pb2.Policy:
    answer = policy_pb2.Policy()
    answer.CopyFrom(policy)
    return answer
