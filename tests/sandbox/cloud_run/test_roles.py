"""The caller's rights on Cloud Run as Google's predefined roles grant them (`caller_roles`), IAM on
Cloud Run jobs, and domain restricted sharing refusing allUsers (`iam_org_policy`), through the
real `run_v2.ServicesClient` and `run_v2.JobsClient` against the sandbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import httpx
import pytest
from deployer_sandbox.cloud_run.roles import JOB_PERMISSIONS, ROLES, SERVICE_PERMISSIONS
from deployer_sandbox.common.faults import FaultError
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from tests.conftest import GoogleClients
from tests.run_world import PARENT, create, unique

INVOKER_ROLE = "roles/run.invoker"
EMPTY_ETAG = b"\x00\x20\x01"  # "ACAB", what Google gives a policy never set
# Google's words for a member domain restricted sharing does not permit (two spaces included).
REFUSAL = (
    "One or more users named in the policy do not belong to a permitted customer,  "
    "perhaps due to an organization policy."
)
SERVICE_ASKED = [
    "run.services.get",
    "run.services.list",
    "run.services.create",
    "run.services.update",
    "run.services.delete",
    "run.services.getIamPolicy",
    "run.services.setIamPolicy",
    "run.routes.invoke",
    "storage.objects.get",  # not a Cloud Run permission: never answered
]
JOB_ASKED = [
    "run.jobs.get",
    "run.jobs.list",
    "run.jobs.create",
    "run.jobs.update",
    "run.jobs.delete",
    "run.jobs.run",
    "run.jobs.runWithOverrides",
    "run.jobs.getIamPolicy",
    "run.jobs.setIamPolicy",
    "run.executions.get",
    "run.executions.list",
    "run.executions.delete",
    "run.executions.cancel",
    "run.tasks.get",
    "run.tasks.list",
    "run.routes.invoke",  # a service's, not a job's: never answered on a job
]


@pytest.fixture
def jobs(google_clients: GoogleClients) -> run_v2.JobsClient:
    return google_clients(run_v2.JobsClient)


def _tested(client: run_v2.ServicesClient | run_v2.JobsClient, name: str, asked: Sequence[str]):
    answer = client.test_iam_permissions(
        request=iam_policy_pb2.TestIamPermissionsRequest(resource=name, permissions=list(asked))
    )
    return list(answer.permissions)


def _get(client: run_v2.ServicesClient | run_v2.JobsClient, name: str) -> policy_pb2.Policy:
    return client.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=name))


def _set(
    client: run_v2.ServicesClient | run_v2.JobsClient, name: str, policy: policy_pb2.Policy
) -> policy_pb2.Policy:
    return client.set_iam_policy(
        request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy)
    )


def _with(policy: policy_pb2.Policy, role: str, member: str) -> policy_pb2.Policy:
    """`policy` with `member` added to `role`, etag kept (what `add-iam-policy-binding` sends)."""
    changed = policy_pb2.Policy()
    changed.CopyFrom(policy)
    changed.bindings.append(policy_pb2.Binding(role=role, members=[member]))
    return changed


def _job(jobs: run_v2.JobsClient) -> str:
    """A new job's name (its image is never pulled: nothing here runs it)."""
    container = run_v2.Container(image="europe-west1-docker.pkg.dev/test-project/tools/w:latest")
    job = run_v2.Job(
        template=run_v2.ExecutionTemplate(template=run_v2.TaskTemplate(containers=[container]))
    )
    job_id = f"roles-{uuid.uuid4().hex[:8]}"
    created: run_v2.Job = jobs.create_job(parent=PARENT, job=job, job_id=job_id).result(timeout=10)
    return str(created.name)


def _without(asked: Sequence[str], *missing: str) -> list[str]:
    return [p for p in asked if p not in missing and p.startswith("run.")]


# --- caller_roles on a service ------------------------------------------------------------


def test_each_role_answers_what_it_grants_on_a_service(gcp: Sandbox, services, image) -> None:
    name = create(services, unique("roles"), image).name
    everything = _without(SERVICE_ASKED)
    cases: list[tuple[list[str], list[str]]] = [
        # Google's roles/run.developer has run.routes.* (invoke too); it may not set policies.
        (["roles/run.developer"], _without(SERVICE_ASKED, "run.services.setIamPolicy")),
        (["roles/run.invoker"], ["run.routes.invoke"]),
        (["roles/run.servicesInvoker"], ["run.routes.invoke"]),
        (
            ["roles/run.viewer"],
            ["run.services.get", "run.services.list", "run.services.getIamPolicy"],
        ),
        (
            ["roles/run.viewer", "roles/run.invoker"],
            [
                "run.services.get",
                "run.services.list",
                "run.services.getIamPolicy",
                "run.routes.invoke",
            ],
        ),
        (["roles/run.admin"], everything),
        (["roles/owner"], everything),
        (["roles/editor"], _without(SERVICE_ASKED, "run.services.setIamPolicy")),
        (["roles/run.jobsExecutorWithOverrides"], []),
        ([], []),
    ]
    for roles, expected in cases:
        gcp.faults.clear()
        gcp.faults.arm("caller_roles", roles=roles)
        assert _tested(services, name, SERVICE_ASKED) == expected, roles

    gcp.faults.clear()
    assert _tested(services, name, SERVICE_ASKED) == everything


