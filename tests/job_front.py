"""A front world whose deploys run as they do in production: in a Cloud Run job's execution.

    with_worker_job(front, extra_env)   creates a `deployer-worker` job in the world's project
                                        (its container runs `python -m deployer.cli worker ID`
                                        for real, with retries) and points DEPLOYER_DISPATCH at it

The job's environment is the front's (store, sandbox, Slack), its config and the
bot token Secret Manager references, plus `extra_env` (a kill point, say).
"""

from __future__ import annotations

import time
from pathlib import Path

from deployer_sandbox.harness.chat_front import create_worker_job, store_bot_token
from google.cloud import run_v2

from deployer.adapters.google_clients import EMULATOR_HOST_ENV, google_client
from tests.conftest import REGION
from tests.front_world import BOT_TOKEN, FrontWorld

PASSED_ON = ("DEPLOYER_STORE", "SLACK_API_URL", "FIRESTORE_EMULATOR_HOST")


def with_worker_job(
    front: FrontWorld, extra_env: dict[str, str] | None = None, retries: int = 3
) -> str:
    """Create the world's worker job and dispatch the front's deploys to it; the job's name."""
    host = front.sandbox.grpc_address
    project = front.world.project
    env = {name: front.env[name] for name in PASSED_ON if name in front.env}
    env[EMULATOR_HOST_ENV] = host
    env.update(extra_env or {})
    job = create_worker_job(
        front.sandbox,
        f"projects/{project}/locations/{REGION}",
        env,
        store_bot_token(host, project, BOT_TOKEN),
        # The front's config, kept in Secret Manager where the worker reads it.
        Path(front.env["DEPLOYER_CONFIG"]).read_text(encoding="utf-8"),
        retries,
    )
    front.env["DEPLOYER_DISPATCH"] = job
    return job


def executions(front: FrontWorld, job: str, timeout: float = 60) -> list[run_v2.Execution]:
    """The job's executions once every one has completed, newest first."""
    client = google_client(run_v2.ExecutionsClient, front.sandbox.grpc_address)
    deadline = time.monotonic() + timeout
    try:
        while True:
            found = list(client.list_executions(parent=job, timeout=30))
            if all(not execution.reconciling for execution in found):
                return found
            assert time.monotonic() < deadline, f"executions of {job} still running"
            time.sleep(0.1)
    finally:
        client.transport.close()
