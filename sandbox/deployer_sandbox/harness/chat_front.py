"""The chat front inside `deployer sandbox`: the webhook app, and the job that runs deploys.

A `ServedFront` is the webhook server, the WSGI app `deployer serve` runs, on a thread
and a free loopback port (the state file's `webhook`); its `FrontContext`, which
holds the demo config (its allow-lists), the demo store, the sandbox's gRPC and
Slack sink, and fresh signing secrets; and `deployer-worker`, a Cloud Run job in
the sandbox that runs the deployer's image (`deployer worker DEPLOY_ID`) for real.
The front dispatches to that job exactly as in production (DEPLOYER_DISPATCH is
the job's resource name).

What the worker reads, as in production: its config from Secret Manager
(DEPLOYER_CONFIG names the secret `deployer-config`), the bot token from a
secret referenced by the job's env, each service's build config from the
application's repository at the commit it deploys. The image holds none of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions
from google.cloud import run_v2, secretmanager_v1

from deployer.adapters.google_clients import EMULATOR_HOST_ENV, google_client
from deployer_sandbox.common.images import Image
from deployer_sandbox.common.serving import Serving
from deployer_sandbox.harness.sandbox import Sandbox
from deployer_sandbox.harness.seed import Demo

log = logging.getLogger(__name__)

WORKER_JOB_ID = "deployer-worker"
WORKER_IMAGE = "deployer"
CONFIG_SECRET = "deployer-config"
BOT_TOKEN_SECRET = "slack-bot-token"
WORKER_TIMEOUT_S = 1800
WORKER_RETRIES = 3
_RPC_TIMEOUT = 10.0


@dataclass
class ServedFront:
    """The running webhook server and what it is wired to. `close()` stops it."""

    url: str
    job: str
    context: Any  # the FrontContext it serves (deployer.front.context; imported lazily)
    _serving: Serving | None = None
    _sweeps: Any = None  # the SweepTimer (deployer.front.sweep)
    _closed: bool = field(default=False)

    def close(self) -> None:
        """Stop serving (idempotent); deploys already handed to the job end with the sandbox."""
        if self._closed:
            return
        self._closed = True
        if self._sweeps is not None:
            self._sweeps.stop()
        if self._serving is not None:
            self._serving.close()


def warm_imports() -> threading.Thread:
    """Import the front's heavy modules (Flask, bolt) on a thread while the demo is seeded."""

    def load() -> None:
        try:
            import deployer.front.context
            import deployer.front.github
            import deployer.front.http
            import deployer.front.slack_app  # noqa: F401  (bolt: the heaviest)
        except Exception:  # the real import, later, reports it
            log.debug("warming the front's imports failed", exc_info=True)

    thread = threading.Thread(target=load, name="front-imports", daemon=True)
    thread.start()
    return thread


def store_bot_token(host: str, project: str, token: str) -> str:
    """Keep the bot token in Secret Manager, as production would; the secret's name."""
    return store_secret(host, project, BOT_TOKEN_SECRET, token.encode())


def store_config(host: str, project: str, text: str) -> str:
    """Keep the deployer's config in Secret Manager, where the worker job reads it.

    The DEPLOYER_CONFIG value that names it (the `latest` version): a new version is
    read by the next execution, as on Cloud Run.
    """
    secret = store_secret(host, project, CONFIG_SECRET, text.encode())
    return f"{secret}/versions/latest"


def store_secret(host: str, project: str, secret_id: str, data: bytes) -> str:
    """Add `data` as the newest version of the secret (created if missing); its name."""
    client: Any = google_client(secretmanager_v1.SecretManagerServiceClient, host)
    name = f"projects/{project}/secrets/{secret_id}"
    try:
        with contextlib.suppress(exceptions.AlreadyExists):
            client.create_secret(
                parent=f"projects/{project}",
                secret_id=secret_id,
                secret=secretmanager_v1.Secret(
                    replication=secretmanager_v1.Replication(
                        automatic=secretmanager_v1.Replication.Automatic()
                    )
                ),
                timeout=_RPC_TIMEOUT,
            )
        client.add_secret_version(
            parent=name,
            payload=secretmanager_v1.SecretPayload(data=data),
            timeout=_RPC_TIMEOUT,
        )
        return name
    finally:
        client.transport.close()


def push_worker_image(sandbox: Sandbox, project: str, region: str) -> str:
    """The deployer's own image in the sandbox's registry; its reference.

    The real image (the root Dockerfile) holds the deployer installed in /app/.venv and
    main.py, nothing of a team's: no deployer.toml, no cloudbuild.yaml. The sandbox cannot
    run the image's RUN steps, so the deployer installed beside the sandbox stands in for
    /app/.venv; the container's working directory is the image's own folder, empty of
    everything else, so a worker that reaches for a file on this machine fails here too.
    """
    context = sandbox.workdir / "images" / "deployer"
    context.mkdir(parents=True, exist_ok=True)
    repository = f"{region}-docker.pkg.dev/{project}/deployer/{WORKER_IMAGE}"
    digest = "sha256:" + hashlib.sha256(f"{repository}\n{context}".encode()).hexdigest()
    image = Image(
        repository=repository,
        digest=digest,
        context=context,
        # The Dockerfile's ENTRYPOINT ["deployer"] and CMD ["serve", "--host", "0.0.0.0"]:
        # a job's args (["worker", ID], ["sweep"]) replace the CMD and keep the entry point.
        entrypoint=("python", "-m", "deployer.cli"),
        cmd=("serve", "--host", "0.0.0.0"),
        env={"PYTHONUNBUFFERED": "1"},  # the Dockerfile's ENV
    )
    sandbox.images.push(image, ["latest"])
    return image.uri


