"""A project shaped as `deployer setup` leaves it, made through the sandbox's real APIs:
the APIs enabled (Service Usage), setup's accounts created (IAM), their project roles
granted (Resource Manager, from `deployer.setup.wanted`), and a worker job (Cloud Run).

For `deployer check`'s tests of the deployer's own project, without running setup itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.cloud import iam_admin_v1, resourcemanager_v3, run_v2, service_usage_v1
from google.iam.v1 import iam_policy_pb2, policy_pb2

from deployer.adapters.google_clients import google_client
from deployer.check_apis import needed_apis
from deployer.config import Config
from deployer.setup import roles
from deployer.setup.names import worker_job_name
from deployer.setup.wanted import wanted

TIMEOUT = 10.0


def enable_apis(project: str, apis: Iterable[str]) -> None:
    """Enable `apis` in `project` through Service Usage."""
    usage = google_client(service_usage_v1.ServiceUsageClient)
    ids = sorted(set(apis))
    for start in range(0, len(ids), 20):
        usage.batch_enable_services(
            request={"parent": f"projects/{project}", "service_ids": ids[start : start + 20]},
            timeout=TIMEOUT,
        ).result(timeout=TIMEOUT)


def disable_api(project: str, api: str) -> None:
    """Disable one API in `project` through Service Usage."""
    usage = google_client(service_usage_v1.ServiceUsageClient)
    usage.disable_service(
        request={"name": f"projects/{project}/services/{api}"}, timeout=TIMEOUT
    ).result(timeout=TIMEOUT)


def grant(project: str, role: str, member: str) -> None:
    """Add `member` to `role` on the project (read, modify, write with the etag read)."""
    projects = google_client(resourcemanager_v3.ProjectsClient)
    resource = f"projects/{project}"
    policy = projects.get_iam_policy(
        request=iam_policy_pb2.GetIamPolicyRequest(resource=resource), timeout=TIMEOUT
    )
    for binding in policy.bindings:
        if binding.role == role:
            if member not in binding.members:
                binding.members.append(member)
            break
    else:
        policy.bindings.append(policy_pb2.Binding(role=role, members=[member]))
    projects.set_iam_policy(
        request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy),
        timeout=TIMEOUT,
    )


def revoke(project: str, role: str, member: str) -> None:
    """Take `member` out of `role` on the project."""
    projects = google_client(resourcemanager_v3.ProjectsClient)
    resource = f"projects/{project}"
    policy = projects.get_iam_policy(
        request=iam_policy_pb2.GetIamPolicyRequest(resource=resource), timeout=TIMEOUT
    )
    for binding in policy.bindings:
        if binding.role == role and member in binding.members:
            binding.members.remove(member)
    projects.set_iam_policy(
        request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy),
        timeout=TIMEOUT,
    )


def create_worker_job(project: str, region: str, task_timeout: int) -> str:
    """setup's worker job (no image run: `check` only reads it); its name."""
    jobs = google_client(run_v2.JobsClient)
    template = run_v2.TaskTemplate(
        containers=[run_v2.Container(image=f"{region}-docker.pkg.dev/{project}/deployer/d")],
        timeout={"seconds": task_timeout},
    )
    job = run_v2.Job(template=run_v2.ExecutionTemplate(template=template))
    name = worker_job_name(project, region)
    jobs.create_job(
        parent=f"projects/{project}/locations/{region}",
        job=job,
        job_id=name.rsplit("/", 1)[-1],
        timeout=TIMEOUT,
    ).result(timeout=TIMEOUT)
    return name


def shape_as_setup(config: Config, project: str, region: str, store: str = "") -> None:
    """APIs, accounts and project roles, as `deployer setup` makes them."""
    for apis_project, apis in needed_apis(config, project, store).items():
        enable_apis(apis_project, apis)
    accounts = google_client(iam_admin_v1.IAMClient)
    for account in roles.ACCOUNTS:
        accounts.create_service_account(
            request={
                "name": f"projects/{project}",
                "account_id": account.account_id,
                "service_account": {"display_name": account.display_name},
            },
            timeout=TIMEOUT,
        )
    for role, members in wanted(config, project, region).project_roles.items():
        for member in sorted(members):
            grant(project, role, member)