def test_the_roles_of_every_armed_caller_roles_fault_add_up(gcp: Sandbox, services, image) -> None:
    name = create(services, unique("roles"), image).name
    gcp.faults.arm("caller_roles", roles=["roles/run.viewer"])
    gcp.faults.arm("caller_roles", roles=["roles/run.invoker"])

    assert _tested(services, name, ["run.routes.invoke", "run.services.update"]) == [
        "run.routes.invoke"
    ]
    # Only TestIamPermissions listens to the roles: the policy can still be read and written.
    assert _get(services, name).etag == EMPTY_ETAG


# --- IAM on jobs ----------------------------------------------------------------------------


def test_a_jobs_executor_may_run_a_job_but_not_with_overrides(gcp: Sandbox, jobs) -> None:
    name = _job(jobs)
    asked = ["run.jobs.run", "run.jobs.runWithOverrides", "run.jobs.get"]

    gcp.faults.arm("caller_roles", roles=["roles/run.jobsExecutor"])
    assert _tested(jobs, name, asked) == ["run.jobs.run"]
    gcp.faults.clear()
    gcp.faults.arm("caller_roles", roles=["roles/run.jobsExecutorWithOverrides"])
    assert _tested(jobs, name, asked) == ["run.jobs.run", "run.jobs.runWithOverrides"]
    gcp.faults.clear()
    gcp.faults.arm("caller_roles", roles=["roles/run.developer"])
    assert _tested(jobs, name, asked) == asked
    assert _tested(jobs, name, JOB_ASKED) == _without(
        JOB_ASKED, "run.jobs.setIamPolicy", "run.routes.invoke"
    )
    gcp.faults.clear()
    gcp.faults.arm("caller_roles", roles=["roles/run.invoker"])
    assert _tested(jobs, name, JOB_ASKED) == ["run.jobs.run"]

    gcp.faults.clear()
    assert _tested(jobs, name, JOB_ASKED) == _without(JOB_ASKED, "run.routes.invoke")


def test_a_job_has_a_policy_of_its_own_that_goes_with_it(gcp: Sandbox, jobs) -> None:
    name = _job(jobs)
    read = _get(jobs, name)
    assert list(read.bindings) == [] and read.etag == EMPTY_ETAG

    member = "serviceAccount:dispatch@p.iam.gserviceaccount.com"
    stored = _set(jobs, name, _with(read, "roles/run.jobsExecutorWithOverrides", member))

    assert [(b.role, list(b.members)) for b in stored.bindings] == [
        ("roles/run.jobsExecutorWithOverrides", [member])
    ]
    assert stored.etag != EMPTY_ETAG and _get(jobs, name) == stored
    with pytest.raises(exceptions.Aborted, match="There were concurrent policy changes"):
        _set(jobs, name, _with(read, INVOKER_ROLE, "user:a@example.com"))
    # A job cannot be made public, whatever the organization allows.
    for everyone in ("allUsers", "allAuthenticatedUsers"):
        with pytest.raises(
            exceptions.InvalidArgument,
            match=f"Member {everyone} is invalid due to membership type restrictions",
        ):
            _set(jobs, name, _with(stored, INVOKER_ROLE, everyone))
    assert _get(jobs, name) == stored

    jobs.delete_job(name=name).result(timeout=10)
    with pytest.raises(exceptions.NotFound, match="of kind 'JOB'"):
        _get(jobs, name)
    job_id = name.rsplit("/", 1)[1]
    container = run_v2.Container(image="europe-west1-docker.pkg.dev/test-project/tools/w:latest")
    again = run_v2.Job(
        template=run_v2.ExecutionTemplate(template=run_v2.TaskTemplate(containers=[container]))
    )
    jobs.create_job(parent=PARENT, job=again, job_id=job_id).result(timeout=10)
    assert list(_get(jobs, name).bindings) == []  # a new job under the old name starts afresh


def test_an_unknown_job_is_not_found_and_a_bad_name_invalid(gcp: Sandbox, jobs) -> None:
    name = f"{PARENT}/jobs/{unique('nope')}"
    gcp.faults.arm("caller_roles", roles=["roles/run.admin"])
    with pytest.raises(exceptions.NotFound, match="of kind 'JOB'"):
        _tested(jobs, name, ["run.jobs.run"])
    with pytest.raises(exceptions.NotFound, match="of kind 'JOB'"):
        _get(jobs, name)
    with pytest.raises(exceptions.NotFound, match="of kind 'JOB'"):
        _set(jobs, name, policy_pb2.Policy())
    with pytest.raises(exceptions.InvalidArgument, match="Invalid job name"):
        _tested(jobs, "projects/p/jobs/x", ["run.jobs.run"])
    with pytest.raises(exceptions.InvalidArgument, match="wildcards"):
        _tested(jobs, _job(jobs), ["run.jobs.*"])