def create_worker_job(
    sandbox: Sandbox,
    parent: str,
    env: dict[str, str],
    token_secret: str,
    config_text: str,
    retries: int = WORKER_RETRIES,
) -> str:
    """A `deployer-worker` job under `parent` that runs the deployer's image; its name.

    As in production, the worker finds its config in Secret Manager (`config_text` is
    stored there) and everything else in `env` (plain variables) and the bot token's
    secret `token_secret`: nothing on this machine's disk but the store.
    """
    if "DEPLOYER_CONFIG" in env:
        raise ValueError("the worker reads its config from Secret Manager: pass config_text")
    host = sandbox.grpc_address
    project, region = parent.split("/")[1], parent.split("/")[3]
    env = {
        **env,
        "DEPLOYER_CONFIG": store_config(host, project, config_text),
        # The job dispatches the next deploy waiting in a queue to itself, as the front does.
        "DEPLOYER_DISPATCH": f"{parent}/jobs/{WORKER_JOB_ID}",
    }
    variables = [run_v2.EnvVar(name=name, value=value) for name, value in sorted(env.items())]
    variables.append(
        run_v2.EnvVar(
            name="SLACK_BOT_TOKEN",
            value_source=run_v2.EnvVarSource(
                secret_key_ref=run_v2.SecretKeySelector(secret=token_secret, version="latest")
            ),
        )
    )
    container = run_v2.Container(
        image=push_worker_image(sandbox, project, region),
        # The Dockerfile's ENTRYPOINT ["deployer"]; a dispatch's args are ["worker", ID].
        command=["python", "-m", "deployer.cli"],
        env=variables,
    )
    job = run_v2.Job(
        template=run_v2.ExecutionTemplate(
            task_count=1,
            template=run_v2.TaskTemplate(
                containers=[container],
                # A worker exits non-zero only when it died before its deploy ended: a
                # retry takes the deploy over and resumes it (a failed deploy exits 0).
                max_retries=retries,
                timeout={"seconds": WORKER_TIMEOUT_S},
            ),
        )
    )
    jobs: Any = google_client(run_v2.JobsClient, host)
    try:
        operation = jobs.create_job(
            parent=parent, job=job, job_id=WORKER_JOB_ID, timeout=_RPC_TIMEOUT
        )
        created: run_v2.Job = operation.result(timeout=_RPC_TIMEOUT)
    finally:
        jobs.transport.close()
    return str(created.name)


def start_front(sandbox: Sandbox, demo: Demo, signing: dict[str, str]) -> ServedFront:
    """Create the worker job and serve the webhook app wired to the sandbox and the demo."""
    from deployer.engine import Engine, default_platform
    from deployer.front.context import front_context
    from deployer.front.settings import FrontSettings
    from deployer.store import open_store

    host = sandbox.grpc_address
    token = f"xoxb-sandbox-{secrets.token_hex(12)}"
    job = create_worker_job(
        sandbox,
        f"projects/{demo.project}/locations/{demo.region}",
        {
            EMULATOR_HOST_ENV: host,
            "DEPLOYER_STORE": demo.store,
            "SLACK_API_URL": sandbox.slack_api_url,
            "DEPLOYER_GITHUB_API_URL": sandbox.github_api_url,
        },
        store_bot_token(host, demo.project, token),
        demo.config.path.read_text(encoding="utf-8"),
    )
    # What the front would read from its environment on Cloud Functions, given directly:
    # the sandbox's own process environment stays as it was.
    settings = FrontSettings(
        slack_signing_secret=signing["slack_signing_secret"],
        slack_bot_token=token,
        github_webhook_secret=signing["github_webhook_secret"],
        slack_api_url=sandbox.slack_api_url,
        dispatch=job,
    )
    engine = Engine(demo.config, default_platform(host), open_store(demo.store))
    context = front_context(settings, engine, host=host)
    return serve(context, job)


def serve(
    context: Any,
    job: str = "",
    host: str = "127.0.0.1",
    port: int = 0,
    sweep_interval: float | None = None,
) -> ServedFront:
    """Serve the webhook app (`deployer serve`'s, `main.py`'s) for `context` on a thread,
    and sweep every `sweep_interval` seconds (default: the config's)."""
    from werkzeug.serving import make_server

    from deployer.front.http import create_app
    from deployer.front.sweep import Sweeper, SweepTimer

    # One access line per request is noise next to the deploy's own logs.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(host, port, create_app(context), threaded=True)
    serving = Serving(server, "webhook", poll_interval=0.2)
    serving.start()
    interval = sweep_interval or context.config.deployer.sweep_interval
    sweeps = SweepTimer(Sweeper(context), interval)
    return ServedFront(f"http://{host}:{server.server_port}", job, context, serving, sweeps)


def state_entries(front: ServedFront | None) -> dict[str, str]:
    """The state file's `webhook` (and `worker_job`) entries."""
    return {} if front is None else {"webhook": front.url, "worker_job": front.job}
