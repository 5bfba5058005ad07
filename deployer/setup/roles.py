"""Who gets which role where: the one list `deployer setup` grants and README's
"In production" table shows (`tests/test_setup_roles.py` keeps the two equal).

Accounts (all in the project setup runs on):

    deployer@            runs deploys: the worker job's identity, and the one a person
                         impersonates to deploy from a terminal
    deployer-front@      the front (the function, or `--front run`'s service): checks
                         requests, records them, starts the worker job, answers
    deployer-scheduler@  only Cloud Scheduler's token for `deployer-sweep`
    deployer-builder@    setup's builds: the deployer's image and the front's function
    runtime accounts     `run.service_account` of each environment: what its revisions run as

Least privilege: a role goes on the narrowest resource Google lets it go on. Project
roles are only those whose permissions have no narrower home (creating a service is
`run.services.create` on the project; builds, logs and metrics are project-wide).
"""

from __future__ import annotations

from dataclasses import dataclass

DEPLOYER, FRONT, SCHEDULER, BUILDER, RUNTIME, EVERYONE = (
    "deployer",
    "front",
    "scheduler",
    "builder",
    "runtime",
    "allUsers",
)


@dataclass(frozen=True)
class Account:
    key: str
    account_id: str
    display_name: str


ACCOUNTS = (
    Account(DEPLOYER, "deployer", "deployer: runs deploys (the worker job)"),
    Account(FRONT, "deployer-front", "deployer: the Slack and GitHub front"),
    Account(SCHEDULER, "deployer-scheduler", "deployer: starts the sweep every minute"),
    Account(BUILDER, "deployer-builder", "deployer: builds its image and front"),
)

# Where a role is granted.
PROJECT, RUNTIME_ACCOUNT, SECRET, WORKER_JOB, FRONT_SERVICE = (
    "project",
    "the runtime account",
    "the secret",
    "the worker job",
    "the front's Cloud Run service",
)

# When: always, or only when the config asks for what needs it.
ALWAYS = "always"
ANY_PUBLIC = "an environment has allow_unauthenticated = true"
NONE_PUBLIC = "no environment is public"
CONNECTED = "a service builds from a connected repository or trigger"
SETUP_BUILDS = "setup builds (no --image, or the front is a function)"


@dataclass(frozen=True)
class Grant:
    role: str
    who: str
    on: str
    when: str
    why: str
    # For SECRET grants: which secrets (`deployer`'s own, or those the config references).
    secrets: str = ""


