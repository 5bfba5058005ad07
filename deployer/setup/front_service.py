"""`--front run`: the front as the Cloud Run service `deployer`, from the deployer's image.

    image            `Setup.image` (`--image`, or the one setup built); with none, the
                     service's current image is kept
    command, args    none: the image's own ENTRYPOINT and CMD (root Dockerfile:
                     `deployer serve --host 0.0.0.0`), whose `--port` defaults to $PORT,
                     which Cloud Run sets
    service account  deployer-front@ (`roles.FRONT`)
    env              `front_env`: plain variables, and secrets by secret_key_ref

Only these fields are compared and written, as `worker_job` does for the job; anything
else on the service (memory, scaling, labels) stays. `Setup.front_url` is the URI read back.
"""

from __future__ import annotations

from google.api_core import exceptions
from google.cloud import run_v2

from deployer.adapters.polling import operation_result
from deployer.setup import roles
from deployer.setup.context import Setup
from deployer.setup.front_env import (
    MANAGED_BY_FUNCTIONS,
    front_result,
    missing_note,
    other_front,
    plain_env,
    secret_env,
)
from deployer.setup.names import CONFIG_SECRET, FRONT_SERVICE
from deployer.setup.run_env import container_shape, pinned_env
from deployer.setup.steps import CALL_TIMEOUT, OPERATION_TIMEOUT, Outcome, SetupFailed, StepResult

STEP = "front"


def service_env(setup: Setup, secrets: dict[str, str]) -> list[run_v2.EnvVar]:
    """The front's environment as Cloud Run's, sorted by name, its secrets pinned."""
    plain = plain_env(setup.project, setup.region, setup.version_of(CONFIG_SECRET))
    return pinned_env(setup, plain, secrets)


def _shape(service: run_v2.Service) -> tuple[object, ...]:
    """What setup owns of the service, comparable."""
    template = service.template
    return (container_shape(template.containers), template.service_account)


def _wanted(setup: Setup, image: str, secrets: dict[str, str]) -> run_v2.Service:
    container = run_v2.Container(image=image, env=service_env(setup, secrets))
    return run_v2.Service(
        template=run_v2.RevisionTemplate(
            containers=[container],
            service_account=roles.email(roles.account(roles.FRONT), setup.project),
        )
    )


def _merge(existing: run_v2.Service, wanted: run_v2.Service) -> run_v2.Service:
    """`existing`, with setup's fields from `wanted` (UpdateService replaces it whole)."""
    merged = run_v2.Service(existing)
    template, want = merged.template, wanted.template
    if template.containers:
        container = template.containers[0]
        container.image = want.containers[0].image
        del container.env[:]
        container.env.extend(want.containers[0].env)
    else:
        template.containers.append(want.containers[0])
    template.service_account = want.service_account
    template.revision = ""  # a new revision, named by Cloud Run
    return merged


def deploy_service(setup: Setup) -> StepResult:
    client = setup.client(run_v2.ServicesClient)
    parent = f"projects/{setup.project}/locations/{setup.region}"
    name = f"{parent}/services/{FRONT_SERVICE}"
    try:
        existing: run_v2.Service | None = client.get_service(name=name, timeout=CALL_TIMEOUT)
    except exceptions.NotFound:
        existing = None
    key, value = MANAGED_BY_FUNCTIONS
    if existing is not None and existing.labels.get(key) == value:
        raise other_front(setup, "service")
    image = setup.image or (
        existing.template.containers[0].image
        if existing is not None and existing.template.containers
        else None
    )
    secrets, missing = secret_env(setup)
    note = missing_note(missing)
    if image is None:
        if setup.dry_run:
            return StepResult(STEP, Outcome.PLANNED, "create service, once --image names the image")
        raise SetupFailed(
            STEP,
            "the front's service does not exist and no image was given",
            "Run setup with --image REGION-docker.pkg.dev/P/REPO/deployer@sha256:... "
            "(the deployer's image, built from the root Dockerfile)",
        )
    wanted = _wanted(setup, image, secrets)
    if existing is not None and _shape(existing) == _shape(wanted):
        setup.front_url = existing.uri or None
        return front_result(Outcome.UNCHANGED, f"service {FRONT_SERVICE}", note)
    verb = "create" if existing is None else "update"
    if setup.dry_run:
        return front_result(Outcome.PLANNED, f"{verb} service {FRONT_SERVICE}", note)
    if existing is None:
        operation = client.create_service(
            parent=parent, service=wanted, service_id=FRONT_SERVICE, timeout=CALL_TIMEOUT
        )
    else:
        operation = client.update_service(service=_merge(existing, wanted), timeout=CALL_TIMEOUT)
    operation_result(operation, OPERATION_TIMEOUT)
    deployed = client.get_service(name=name, timeout=CALL_TIMEOUT)
    setup.front_url = deployed.uri or None
    return front_result(Outcome.CHANGED, f"{verb}d service {FRONT_SERVICE}", note)
