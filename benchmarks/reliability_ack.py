"""Figure 1: the slash-command ack while Slack answers 429, or answers slowly (see reliability.py).

Each generated environment is a copy of the demo's `prod` without its approval, deploy
window and `promote_from` (`reliability_common.unattended`): the front accepts a
`/deploy` the same way with or without them, and a copy named otherwise cannot promote
from `staging`, which the config written here leaves out. Each copy names a Cloud Run
service of its own (no two environments may share one); none is ever deployed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from deployer_sandbox.harness import chat_front as webhook
from deployer_sandbox.harness import seed as demo
from deployer_sandbox.harness.sandbox import Sandbox
from figures import summary
from google.cloud import run_v2
from reliability_common import (
    ACK_P99_TARGET_MS,
    CONDITIONS,
    NOOP_JOB,
    RETRY_AFTER,
    ROOT,
    SLOW_DELTA_TARGET_MS,
    SLOW_SLACK_MS,
    WARMUP,
    WireRequest,
    signing,
    slash_command,
    unattended,
    write_config,
)

from deployer.adapters.google_clients import EMULATOR_HOST_ENV, google_client
from deployer.engine import Engine, default_platform
from deployer.front.context import front_context
from deployer.front.settings import FrontSettings
from deployer.pipeline.record import State
from deployer.store import open_store

# --- 1. the slash-command ack while Slack answers 429 ----------------------------------


def noop_job(host: str, project: str, region: str) -> str:
    """A Cloud Run job in the sandbox whose container runs `true`: dispatches that run nothing."""
    container = run_v2.Container(
        image=f"{region}-docker.pkg.dev/{project}/deployer/{NOOP_JOB}:latest",  # never pushed
        command=["true"],  # the front's args (`worker DEPLOY_ID`) follow, and are ignored
    )
    job = run_v2.Job(
        template=run_v2.ExecutionTemplate(
            task_count=1,
            template=run_v2.TaskTemplate(containers=[container], max_retries=0),
        )
    )
    jobs: Any = google_client(run_v2.JobsClient, host)
    try:
        operation = jobs.create_job(
            parent=f"projects/{project}/locations/{region}", job=job, job_id=NOOP_JOB
        )
        return str(operation.result(timeout=10).name)
    finally:
        jobs.transport.close()


def _post(client: httpx.Client, base_url: str, request: WireRequest) -> tuple[float, int, str]:
    started = time.perf_counter()
    answer = client.post(base_url + request.path, content=request.body, headers=request.headers)
    return time.perf_counter() - started, answer.status_code, answer.text


def cold_child() -> None:
    """Child: a fresh front with no context yet (as main.py on a new Cloud Functions instance)."""
    from werkzeug.serving import make_server

    from deployer.front.http import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, create_app(), threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()


def cold_first_answer(env: dict[str, str], request: WireRequest) -> float:
    """Seconds a fresh front process takes to answer its first request (`request`)."""
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("reliability.py")), "--cold-child"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        with httpx.Client(timeout=30) as client:
            elapsed, status, text = _post(client, f"http://127.0.0.1:{port}", request)
        if status != 200:
            raise SystemExit(f"the cold front answered {status}: {text}")
        return elapsed
    finally:
        child.terminate()
        child.wait(15)


class Commands:
    """Signed `/deploy ENV` requests as the demo user sends them, a fresh environment each."""

    def __init__(self, secret: str, seeded: demo.Demo, environments: list[str]) -> None:
        self.secret, self.user, self.channel = secret, seeded.slack_user, seeded.slack_channel
        self._left = iter(environments)
        self.sent: list[str] = []

    def next(self) -> WireRequest:
        environment = next(self._left)
        self.sent.append(environment)
        return slash_command(self.secret, environment, user=self.user, channel=self.channel)


def ack_series(
    front_url: str, commands: Commands, cold_env: dict[str, str], requests: int, cold: int
) -> dict[str, list[float]]:
    """Seconds to each answer: `cold` fresh fronts' first requests, then `requests` warm ones."""
    colds = [cold_first_answer(cold_env, commands.next()) for _ in range(cold)]
    warm = []
    with httpx.Client(timeout=30) as client:
        for index in range(WARMUP + requests):
            elapsed, status, text = _post(client, front_url, commands.next())
            if status != 200:
                raise SystemExit(f"/deploy {commands.sent[-1]} answered {status}: {text}")
            if index >= WARMUP:
                warm.append(elapsed)
    return {"cold": colds, "warm": warm}


