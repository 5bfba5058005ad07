"""Which roles can be granted on a service account, and which accounts Google manages.

`SERVICE_ACCOUNT_ROLES`: the predefined roles that hold permissions on a service
account, the ones `gcloud iam list-grantable-roles` offers for one (IAM's
"Service account roles", https://cloud.google.com/iam/docs/service-account-permissions
and https://cloud.google.com/iam/docs/roles-permissions/iam, read December 2026),
with the basic roles. Any other role in a service account's policy is answered as
IAM answers it: INVALID_ARGUMENT "Role roles/X is not supported for this resource."
(as quoted in crossplane-contrib/provider-gcp#381). The sandbox has no custom
roles, so `projects/P/roles/R` is refused the same way.

`MANAGED_ACCOUNTS`: accounts Google creates in a project when an API is enabled
there, which therefore exist for IAM policies once that API is enabled
(`{NUMBER}` is the project number): Cloud Build's legacy account, Compute
Engine's default account, and the service agents of the APIs the deployer uses
(https://cloud.google.com/iam/docs/service-agents).
"""

from __future__ import annotations

import re

SERVICE_ACCOUNT_ROLES = frozenset(
    {
        "roles/owner",
        "roles/editor",
        "roles/viewer",
        "roles/iam.securityAdmin",
        "roles/iam.securityReviewer",
        "roles/iam.serviceAccountAdmin",
        "roles/iam.serviceAccountKeyAdmin",
        "roles/iam.serviceAccountOpenIdTokenCreator",
        "roles/iam.serviceAccountTokenCreator",
        "roles/iam.serviceAccountUser",
        "roles/iam.serviceAccountViewer",
        "roles/iam.workloadIdentityUser",
    }
)

# Permissions that apply to one service account, for TestIamPermissions.
SERVICE_ACCOUNT_PERMISSIONS = frozenset(
    {
        "iam.serviceAccounts.actAs",
        "iam.serviceAccounts.delete",
        "iam.serviceAccounts.disable",
        "iam.serviceAccounts.enable",
        "iam.serviceAccounts.get",
        "iam.serviceAccounts.getAccessToken",
        "iam.serviceAccounts.getIamPolicy",
        "iam.serviceAccounts.getOpenIdToken",
        "iam.serviceAccounts.implicitDelegation",
        "iam.serviceAccounts.setIamPolicy",
        "iam.serviceAccounts.signBlob",
        "iam.serviceAccounts.signJwt",
        "iam.serviceAccounts.undelete",
        "iam.serviceAccounts.update",
        "iam.serviceAccountKeys.create",
        "iam.serviceAccountKeys.delete",
        "iam.serviceAccountKeys.get",
        "iam.serviceAccountKeys.list",
    }
)

# (email pattern, the API whose enabling creates the account)
MANAGED_ACCOUNTS: tuple[tuple[str, str], ...] = (
    (r"{NUMBER}@cloudbuild\.gserviceaccount\.com", "cloudbuild.googleapis.com"),
    (r"service-{NUMBER}@gcp-sa-cloudbuild\.iam\.gserviceaccount\.com", "cloudbuild.googleapis.com"),
    (r"{NUMBER}-compute@developer\.gserviceaccount\.com", "compute.googleapis.com"),
    (r"service-{NUMBER}@serverless-robot-prod\.iam\.gserviceaccount\.com", "run.googleapis.com"),
    (
        r"service-{NUMBER}@gcf-admin-robot\.iam\.gserviceaccount\.com",
        "cloudfunctions.googleapis.com",
    ),
    (
        r"service-{NUMBER}@gcp-sa-cloudscheduler\.iam\.gserviceaccount\.com",
        "cloudscheduler.googleapis.com",
    ),
    (
        r"service-{NUMBER}@gcp-sa-artifactregistry\.iam\.gserviceaccount\.com",
        "artifactregistry.googleapis.com",
    ),
    (r"service-{NUMBER}@gcp-sa-pubsub\.iam\.gserviceaccount\.com", "pubsub.googleapis.com"),
    (r"service-{NUMBER}@gcp-sa-eventarc\.iam\.gserviceaccount\.com", "eventarc.googleapis.com"),
)


def managed_account(email: str) -> tuple[str, str] | None:
    """(project number, API) of a Google-managed account's email, or None."""
    for pattern, api in MANAGED_ACCOUNTS:
        match = re.fullmatch(pattern.replace("{NUMBER}", r"([0-9]+)"), email)
        if match is not None:
            return match[1], api
    return None


def unsupported_role(role: str) -> str:
    """IAM's words for a role that cannot be granted on the resource."""
    return f"Role {role} is not supported for this resource."
