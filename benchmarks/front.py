"""Chat front speed against the sandbox: answers to Slack, cold start, refusals, status.

    uv run python benchmarks/front.py [--warm N] [--deploys N] [--status N] [--cold N]
                                      [--bad-seconds S]

Starts the sandbox in this process (demo service, webhook server, worker job),
then measures over loopback HTTP, with correctly signed requests:

    slash_warm_ms        `/deploy help`: request sent -> HTTP answer, warm (median, p99)
    deploy_accepted_ms   `/deploy staging`: verify, authorize, lock check, post the thread's
                         parent, save, run_job -> HTTP answer (each deploy waited for)
    status_ms            `/deploy status`: Cloud Run read over gRPC + a live /health probe
    serve_cold_start_s   `deployer serve` process start -> first answer to `/deploy help`
    bad_signatures_per_s requests refused for a wrong signature, one client, the app pinned
                         to one core (in-process WSGI, and over HTTP to the sandbox's server)

The deploys go to `staging`: the demo's `prod` now waits for an approver before
traffic moves, so its deploys would not end, and what the front does before it
answers is the same for either environment.

Targets: warm median <= 100 ms and p99 <= 250 ms, cold start <= 1.5 s, >= 1,000
refusals/s, status p95 <= 300 ms. Results: printed, and saved to
benchmarks/results/front.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from figures import save, summary

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_TIMEOUT = 90.0


class Slack:
    """Signs and sends slash commands to the front as the demo user."""

    def __init__(self, running: Any) -> None:
        self.running = running
        self.webhook = running.front.url
        self.secret = running.state["slack_signing_secret"]
        self.client = httpx.Client(timeout=10)

    def send(self, text: str, secret: str | None = None) -> tuple[float, int]:
        from deployer_sandbox.harness.demo_wire import signed_slash_command

        demo = self.running.demo
        url = self.running.sandbox.http.mint_response_url(
            channel=demo.slack_channel, user=demo.slack_user
        )
        body, headers = signed_slash_command(
            secret or self.secret, text, demo.slack_user, demo.slack_channel, url
        )
        started = time.perf_counter()
        answer = self.client.post(f"{self.webhook}/slack/events", content=body, headers=headers)
        return time.perf_counter() - started, answer.status_code


def warm(slack: Slack, text: str, runs: int) -> list[float]:
    for _ in range(10):
        slack.send(text)
    samples = []
    for _ in range(runs):
        elapsed, status = slack.send(text)
        if status != 200:
            raise SystemExit(f"/deploy {text} answered {status}")
        samples.append(elapsed)
    return samples


def accepted_deploys(slack: Slack, runs: int, environment: str = "staging") -> list[float]:
    """`/deploy ENV`, each waited for to its end before the next (a running deploy locks)."""
    store = slack.running.front.context.store
    samples = []
    for _ in range(runs):
        before = {r.id for r in store.history(environment, 100)}
        elapsed, status = slack.send(environment)
        if status != 200:
            raise SystemExit(f"/deploy {environment} answered {status}")
        samples.append(elapsed)
        deadline = time.monotonic() + DEPLOY_TIMEOUT
        while time.monotonic() < deadline:
            new = [r for r in store.history(environment, 100) if r.id not in before]
            if new and new[0].state.finished:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("a benchmark deploy did not finish")
        time.sleep(0.5)  # the worker's last Slack calls
    return samples


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cold_starts(running: Any, runs: int) -> list[float]:
    """Seconds from spawning `python -m deployer.cli serve` to its first answered command."""
    from deployer_sandbox.harness.demo_wire import signed_slash_command

    demo, sandbox = running.demo, running.sandbox
    env = {
        **os.environ,
        "DEPLOYER_CONFIG": str(demo.config.path),
        "DEPLOYER_STORE": demo.store,
        "DEPLOYER_GCP_EMULATOR_HOST": sandbox.grpc_address,
        "DEPLOYER_DISPATCH": running.front.job,
        "SLACK_API_URL": sandbox.slack_api_url,
        "SLACK_BOT_TOKEN": running.front.context.settings.slack_bot_token,
        "SLACK_SIGNING_SECRET": running.state["slack_signing_secret"],
        "GITHUB_WEBHOOK_SECRET": running.state["github_webhook_secret"],
    }
    samples = []
    for _ in range(runs):
        port = _free_port()
        body, headers = signed_slash_command(
            running.state["slack_signing_secret"], "help", demo.slack_user, demo.slack_channel, ""
        )
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "deployer.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                if process.poll() is not None or time.perf_counter() - started > 30:
                    raise SystemExit("deployer serve did not answer")
                try:
                    answer = httpx.post(
                        f"http://127.0.0.1:{port}/slack/events",
                        content=body,
                        headers=headers,
                        timeout=5,
                    )
                except httpx.TransportError:
                    time.sleep(0.005)
                    continue
                if answer.status_code != 200:
                    raise SystemExit(f"deployer serve answered {answer.status_code}")
                samples.append(time.perf_counter() - started)
                break
        finally:
            process.terminate()
            process.wait(15)
    return samples


def _refusals_in_process(seconds: float) -> float:
    """Child: the webhook app pinned to one core, refusing forged commands; refusals/s."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ.update(SLACK_SIGNING_SECRET="the-real-secret", SLACK_BOT_TOKEN="xoxb-bench")
    from deployer_sandbox.harness.demo_wire import signed_slash_command

    from deployer.front.http import create_app

    client = create_app().test_client()
    body, headers = signed_slash_command("a-forged-secret", "prod", "U0DEMOUSER", "C0DEPLOYS0", "")
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        if client.post("/slack/events", data=body, headers=headers).status_code != 401:
            raise SystemExit("a forged request was not refused")
        count += 1
    return count / (time.perf_counter() - started)


def refusals(slack: Slack, seconds: float) -> dict[str, float]:
    child = subprocess.run(
        [sys.executable, __file__, "--refusals-child", str(seconds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        if slack.send("prod", secret="a-forged-secret")[1] != 401:
            raise SystemExit("a forged request was not refused")
        count += 1
    return {
        "in_process_one_core": round(float(child.stdout.strip()), 1),
        "over_http_one_client": round(count / (time.perf_counter() - started), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--deploys", type=int, default=5)
    parser.add_argument("--status", type=int, default=60)
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--bad-seconds", type=float, default=3.0)
    parser.add_argument("--refusals-child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.refusals_child is not None:
        print(_refusals_in_process(args.refusals_child))
        return

    from deployer_sandbox.harness import lifecycle

    started = time.perf_counter()
    running: Any = lifecycle.start(with_demo=True, start_dir=ROOT)
    ready = time.perf_counter() - started
    try:
        slack = Slack(running)
        results = {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "sandbox_with_front_ready_s": round(ready, 3),
            "slash_warm_ms": summary(warm(slack, "help", args.warm), 1000),
            "deploy_accepted_ms": summary(accepted_deploys(slack, args.deploys), 1000),
            "status_ms": summary(warm(slack, "status", args.status), 1000),
            "serve_cold_start_s": summary(cold_starts(running, args.cold)),
            "bad_signatures_per_s": refusals(slack, args.bad_seconds),
        }
    finally:
        running.close()
    save("front", results)


if __name__ == "__main__":
    main()
