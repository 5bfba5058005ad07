"""The chat front inside `deployer sandbox`: the webhook app, and the job that runs deploys.

    Front
    ├── webhook server   the WSGI app of `deployer serve` / `main.py`, on a thread,
    │                    on a free loopback port (the state file's `webhook`)
    ├── FrontContext     the demo config (its allow-lists), the demo store, the
    │                    sandbox's gRPC and Slack sink, fresh signing secrets
    └── deployer-worker  a Cloud Run job in the sandbox whose container runs
                         `python -m deployer.cli worker DEPLOY_ID` for real; the
                         front dispatches to it exactly as in production
                         (DEPLOYER_DISPATCH = the job's resource name)

The bot token the worker needs is a Secret Manager secret referenced by the
job's env, as it would be in production; the other variables are plain values.
"""

from __future__ import annotations

import logging
import secrets
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from google.cloud import run_v2, secretmanager_v1

from deployer.adapters.google_clients import EMULATOR_HOST_ENV, google_client
from deployer.sandbox.demo import Demo
from deployer.sandbox.server import Sandbox

log = logging.getLogger(__name__)

WORKER_JOB_ID = "deployer-worker"
WORKER_IMAGE = "deployer-worker"  # never pushed: the sandbox runs the command locally
BOT_TOKEN_SECRET = "slack-bot-token"
WORKER_TIMEOUT_S = 1800
WORKER_RETRIES = 3
_RPC_TIMEOUT = 10.0


@dataclass
class Front:
    """The running webhook server and what it is wired to. `close()` stops it."""

    url: str
    job: str
    context: Any  # the FrontContext it serves (deployer.front.context; imported lazily)
    _server: Any = None
    _thread: threading.Thread | None = None
    _sweeps: Any = None  # the SweepTimer (deployer.front.sweep)
    _closed: bool = field(default=False)

    def close(self) -> None:
        """Stop serving (idempotent); deploys already handed to the job end with the sandbox."""
        if self._closed:
            return
        self._closed = True
        if self._sweeps is not None:
            self._sweeps.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


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
    client: Any = google_client(secretmanager_v1.SecretManagerServiceClient, host)
    try:
        secret = client.create_secret(
            parent=f"projects/{project}",
            secret_id=BOT_TOKEN_SECRET,
            secret=secretmanager_v1.Secret(
                replication=secretmanager_v1.Replication(
                    automatic=secretmanager_v1.Replication.Automatic()
                )
            ),
            timeout=_RPC_TIMEOUT,
        )
        client.add_secret_version(
            parent=secret.name,
            payload=secretmanager_v1.SecretPayload(data=token.encode()),
            timeout=_RPC_TIMEOUT,
        )
        return str(secret.name)
    finally:
        client.transport.close()


def create_worker_job(
    host: str, parent: str, env: dict[str, str], token_secret: str, retries: int = WORKER_RETRIES
) -> str:
    """A `deployer-worker` job under `parent` whose container runs this deployer; its name.

    `env` are plain variables; SLACK_BOT_TOKEN references the secret `token_secret`.
    """
    project, region = parent.split("/")[1], parent.split("/")[3]
    # The job dispatches the next deploy waiting in a queue to itself, as the front does.
    env = {**env, "DEPLOYER_DISPATCH": f"{parent}/jobs/{WORKER_JOB_ID}"}
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
        image=f"{region}-docker.pkg.dev/{project}/deployer/{WORKER_IMAGE}:latest",
        command=[sys.executable, "-m", "deployer.cli"],
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


def start_front(sandbox: Sandbox, demo: Demo, signing: dict[str, str]) -> Front:
    """Create the worker job and serve the webhook app wired to the sandbox and the demo."""
    from deployer.engine import Engine, default_platform
    from deployer.front.context import front_context
    from deployer.front.settings import FrontSettings
    from deployer.store import open_store

    host = sandbox.grpc_address
    token = f"xoxb-sandbox-{secrets.token_hex(12)}"
    job = create_worker_job(
        host,
        f"projects/{demo.project}/locations/{demo.region}",
        {
            "DEPLOYER_CONFIG": str(demo.config.path),
            EMULATOR_HOST_ENV: host,
            "DEPLOYER_STORE": demo.store,
            "SLACK_API_URL": sandbox.slack_api_url,
        },
        store_bot_token(host, demo.project, token),
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
) -> Front:
    """Serve the webhook app (`deployer serve`'s, `main.py`'s) for `context` on a thread,
    and sweep every `sweep_interval` seconds (default: the config's)."""
    from werkzeug.serving import make_server

    from deployer.front.http import create_app
    from deployer.front.sweep import Sweeper, SweepTimer

    # One access line per request is noise next to the deploy's own logs.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(host, port, create_app(context), threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="webhook", daemon=True
    )
    thread.start()
    interval = sweep_interval or context.config.deployer.sweep_interval
    sweeps = SweepTimer(Sweeper(context), interval)
    return Front(f"http://{host}:{server.server_port}", job, context, server, thread, sweeps)


def state_entries(front: Front | None) -> dict[str, str]:
    """The state file's `webhook` (and `worker_job`) entries."""
    return {} if front is None else {"webhook": front.url, "worker_job": front.job}
