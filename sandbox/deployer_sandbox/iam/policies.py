"""What IAM checks of every policy written, beyond Cloud Run's checks (`cloud_run.iam`):
that each `serviceAccount:` member names an account that exists.

Google answers INVALID_ARGUMENT "Service account EMAIL does not exist." to a
policy naming one that does not, whatever the resource: projects (gcloud
`projects add-iam-policy-binding`, GoogleCloudPlatform/generative-ai#944 and
GoogleCloudPlatform/solutions-modern-cicd-anthos#18), Pub/Sub topics
(Liscor/terraform_dataform_ga4_pipeline#1). A Google-managed account exists once
the API that creates it is enabled (`iam.roles.MANAGED_ACCOUNTS`), which is why
granting Cloud Build's account a role before enabling Cloud Build fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from google.iam.v1 import policy_pb2

from deployer_sandbox.common.rpc import invalid

SERVICE_ACCOUNT_MEMBER = "serviceAccount:"


def check_service_accounts(
    bindings: Iterable[policy_pb2.Binding], exists: Callable[[str], bool]
) -> None:
    """INVALID_ARGUMENT for the first `serviceAccount:` member that names no account."""
    for binding in bindings:
        for member in binding.members:
            if member.startswith(SERVICE_ACCOUNT_MEMBER):
                email = member.removeprefix(SERVICE_ACCOUNT_MEMBER)
                if not exists(email):
                    raise invalid(f"Service account {email} does not exist.")
