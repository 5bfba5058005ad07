"""Starting a revision's container: image, environment (secrets resolved), process, readiness.

Cloud Run reads env secrets once, when an instance starts; so does the sandbox,
each time it starts a revision's process (again after a scale to zero). The
template's `command` and `args` override the image's ENTRYPOINT and CMD as on Cloud
Run (`containers.argv_of`). Beside the container's env, the process finds the
platform's: K_SERVICE, K_REVISION, K_CONFIGURATION, PORT (the container port,
`ports[0].container_port` or 8080), and GCE_METADATA_HOST and GCE_METADATA_IP naming the
sandbox's metadata server, where google-auth finds its
credentials and ID tokens as on Cloud Run.

A container that does not come up fails the revision with Cloud Run's own words
and a Logs URL; as on Cloud Run, the container's output is not in the message but
in Cloud Logging (the sandbox's `cloud_logging.api`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from google.cloud import run_v2

from deployer_sandbox.cloud_run.containers import argv_of, listen_port
from deployer_sandbox.cloud_run.names import ServiceName, log_uri
from deployer_sandbox.cloud_run.processes import RevisionProcesses
from deployer_sandbox.common.images import Image, ImageStore
from deployer_sandbox.common.rpc import RpcError
from deployer_sandbox.secret_manager.api import SecretManager

log = logging.getLogger(__name__)

Reason = run_v2.Condition.CommonReason
RevisionReason = run_v2.Condition.RevisionReason

_TROUBLESHOOTING = (
    "For more troubleshooting guidance, see "
    "https://cloud.google.com/run/docs/troubleshooting#container-failed-to-start"
)
# Without a startup probe the sandbox waits this long for the port (Cloud Run allows 240 s;
# a local process that is not listening after 30 s is not going to).
DEFAULT_STARTUP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Outcome:
    """How a start attempt ended: `url` when ready, else the condition reason and message."""

    url: str | None
    message: str = ""
    reason: int | None = None  # a Condition.CommonReason
    revision_reason: int | None = None  # a Condition.RevisionReason

    @property
    def ready(self) -> bool:
        return self.url is not None


def startup_timeout(container: run_v2.Container) -> float:
    """Seconds the container may take to listen: its startup probe's budget, if it has one."""
    probe = container.startup_probe
    if probe.tcp_socket or probe.http_get or probe.grpc or probe.period_seconds:
        period = probe.period_seconds or 10
        attempts = probe.failure_threshold or 3
        return float(probe.initial_delay_seconds + period * attempts)
    return DEFAULT_STARTUP_TIMEOUT_S


class RevisionLauncher:
    """Turns a revision template into a running, ready process. Thread-safe."""

    def __init__(
        self,
        processes: RevisionProcesses,
        images: ImageStore,
        secrets: SecretManager,
        platform_env: Mapping[str, str] | None = None,
    ) -> None:
        """`platform_env`: set in every revision's environment over its container's own."""
        self._processes = processes
        self._images = images
        self._secrets = secrets
        # Kept, not copied: the sandbox fills in its addresses once its ports are bound.
        self._platform_env: Mapping[str, str] = platform_env if platform_env is not None else {}

    def launch(
        self, service: ServiceName, revision_id: str, template: run_v2.RevisionTemplate
    ) -> Outcome:
        """Start the revision and block until it listens or fails (bounded by its timeout)."""
        container = template.containers[0]  # the ingress container; sidecars are not run
        image = self._images.resolve(container.image)
        if image is None:
            return Outcome(
                None, f"Image '{container.image}' not found.", reason=Reason.CONTAINER_MISSING
            )
        env, failure = self._environment(service, revision_id, container)
        if failure is not None:
            return failure
        return self._start(service, revision_id, image, env, container)

    def _start(
        self,
        service: ServiceName,
        revision_id: str,
        image: Image,
        env: dict[str, str],
        container: run_v2.Container,
    ) -> Outcome:
        try:
            running = self._processes.start(
                revision_id,
                image,
                env,
                argv=argv_of(image, container.command, container.args),
                container_port=listen_port(container),
            )
        except Exception as error:
            log.exception("starting revision %s failed", revision_id)
            return Outcome(
                None,
                f"Container failed to start: {error}",
                revision_reason=RevisionReason.HEALTH_CHECK_CONTAINER_ERROR,
            )
        failure = running.wait_ready(startup_timeout(container))
        if failure is not None:
            self._processes.stop(revision_id)
            message = f"{failure}\n\nLogs URL: {log_uri(service, revision_id)}\n{_TROUBLESHOOTING}"
            return Outcome(
                None, message, revision_reason=RevisionReason.HEALTH_CHECK_CONTAINER_ERROR
            )
        return Outcome(running.url)

    def _environment(
        self, service: ServiceName, revision_id: str, container: run_v2.Container
    ) -> tuple[dict[str, str], Outcome | None]:
        env: dict[str, str] = {}
        for index, variable in enumerate(container.env):
            ref = variable.value_source.secret_key_ref
            if not ref.secret:
                env[variable.name] = variable.value
                continue
            secret = (
                ref.secret
                if ref.secret.startswith("projects/")
                else (f"projects/{service.project}/secrets/{ref.secret}")
            )
            version = f"{secret}/versions/{ref.version or 'latest'}"
            try:
                _, data = self._secrets.access(version)
            except RpcError as error:
                where = (
                    f"spec.template.spec.containers[0].env[{index}].value_from.secret_key_ref.name"
                )
                problem = (
                    "was not found"
                    if error.code == grpc.StatusCode.NOT_FOUND
                    else f"is not accessible: {error.message}"
                )
                return env, Outcome(
                    None,
                    f"{where}: Secret {version} {problem}",
                    reason=Reason.SECRETS_ACCESS_CHECK_FAILED,
                )
            env[variable.name] = data.decode("utf-8", "replace")
        # Set last: Cloud Run reserves these names.
        env.update(self._platform_env)
        env["K_SERVICE"] = service.service
        env["K_REVISION"] = revision_id
        env["K_CONFIGURATION"] = service.service
        return env, None

    def ensure_running(
        self, service: ServiceName, revision_id: str, template: run_v2.RevisionTemplate
    ) -> Outcome:
        """The revision's URL, starting its process again if it was scaled to zero."""
        running = self._processes.get(revision_id)
        if running is not None and running.alive():
            return Outcome(running.url)
        return self.launch(service, revision_id, template)

    def stop(self, revision_id: str) -> None:
        """Scale the revision to zero: end its process."""
        self._processes.stop(revision_id)
