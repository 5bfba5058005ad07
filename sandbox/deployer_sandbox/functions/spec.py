"""What a 2nd-gen function is made of: its defaults, and the Cloud Run service it deploys.

    with_defaults(function, name, number)   the function as Get answers it
    service_of(function, name, image, number)  the run_v2.Service UpdateService receives

A 2nd-gen function "currently deploys services to Cloud Run (fully managed)"
(`Function.service_config`, google/cloud/functions/v2/functions.proto): the service has
the function's id, its container the built image, and the function's settings as
Cloud Run's:

    service_config.environment_variables      container env
    secret_environment_variables[]            env with secret_key_ref projects/P/secrets/S,
                                              version (read when the instance starts)
    service_account_email                     template.service_account
    timeout_seconds                           template.timeout
    max/min_instance_count                    template.scaling
    max_instance_request_concurrency          template.max_instance_request_concurrency
    available_memory, available_cpu           container resources.limits
    ingress_settings                          service ingress
"""

from __future__ import annotations

from typing import Any

from google.cloud import functions_v2, run_v2
from google.protobuf import duration_pb2

from deployer_sandbox.common.protos import clone
from deployer_sandbox.functions.names import FunctionName

# proto-plus enums: mypy reads their members as plain ints.
Ingress: Any = functions_v2.ServiceConfig.IngressSettings
_GEN_2: Any = functions_v2.Environment.GEN_2
_ARTIFACT_REGISTRY: Any = functions_v2.BuildConfig.DockerRegistry.ARTIFACT_REGISTRY

# Defaults, from the fields' comments in functions.proto: "Defaults to 60 seconds"
# (`timeout_seconds`), "Defaults to 256M" (`available_memory`), "Defaults to 1"
# (`max_instance_request_concurrency`), "If empty, defaults to
# {project_number}-compute@developer.gserviceaccount.com" (`service_account_email`),
# "Defaults to the resource name suffix" (`BuildConfig.entry_point`). The instance cap
# and the CPU are what `gcloud functions describe` shows for a function deployed without
# them (100 instances, 0.1666 of a CPU for 256M).
DEFAULT_TIMEOUT_S = 60
DEFAULT_MEMORY = "256M"
DEFAULT_CPU = "0.1666"
DEFAULT_MAX_INSTANCES = 100
DEFAULT_CONCURRENCY = 1
# Set by Cloud Functions on every 2nd-gen function, and shown by describe: functions-
# framework then logs each request's execution id.
PLATFORM_ENV = {"LOG_EXECUTION_ID": "true"}
# The label Cloud Functions puts on the Cloud Run service it manages.
MANAGED_BY = {"goog-managed-by": "cloudfunctions"}

_INGRESS = {
    Ingress.ALLOW_ALL: run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
    Ingress.ALLOW_INTERNAL_ONLY: run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY,
    Ingress.ALLOW_INTERNAL_AND_GCLB: run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
}


def default_service_account(number: str) -> str:
    return f"{number}-compute@developer.gserviceaccount.com"


def with_defaults(
    function: functions_v2.Function, name: FunctionName, number: str
) -> functions_v2.Function:
    """A copy of `function` with the defaults Google fills in, named `name`."""
    shaped = clone(function)
    shaped.name = name.name
    shaped.environment = _GEN_2
    build = shaped.build_config
    build.entry_point = build.entry_point or name.function
    build.docker_repository = build.docker_repository or f"{name.parent}/repositories/gcf-artifacts"
    build.docker_registry = _ARTIFACT_REGISTRY
    config = shaped.service_config
    config.timeout_seconds = config.timeout_seconds or DEFAULT_TIMEOUT_S
    config.available_memory = config.available_memory or DEFAULT_MEMORY
    config.available_cpu = config.available_cpu or DEFAULT_CPU
    config.max_instance_count = config.max_instance_count or DEFAULT_MAX_INSTANCES
    config.max_instance_request_concurrency = (
        config.max_instance_request_concurrency or DEFAULT_CONCURRENCY
    )
    config.ingress_settings = config.ingress_settings or Ingress.ALLOW_ALL
    config.service_account_email = config.service_account_email or default_service_account(number)
    config.all_traffic_on_latest_revision = True
    for key, value in PLATFORM_ENV.items():
        config.environment_variables.setdefault(key, value)
    for secret in config.secret_environment_variables:
        secret.project_id = secret.project_id or name.project
        secret.version = secret.version or "latest"
    return shaped


def _secret_project(project_id: str, name: FunctionName, number: str) -> str:
    """The project id the sandbox's Secret Manager knows: the function's own number maps
    to its id ("preferably project number but can also be the project ID", `SecretEnvVar`)."""
    return name.project if project_id in ("", number) else project_id


def service_of(
    function: functions_v2.Function, name: FunctionName, image: str, number: str
) -> run_v2.Service:
    """The Cloud Run service that runs `function` (already `with_defaults`) from `image`."""
    config = function.service_config
    env = [
        run_v2.EnvVar(name=key, value=value)
        for key, value in sorted(config.environment_variables.items())
    ]
    for secret in config.secret_environment_variables:
        project = _secret_project(secret.project_id, name, number)
        env.append(
            run_v2.EnvVar(
                name=secret.key,
                value_source=run_v2.EnvVarSource(
                    secret_key_ref=run_v2.SecretKeySelector(
                        secret=f"projects/{project}/secrets/{secret.secret}",
                        version=secret.version,
                    )
                ),
            )
        )
    container = run_v2.Container(
        image=image,
        env=env,
        resources=run_v2.ResourceRequirements(
            limits={"memory": config.available_memory, "cpu": config.available_cpu}
        ),
    )
    template = run_v2.RevisionTemplate(
        containers=[container],
        service_account=config.service_account_email,
        timeout=duration_pb2.Duration(seconds=config.timeout_seconds),
        max_instance_request_concurrency=config.max_instance_request_concurrency,
        scaling=run_v2.RevisionScaling(
            min_instance_count=config.min_instance_count,
            max_instance_count=config.max_instance_count,
        ),
        labels=dict(MANAGED_BY),
    )
    return run_v2.Service(
        name=name.service,
        template=template,
        ingress=_INGRESS.get(config.ingress_settings, run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL),
        labels=dict(MANAGED_BY),
    )
