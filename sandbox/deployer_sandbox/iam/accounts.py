"""The service accounts of every project, and how a name finds one.

    projects/{PROJECT_ID}/serviceAccounts/{EMAIL | UNIQUE_ID}    one account
    projects/-/serviceAccounts/{EMAIL | UNIQUE_ID}                the project inferred

An account created with ID `A` in project `P` is `A@P.iam.gserviceaccount.com`,
with a 21-digit unique ID that is never reused (the proto: "if you delete a
service account, then create a new service account with the same name, the new
service account has a different unique ID"). An unknown account is NOT_FOUND
"Unknown service account" (what gcloud shows for `iam service-accounts
describe`), or PERMISSION_DENIED under the `-` wildcard, as the proto's comment
on `ServiceAccount.name` warns: "if you try to get the service account
`projects/-/serviceAccounts/fake@example.com`, which does not exist, the
response contains an HTTP `403 Forbidden` error instead of a `404 Not Found`
error."
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass, field

from google.cloud.iam_admin_v1.types import iam
from google.iam.v1 import policy_pb2

from deployer_sandbox.cloud_run.state import empty_policy
from deployer_sandbox.common.protos import clone
from deployer_sandbox.common.rpc import (
    RpcError,
    already_exists,
    invalid,
    not_found,
    permission_denied,
)
from deployer_sandbox.resource_manager.projects import Project, Projects

# The proto on CreateServiceAccountRequest.account_id: "must be 6-30 characters long, and
# match the regular expression `[a-z]([-a-z0-9]*[a-z0-9])` to comply with RFC1035."
ACCOUNT_ID = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])")
_ACCOUNT_NAME = re.compile(r"projects/([^/]+)/serviceAccounts/([^/]+)")
_PROJECT_NAME = re.compile(r"projects/([^/]+)")


@dataclass
class Account:
    meta: iam.ServiceAccount
    # A policy never set: no bindings, etag `ACAB`, as IAM answers for any resource.
    policy: policy_pb2.Policy = field(default_factory=empty_policy)


def email_of(account_id: str, project_id: str) -> str:
    return f"{account_id}@{project_id}.iam.gserviceaccount.com"


class ServiceAccounts:
    """Thread-safe store of service accounts; `lock` guards them and their policies."""

    def __init__(self, projects: Projects) -> None:
        self.lock = threading.RLock()
        self._projects = projects
        self._by_email: dict[str, Account] = {}
        self._by_unique_id: dict[str, Account] = {}

    def project(self, name: str, permission: str) -> Project:
        """The project `projects/P` names; PERMISSION_DENIED when there is none."""
        match = _PROJECT_NAME.fullmatch(name)
        if match is None:
            raise invalid(f"Invalid project name [{name}]: expected projects/PROJECT_ID.")
        project = self._projects.find(match[1])
        if project is None:
            raise permission_denied(
                f"Permission '{permission}' denied on resource '{name}' (or it may not exist)."
            )
        return project

    def create(self, request: iam.CreateServiceAccountRequest) -> iam.ServiceAccount:
        project = self.project(request.name, "iam.serviceAccounts.create")
        account_id = request.account_id
        if not (6 <= len(account_id) <= 30 and ACCOUNT_ID.fullmatch(account_id)):
            raise invalid(
                f"Invalid account_id [{account_id}]: it must be 6-30 characters long and match "
                "the regular expression [a-z]([-a-z0-9]*[a-z0-9])."
            )
        given = request.service_account
        if len(given.display_name.encode()) > 100:
            raise invalid("display_name must be at most 100 bytes.")
        if len(given.description.encode()) > 256:
            raise invalid("description must be at most 256 bytes.")
        email = email_of(account_id, project.project_id)
        with self.lock:
            if email in self._by_email:
                # IAM's words, as gcloud shows them.
                raise already_exists(
                    f"Service account {account_id} already exists within project "
                    f"projects/{project.project_id}."
                )
            unique_id = self._new_unique_id()
            meta = iam.ServiceAccount(
                name=f"projects/{project.project_id}/serviceAccounts/{email}",
                project_id=project.project_id,
                unique_id=unique_id,
                email=email,
                display_name=given.display_name,
                description=given.description,
                oauth2_client_id=unique_id,
                etag=b"MDEwMjE5MjA=",
            )
            account = Account(meta)
            self._by_email[email] = account
            self._by_unique_id[unique_id] = account
            return clone(meta)

    def find(self, name: str) -> Account:
        """The account `name` names (callers hold the lock); NOT_FOUND / PERMISSION_DENIED."""
        match = _ACCOUNT_NAME.fullmatch(name)
        if match is None:
            raise invalid(
                f"Invalid service account name [{name}]: expected "
                "projects/PROJECT_ID/serviceAccounts/EMAIL_OR_UNIQUE_ID."
            )
        project_id, key = match[1], match[2]
        account = self._by_email.get(key) or self._by_unique_id.get(key)
        if project_id == "-":
            if account is None:
                raise _wildcard_unknown(name)
            return account
        if account is None or account.meta.project_id != project_id:
            raise not_found("Unknown service account")
        return account

    def listed(self, project: Project) -> list[iam.ServiceAccount]:
        """The accounts of `project`, by email."""
        with self.lock:
            return [
                clone(self._by_email[email].meta)
                for email in sorted(self._by_email)
                if self._by_email[email].meta.project_id == project.project_id
            ]

    def created(self, email: str) -> bool:
        """Whether an account with this email was created through IAM."""
        with self.lock:
            return email in self._by_email

    def _new_unique_id(self) -> str:
        while True:
            candidate = "1" + "".join(secrets.choice("0123456789") for _ in range(20))
            if candidate not in self._by_unique_id:
                return candidate


def _wildcard_unknown(name: str) -> RpcError:
    return permission_denied(
        f"Permission 'iam.serviceAccounts.get' denied on resource '{name}' (or it may not exist)."
    )