# --- iam_org_policy -------------------------------------------------------------------------


def test_domain_restricted_sharing_refuses_allusers_and_changes_nothing(
    gcp: Sandbox, services, image
) -> None:
    service = create(services, unique("drs"), image)
    name = service.name
    gcp.faults.arm("iam_org_policy")
    before = _get(services, name)

    for everyone in ("allUsers", "allAuthenticatedUsers"):
        with pytest.raises(exceptions.FailedPrecondition) as refused:
            _set(services, name, _with(before, INVOKER_ROLE, everyone))
        assert refused.value.message == REFUSAL
    assert _get(services, name) == before
    assert httpx.get(f"{service.uri}/health", timeout=10).status_code == 403  # still private

    # Members of the organization still go through; so does a policy without allUsers.
    member = "user:dev@example.com"
    granted = _set(services, name, _with(before, INVOKER_ROLE, member))
    assert [(b.role, list(b.members)) for b in granted.bindings] == [(INVOKER_ROLE, [member])]

    gcp.faults.clear()
    public = _set(services, name, _with(granted, INVOKER_ROLE, "allUsers"))
    # Arming the constraint takes nothing away, but every write is held to it, kept members too.
    gcp.faults.arm("iam_org_policy")
    assert httpx.get(f"{service.uri}/health", timeout=10).status_code == 200
    with pytest.raises(exceptions.FailedPrecondition):
        _set(services, name, _with(public, "roles/run.viewer", member))
    assert _get(services, name) == public
    private = policy_pb2.Policy(etag=public.etag)
    private.bindings.append(policy_pb2.Binding(role=INVOKER_ROLE, members=[member]))
    assert list(_set(services, name, private).bindings[0].members) == [member]
    assert httpx.get(f"{service.uri}/health", timeout=10).status_code == 403


# --- arming the faults ----------------------------------------------------------------------


def test_the_faults_are_armed_over_the_control_endpoint(gcp: Sandbox) -> None:
    url = f"{gcp.http.url}/_sandbox/faults"

    armed = httpx.post(url, json={"kind": "caller_roles", "roles": ["roles/run.developer"]})
    org = httpx.post(url, json={"kind": "iam_org_policy"})

    assert armed.status_code == 201
    assert armed.json() | {"id": 0} == {
        "id": 0,
        "kind": "caller_roles",
        "times": None,
        "revision": None,
        "roles": ["roles/run.developer"],
    }
    assert org.status_code == 201 and org.json()["times"] is None
    assert gcp.faults.caller_roles() == frozenset({"roles/run.developer"})
    bad = httpx.post(url, json={"kind": "caller_roles", "roles": ["roles/run.developper"]})
    assert bad.status_code == 400 and "unknown role(s) roles/run.developper" in bad.json()["error"]


@pytest.mark.parametrize(
    ("kind", "params", "words"),
    [
        ("caller_roles", {}, "caller_roles needs roles"),
        ("caller_roles", {"roles": "roles/run.admin"}, "caller_roles needs roles"),
        ("caller_roles", {"roles": ["roles/run.admin", 3]}, "caller_roles needs roles"),
        ("caller_roles", {"roles": ["roles/run.nope"]}, "unknown role"),
        ("caller_roles", {"roles": ["roles/run.admin"], "times": 2}, "takes no times"),
        ("iam_org_policy", {"times": 1}, "takes no times"),
        ("iam_denied", {"roles": ["roles/run.admin"]}, "roles applies only to caller_roles"),
    ],
)
def test_bad_fault_requests_are_refused(gcp: Sandbox, kind, params, words) -> None:
    with pytest.raises(FaultError, match=words):
        gcp.faults.arm(kind, **params)


def test_the_role_table_covers_the_permissions_it_answers() -> None:
    for role, permissions in ROLES.items():
        assert permissions <= SERVICE_PERMISSIONS | JOB_PERMISSIONS, role
    # Only run.admin and owner may change who may do what.
    setters = {r for r, p in ROLES.items() if "run.services.setIamPolicy" in p}
    assert setters == {"roles/run.admin", "roles/owner"}
    assert {r for r, p in ROLES.items() if "run.jobs.runWithOverrides" in p} == {
        "roles/run.admin",
        "roles/run.developer",
        "roles/run.sourceDeveloper",
        "roles/run.editor",
        "roles/run.jobsExecutorWithOverrides",
        "roles/owner",
        "roles/editor",
    }
