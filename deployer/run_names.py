"""The names the deployer gives Cloud Run, and the limits Cloud Run puts on them.

Configuration checks these names when it loads, and the pipeline makes them, so
this module imports nothing of the deployer's (the pipeline imports the config).

For a service S the deployer creates:

    S-1a2b3c4-abc123                         candidate revisions (commit, deploy id)
    candidate                                the candidate's traffic tag
    candidate---S-abcdefghij-ew.a.run.app    the tag's URL, which Cloud Run makes
    S-predeploy, S-postdeploy                the Cloud Run jobs that run its hooks
"""

from __future__ import annotations

import hashlib

# The traffic tag the candidate revision gets; its URL is where health checks probe.
CANDIDATE_TAG = "candidate"

# Service ids: "must begin with letter, and cannot end with hyphen; must contain fewer
# than 50 characters" (Cloud Run Admin API v2, CreateServiceRequest.service_id).
SERVICE_ID_MAX = 49
# Revision names are DNS-1035 labels (Knative's rule, kept by Cloud Run): lower-case
# letters, digits and dashes, starting with a letter, at most 63 characters.
REVISION_NAME_MAX = 63
# Cloud Run's own error text: "Combined traffic tag and service name cannot exceed 46
# characters".
TAG_AND_SERVICE_MAX = 46
# A tag's URL is https://TAG---SERVICE-HASH-RR.a.run.app (HASH 10 characters, RR the
# region's code), and its host label, like every DNS label, is at most 63 characters:
# 46 is 63 less the 17 characters "---", "-HASH" and "-RR" add to tag and service.
DNS_LABEL_MAX = 63
TAG_URL_HASH = "abcdefghij"  # how long Cloud Run's hash is; the letters stand for any
TAG_URL_REGION = "ew"  # how long a region's code is (europe-west1: "ew")

# A revision name keeps this much of the commit; and the last part of a deploy id
# (`deployer.pipeline.record.new_deploy_id`: `secrets.token_hex(3)`) is 6 hex digits.
COMMIT_CHARS = 7
_FULL_COMMIT = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
_DEPLOY_ID = "d-mx4hbsm1-abc123"


def candidate_revision_name(service: str, commit: str, deploy_id: str) -> str:
    """A fresh, valid Cloud Run revision name that says what it runs."""
    return f"{service}-{commit[:COMMIT_CHARS]}-{deploy_id.rsplit('-', 1)[-1]}"


def longest_revision_name(service: str) -> str:
    """The longest candidate revision name `service` gets (every full commit gives this length)."""
    return candidate_revision_name(service, _FULL_COMMIT, _DEPLOY_ID)


def tag_url_label(service: str, tag: str = CANDIDATE_TAG) -> str:
    """The host label of `tag`'s URL, as long as Cloud Run makes it: `TAG---SERVICE-HASH-RR`."""
    return f"{tag}---{service}-{TAG_URL_HASH}-{TAG_URL_REGION}"


def longest_service_name() -> int:
    """The longest service name whose revisions, tag and tag URL all fit Cloud Run's limits."""
    return min(
        SERVICE_ID_MAX,
        REVISION_NAME_MAX - len(longest_revision_name("")),
        TAG_AND_SERVICE_MAX - len(CANDIDATE_TAG),
        DNS_LABEL_MAX - len(tag_url_label("")),
    )


# A job's executions are named JOB-xxxxx, and "the sum of job name and token length must
# be fewer than 63 characters" (run_v2 Job.start_execution_token): a hook's job leaves
# room for the six characters Cloud Run adds.
EXECUTION_SUFFIX = 6
HOOK_JOB_MAX = DNS_LABEL_MAX - 1 - EXECUTION_SUFFIX


def hook_job_name(service: str, hook: str) -> str:
    """The Cloud Run job that runs `service`'s `hook` ("predeploy"): `SERVICE-HOOK`, the
    service's part shortened (with a digest of it, so two long names stay apart) when the
    whole would not leave room for an execution's suffix."""
    name = f"{service}-{hook}"
    if len(name) <= HOOK_JOB_MAX:
        return name
    digest = hashlib.sha256(service.encode()).hexdigest()[:6]
    keep = HOOK_JOB_MAX - len(hook) - len(digest) - 2
    return f"{service[:keep].rstrip('-')}-{digest}-{hook}"
