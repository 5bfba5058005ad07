"""`--front function` (the default): the front as the Cloud Functions 2nd-gen function
`deployer`, deployed through the Cloud Functions v2 API as gcloud does it:

    GenerateUploadUrl   a signed URL; the zip (`front_source`) PUT there, with the
                        headers gcloud sends
    Create/UpdateFunction
        build_config    python311, entry point deployer_http, the uploaded source, built
                        as deployer-builder@ (`roles.BUILDER`): "Custom Service Account
                        for Cloud Build", https://cloud.google.com/functions/docs/securing/build-custom-sa
        service_config  runs as deployer-front@, env and secret references (`front_env`)
        labels          deployer-source = the zip's hash: the same checkout is not uploaded
                        again
    then                the operation waited for, the function read back: its URL is
                        `Setup.front_url`

Only what setup owns is compared and written (the fields above, its own env keys and
label); other env variables, secrets, labels and settings (memory, instances) stay as
they are.
A function that is not ACTIVE (a deploy that failed) is deployed again.
"""

from __future__ import annotations

from typing import Any

import httpx
from google.api_core import exceptions
from google.cloud import functions_v2, run_v2
from google.protobuf import field_mask_pb2

from deployer.adapters.polling import operation_result
from deployer.setup import front_source, roles
from deployer.setup.context import Setup
from deployer.setup.front_env import (
    MANAGED_BY_FUNCTIONS,
    front_result,
    missing_note,
    other_front,
    plain_env,
    secret_env,
)
from deployer.setup.names import CONFIG_SECRET, FRONT_SERVICE, INPUT_SECRETS
from deployer.setup.steps import (
    CALL_TIMEOUT,
    OPERATION_TIMEOUT,
    Outcome,
    SetupFailed,
    StepResult,
    short,
)

STEP = "front"
RUNTIME = "python311"
ENTRY_POINT = "deployer_http"
SOURCE_LABEL = "deployer-source"
# What gcloud and google-github-actions/deploy-cloud-functions send with the zip: the
# signed URL covers the Content-Type and the length range.
UPLOAD_HEADERS = {"Content-Type": "application/zip", "x-goog-content-length-range": "0,104857600"}
_ACTIVE: Any = functions_v2.Function.State.ACTIVE
# Field paths UpdateFunction writes: setup's own, nothing else.
_OWNED_PATHS = [
    "build_config.runtime",
    "build_config.entry_point",
    "build_config.service_account",
    "service_config.service_account_email",
    "service_config.environment_variables",
    "service_config.secret_environment_variables",
    "labels",
]


def builder_account(project: str) -> str:
    """BuildConfig.service_account: "projects/{projectId}/serviceAccounts/{serviceAccountEmail}"."""
    return roles.resource(roles.BUILDER, project)


def _wanted(setup: Setup, secrets: dict[str, str]) -> functions_v2.Function:
    """The owned fields, as setup wants them (the source is set once uploaded)."""
    return functions_v2.Function(
        build_config=functions_v2.BuildConfig(
            runtime=RUNTIME,
            entry_point=ENTRY_POINT,
            service_account=builder_account(setup.project),
        ),
        service_config=functions_v2.ServiceConfig(
            service_account_email=roles.email(roles.account(roles.FRONT), setup.project),
            environment_variables=plain_env(
                setup.project, setup.region, setup.version_of(CONFIG_SECRET)
            ),
            secret_environment_variables=[
                functions_v2.SecretEnvVar(
                    key=variable,
                    project_id=setup.project,
                    secret=secret,
                    version=setup.version_of(secret),
                )
                for variable, secret in sorted(secrets.items())
            ],
        ),
    )


def _shape(function: functions_v2.Function, keys: set[str]) -> tuple[object, ...]:
    """What setup owns of a function, comparable (env: only setup's own keys)."""
    build, config = function.build_config, function.service_config
    env = {k: v for k, v in config.environment_variables.items() if k in keys}
    # Google may write the project as its number ("preferably project number",
    # `SecretEnvVar.project_id`): the key, secret and version say what is read.
    secrets = sorted(
        (s.key, s.secret, s.version) for s in config.secret_environment_variables if s.key in keys
    )
    return (
        build.runtime,
        build.entry_point,
        build.service_account,
        config.service_account_email,
        sorted(env.items()),
        secrets,
    )