def slash_ack(sandbox: Sandbox, seeded: demo.Demo, workdir: Path, requests: int, cold: int) -> dict:
    """Figure 1 (see the module docstring)."""
    host = sandbox.grpc_address
    each = cold + WARMUP + requests  # environments a condition needs: one per request
    names = {
        condition: [f"bench-{condition}-{i:03d}".replace("_", "-") for i in range(each)]
        for condition in CONDITIONS
    }
    prod = unattended(seeded.config.environments["prod"])
    environments = {
        "prod": prod,
        **{
            name: prod.model_copy(update={"cloud_run_service": name})
            for group in names.values()
            for name in group
        },
    }
    config = write_config(
        seeded.config.model_copy(update={"environments": environments}), workdir / "ack.toml"
    )
    store_url = f"sqlite:///{workdir / 'ack.db'}"
    store = open_store(store_url)
    job = noop_job(host, seeded.project, seeded.region)
    secret, token = signing()
    settings = FrontSettings(secret, token, None, sandbox.slack_api_url, job)
    context = front_context(settings, Engine(config, default_platform(host), store), host=host)
    # The sweep would only add noise here: in production it runs elsewhere (Cloud Scheduler).
    front = webhook.serve(context, job, sweep_interval=3600)
    cold_env = {
        **os.environ,
        "DEPLOYER_CONFIG": str(config.path),
        "DEPLOYER_STORE": store_url,
        "DEPLOYER_DISPATCH": job,
        EMULATOR_HOST_ENV: host,
        "SLACK_API_URL": sandbox.slack_api_url,
        "SLACK_BOT_TOKEN": token,
        "SLACK_SIGNING_SECRET": secret,
    }
    results: dict[str, Any] = {}
    try:
        for condition, fresh in names.items():
            sandbox.faults.clear()
            if condition == "slack_429":
                sandbox.faults.arm("slack_429", retry_after=RETRY_AFTER, times=10**9)
            if condition == "slack_slow":
                sandbox.faults.arm("slack_latency", ms=SLOW_SLACK_MS, times=10**9)
            calls_before = len(sandbox.http.sink.calls())
            commands = Commands(secret, seeded, fresh)
            series = ack_series(front.url, commands, cold_env, requests, cold)
            # Accepted: each request left a new deploy, pending for its worker.
            accepted = [found[0] for env in commands.sent if (found := store.history(env, 1))]
            if len(accepted) != len(commands.sent) or any(
                record.state != State.PENDING for record in accepted
            ):
                raise SystemExit(f"{condition}: not every /deploy started a deploy")
            calls = sandbox.http.sink.calls()[calls_before:]
            results[condition] = {
                "accepted_ms": summary(series["warm"], 1000),
                "cold_first_request_ms": summary(series["cold"], 1000),
                "requests": len(commands.sent),
                "parents_posted": sum(1 for record in accepted if record.slack_ts),
                "slack_calls": len(calls),
                "slack_calls_429": sum(1 for call in calls if call["status"] == 429),
            }
    finally:
        sandbox.faults.clear()
        front.close()
        close = getattr(context.dispatcher, "close", None)
        if callable(close):
            close()
    ok, limited = results["slack_ok"]["accepted_ms"], results["slack_429"]["accepted_ms"]
    results["ratio_429_over_ok"] = {
        "median": round(limited["median"] / ok["median"], 2),
        "p99": round(limited["p99"] / ok["p99"], 2),
    }
    slow = results["slack_slow"]
    results["slow_minus_ok_ms"] = {
        kind: round(slow[kind]["median"] - results["slack_ok"][kind]["median"], 2)
        for kind in ("accepted_ms", "cold_first_request_ms")
    }
    results["target_p99_ms"] = ACK_P99_TARGET_MS
    results["met"] = limited["p99"] <= ACK_P99_TARGET_MS
    results["slow_met"] = all(
        delta <= SLOW_DELTA_TARGET_MS for delta in results["slow_minus_ok_ms"].values()
    )
    return results