GRANTS: tuple[Grant, ...] = (
    # Creating and updating services and jobs is project-wide; run.developer also reads
    # each service's policy and holds run.routes.invoke (probing private candidates) and
    # run.jobs.runWithOverrides (hooks, and the worker starting the next queued deploy).
    Grant("roles/run.developer", DEPLOYER, PROJECT, NONE_PUBLIC, "deploy revisions and jobs"),
    # A public service's first deploy grants allUsers run.invoker right after creating
    # it: run.services.setIamPolicy, which only run.admin holds, on a service that did not
    # exist a moment before, so it cannot be granted on the service in advance.
    Grant("roles/run.admin", DEPLOYER, PROJECT, ANY_PUBLIC, "deploy, and make services public"),
    Grant("roles/cloudbuild.builds.editor", DEPLOYER, PROJECT, ALWAYS, "start and cancel builds"),
    # Versions are pinned from metadata; values are read only where an accessor is granted.
    Grant("roles/secretmanager.viewer", DEPLOYER, PROJECT, ALWAYS, "pin secret versions"),
    Grant("roles/logging.viewer", DEPLOYER, PROJECT, ALWAYS, "quote a crashed container"),
    Grant("roles/monitoring.viewer", DEPLOYER, PROJECT, ALWAYS, "judge steps on request metrics"),
    # Repository-level would be narrower, but images may live in any repository the
    # config names, and reading is all it gives.
    Grant("roles/artifactregistry.reader", DEPLOYER, PROJECT, ALWAYS, "check a reused image"),
    # Firestore has no narrower grant than the project's database.
    Grant("roles/datastore.user", DEPLOYER, PROJECT, ALWAYS, "the deploy records (Firestore)"),
    Grant("roles/datastore.user", FRONT, PROJECT, ALWAYS, "the deploy records (Firestore)"),
    # `/deploy status` reads what each service serves; the front changes nothing on Run.
    Grant("roles/run.viewer", FRONT, PROJECT, ALWAYS, "answer /deploy status"),
    # The deployer reads refs and build configs through the Cloud Build connection.
    Grant("roles/cloudbuild.connectionViewer", DEPLOYER, PROJECT, CONNECTED, "read the connection"),
    Grant("roles/cloudbuild.readTokenAccessor", DEPLOYER, PROJECT, CONNECTED, "fetch a read token"),
    # actAs on the runtime account only, not on the project: the deployer can run
    # revisions as that account, and as no other.
    Grant("roles/iam.serviceAccountUser", DEPLOYER, RUNTIME_ACCOUNT, ALWAYS, "run revisions as it"),
    # Each reader gets the secrets it reads, one by one.
    Grant(
        "roles/secretmanager.secretAccessor",
        RUNTIME,
        SECRET,
        ALWAYS,
        "its environment's secrets",
        secrets="each secret its environments reference",
    ),
    Grant(
        "roles/secretmanager.secretAccessor",
        DEPLOYER,
        SECRET,
        ALWAYS,
        "the config, the bot token, env_from_secret, the GitHub token",
        secrets="deployer-config, slack-bot-token, env_from_secret, [github].token_secret",
    ),
    Grant(
        "roles/secretmanager.secretAccessor",
        FRONT,
        SECRET,
        ALWAYS,
        "check requests, post to Slack",
        secrets="deployer-config, slack-signing-secret, slack-bot-token, github-webhook-secret",
    ),
    # run.jobs.runWithOverrides on this one job: a deploy's `args=["worker", ID]`.
    Grant("roles/run.jobsExecutorWithOverrides", FRONT, WORKER_JOB, ALWAYS, "start a deploy"),
    Grant("roles/run.jobsExecutorWithOverrides", SCHEDULER, WORKER_JOB, ALWAYS, 'run `["sweep"]`'),
    # Slack and GitHub call the front without a Google identity (requests are checked by
    # their signatures); a 2nd-gen function is invoked through its Cloud Run service. A
    # role on a service can only be granted once it exists: after the front's first deploy.
    Grant("roles/run.invoker", EVERYONE, FRONT_SERVICE, ALWAYS, "Slack and GitHub call it"),
    # Setup's builds (the deployer's image, and a function's, which runs as the account its
    # BuildConfig.service_account names) run as deployer-builder@, which needs "roles/logging.logWriter, roles/artifactregistry.writer,
    # roles/storage.objectViewer" ("Custom Service Account for Cloud Build",
    # https://cloud.google.com/functions/docs/securing/build-custom-sa): it writes the
    # build's logs, pushes the image to gcf-artifacts and reads the uploaded source. The
    # repository and the upload bucket are Google's, made at the first deploy, so the
    # project is the narrowest place these can be granted ahead of it.
    Grant("roles/logging.logWriter", BUILDER, PROJECT, SETUP_BUILDS, "write build logs"),
    Grant("roles/artifactregistry.writer", BUILDER, PROJECT, SETUP_BUILDS, "push the image"),
    Grant("roles/storage.objectViewer", BUILDER, PROJECT, SETUP_BUILDS, "read the source"),
)


def email(account: Account | str, project: str) -> str:
    """The email of one of the deployer's accounts in `project`."""
    account_id = account.account_id if isinstance(account, Account) else account
    return f"{account_id}@{project}.iam.gserviceaccount.com"


def account(key: str) -> Account:
    """The deployer's account called `key` (deployer, front, scheduler)."""
    return next(a for a in ACCOUNTS if a.key == key)


def resource(key: str, project: str) -> str:
    """The resource name of one of the deployer's accounts, as builds name their account."""
    return f"projects/{project}/serviceAccounts/{email(account(key), project)}"


def member(key: str, project: str) -> str:
    """The IAM member string of `key` (one of the deployer's accounts, or allUsers)."""
    return EVERYONE if key == EVERYONE else f"serviceAccount:{email(account(key), project)}"


def managed_project_roles(project: str) -> dict[str, set[str]]:
    """role -> the deployer's own accounts setup may grant it to on the project: the only
    project bindings setup ever takes back, when the config stops asking for one."""
    managed: dict[str, set[str]] = {}
    for grant in GRANTS:
        if grant.on == PROJECT and grant.who not in (RUNTIME, EVERYONE):
            managed.setdefault(grant.role, set()).add(member(grant.who, project))
    return managed


def _who(key: str) -> str:
    if key == RUNTIME:
        return "each runtime account"
    return key if key == EVERYONE else f"{account(key).account_id}@"


def readme_rows() -> list[tuple[str, ...]]:
    """The table README's "In production" shows: role, account, on what, when, for what."""
    return [(g.role, _who(g.who), g.secrets or g.on, g.when, g.why) for g in GRANTS]
