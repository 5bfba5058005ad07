"""Who may invoke a Cloud Run service: the `allUsers` binding of `roles/run.invoker`.

    set_public   getIamPolicy (version 3, so conditional bindings come back whole)
                 -> add or remove allUsers on the unconditional run.invoker binding
                 -> setIamPolicy with the etag read; ABORTED (a concurrent change) reads again once

This is what `gcloud run deploy --allow-unauthenticated` / `--no-allow-unauthenticated`
does after deploying (`AddOrRemoveIamPolicyBinding`); unlike gcloud, which only
warns, a refusal stops the deploy, since the service would not be what the
config says. Every other binding is left exactly as read.
"""

from __future__ import annotations

from google.api_core import exceptions
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, options_pb2, policy_pb2

from deployer.pipeline.ports import RolloutRefused

INVOKER_ROLE = "roles/run.invoker"
PUBLIC_MEMBER = "allUsers"
GET_PERMISSION = "run.services.getIamPolicy"
SET_PERMISSION = "run.services.setIamPolicy"
_ATTEMPTS = 2  # the first read-modify-write, and one more after a concurrent change


def is_public(policy: policy_pb2.Policy) -> bool:
    """Whether allUsers holds roles/run.invoker without a condition."""
    return any(
        binding.role == INVOKER_ROLE
        and not binding.HasField("condition")
        and PUBLIC_MEMBER in binding.members
        for binding in policy.bindings
    )


def with_public(policy: policy_pb2.Policy, public: bool) -> None:
    """Add or remove allUsers on the unconditional run.invoker binding of `policy`, in place."""
    invokers = [
        b for b in policy.bindings if b.role == INVOKER_ROLE and not b.HasField("condition")
    ]
    if public:
        if invokers:
            invokers[0].members.append(PUBLIC_MEMBER)
        else:
            policy.bindings.append(policy_pb2.Binding(role=INVOKER_ROLE, members=[PUBLIC_MEMBER]))
        return
    for binding in invokers:
        kept = [member for member in binding.members if member != PUBLIC_MEMBER]
        del binding.members[:]
        binding.members.extend(kept)
    kept_bindings = [b for b in policy.bindings if b.members]  # IAM drops empty bindings too
    del policy.bindings[:]
    policy.bindings.extend(kept_bindings)


def set_public(client: run_v2.ServicesClient, name: str, public: bool, timeout: float) -> bool:
    """Make the service `name` public (or private); whether its policy had to change.

    Raises RolloutRefused, naming the missing permission when Cloud Run denies it.
    """
    for attempt in range(_ATTEMPTS):
        try:
            policy: policy_pb2.Policy = client.get_iam_policy(
                request=iam_policy_pb2.GetIamPolicyRequest(
                    resource=name,
                    options=options_pb2.GetPolicyOptions(requested_policy_version=3),
                ),
                timeout=timeout,
            )
        except exceptions.GoogleAPICallError as error:
            raise _refused(name, public, error, GET_PERMISSION) from None
        if is_public(policy) == public:
            return False
        with_public(policy, public)  # policy.etag stays the one read: a concurrent write fails
        try:
            client.set_iam_policy(
                request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy),
                timeout=timeout,
            )
        except exceptions.Aborted as error:
            if attempt + 1 < _ATTEMPTS:
                continue
            raise _refused(name, public, error, SET_PERMISSION) from None
        except exceptions.GoogleAPICallError as error:
            raise _refused(name, public, error, SET_PERMISSION) from None
        return True
    raise AssertionError("unreachable")  # pragma: no cover


def _refused(
    name: str, public: bool, error: exceptions.GoogleAPICallError, permission: str
) -> RolloutRefused:
    service = name.rsplit("/", 1)[-1]
    what = "public" if public else "private"
    words = f"{type(error).__name__}: {error.message}"
    if isinstance(error, exceptions.PermissionDenied):
        return RolloutRefused(
            f"Cloud Run refused to make {service} {what}: {words}. The deployer's account "
            f"needs {permission} on the service (roles/run.admin has it)."
        )
    if public and isinstance(error, exceptions.FailedPrecondition):
        # Domain-restricted sharing (constraints/iam.allowedPolicyMemberDomains) forbids
        # allUsers in any policy of the organisation; Cloud Run's answer to that is
        # "...do not belong to a permitted customer...".
        return RolloutRefused(
            f"Cloud Run refused to make {service} public: {words}. An organisation policy "
            "(domain-restricted sharing, constraints/iam.allowedPolicyMemberDomains) likely "
            "forbids granting allUsers. Ask for an exception for this project, or keep the "
            "service private (run.allow_unauthenticated = false) and call it with ID tokens; "
            "Cloud Run's `invoker_iam_disabled` (gcloud run services update --no-invoker-iam-"
            "check) also turns the invoker check off without allUsers."
        )
    return RolloutRefused(f"Cloud Run refused to make {service} {what}: {words}")