def _merge(
    existing: functions_v2.Function | None, wanted: functions_v2.Function, keys: set[str]
) -> None:
    """Keep the existing function's other env variables, secrets and labels in `wanted`."""
    if existing is None:
        return
    config = existing.service_config
    for key, value in config.environment_variables.items():
        if key not in keys:
            wanted.service_config.environment_variables[key] = value
    others = [s for s in config.secret_environment_variables if s.key not in keys]
    wanted.service_config.secret_environment_variables.extend(others)
    for key, value in existing.labels.items():
        wanted.labels.setdefault(key, value)


def _upload(client: functions_v2.FunctionServiceClient, parent: str, archive: bytes) -> Any:
    answer = client.generate_upload_url(request={"parent": parent}, timeout=CALL_TIMEOUT)
    put = httpx.put(answer.upload_url, content=archive, headers=UPLOAD_HEADERS, timeout=120)
    if put.status_code != 200:
        raise SetupFailed(
            STEP,
            f"uploading the source was refused ({put.status_code}): {put.text[:200]}",
            "Run setup again; if it fails the same way, check the network to storage.googleapis.com",
        )
    return answer.storage_source


def _failed(problem: str, setup: Setup) -> SetupFailed:
    return SetupFailed(
        STEP,
        f"the function did not deploy: {problem}",
        f"See its logs (gcloud functions logs read {FRONT_SERVICE} --region {setup.region} "
        f"--project {setup.project}), fix the cause, and run setup again",
    )


def _check_no_service(setup: Setup, name: str) -> None:
    """A function's service takes its name: a `--front run` service would be replaced."""
    services = setup.client(run_v2.ServicesClient)
    try:
        service = services.get_service(name=name, timeout=CALL_TIMEOUT)
    except exceptions.NotFound:
        return
    key, value = MANAGED_BY_FUNCTIONS
    if service.labels.get(key) != value:
        raise other_front(setup, "function")


def deploy_function(setup: Setup) -> StepResult:
    client = setup.client(functions_v2.FunctionServiceClient)
    parent = f"projects/{setup.project}/locations/{setup.region}"
    name = f"{parent}/functions/{FRONT_SERVICE}"
    try:
        existing: functions_v2.Function | None = client.get_function(
            name=name, timeout=CALL_TIMEOUT
        )
    except exceptions.NotFound:
        existing = None
        _check_no_service(setup, f"{parent}/services/{FRONT_SERVICE}")
    secrets, missing = secret_env(setup)
    wanted = _wanted(setup, secrets)
    source = front_source.build_source(front_source.repository_root())
    wanted.labels[SOURCE_LABEL] = source.source_hash
    keys = set(plain_env(setup.project, setup.region)) | set(INPUT_SECRETS.values())
    note = missing_note(missing)
    new_source = existing is None or existing.labels.get(SOURCE_LABEL) != source.source_hash
    same = (
        existing is not None
        and existing.state == _ACTIVE
        and not new_source
        and _shape(existing, keys) == _shape(wanted, keys)
    )
    if same and existing is not None:
        setup.front_url = existing.url or existing.service_config.uri
        return front_result(Outcome.UNCHANGED, f"function {FRONT_SERVICE}", note)
    verb = "create" if existing is None else "update"
    if setup.dry_run:
        return front_result(Outcome.PLANNED, f"{verb} function {FRONT_SERVICE}", note)
    _merge(existing, wanted, keys)
    paths = list(_OWNED_PATHS)
    if new_source or existing is None or existing.state != _ACTIVE:
        wanted.build_config.source = functions_v2.Source(
            storage_source=_upload(client, parent, source.archive)
        )
        paths.append("build_config.source")
    if existing is None:
        operation = client.create_function(
            parent=parent, function=wanted, function_id=FRONT_SERVICE, timeout=CALL_TIMEOUT
        )
    else:
        wanted.name = name
        operation = client.update_function(
            function=wanted,
            update_mask=field_mask_pb2.FieldMask(paths=paths),
            timeout=CALL_TIMEOUT,
        )
    try:
        operation_result(operation, OPERATION_TIMEOUT)
    except exceptions.GoogleAPICallError as error:  # the build or the deploy failed
        raise _failed(short(error), setup) from None
    deployed = client.get_function(name=name, timeout=CALL_TIMEOUT)
    if deployed.state != _ACTIVE:
        said = [m.message for m in deployed.state_messages] or [deployed.state.name]
        raise _failed(" ".join(" ".join(said).split())[:200], setup)
    setup.front_url = deployed.url or deployed.service_config.uri or None
    done = "created" if existing is None else "updated"
    what = f"{done} function {FRONT_SERVICE}" + (
        ", new source" if "build_config.source" in paths and existing is not None else ""
    )
    return front_result(Outcome.CHANGED, what, note)
