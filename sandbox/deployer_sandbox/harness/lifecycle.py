"""`deployer sandbox`: start the local cloud, seed the demo, serve the front, publish the state."""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer_sandbox.harness import chat_front as webhook
from deployer_sandbox.harness import seed as demo_seed
from deployer_sandbox.harness.chat_front import ServedFront
from deployer_sandbox.harness.sandbox import Sandbox
from deployer_sandbox.harness.seed import Demo, DemoError


def state_of(sandbox: Sandbox, demo: Demo | None, signing: dict[str, str]) -> dict[str, Any]:
    """The state file's JSON (PRODUCT.md): where everything listens and who the demo is."""
    state: dict[str, Any] = {
        "gcp": sandbox.grpc_address,
        "slack_api": sandbox.slack_api_url,
        # DEPLOYER_GITHUB_API_URL: GitHub's REST API (deployments); calls at control + "github".
        "github_api": sandbox.github_api_url,
        "control": f"{sandbox.http.url}/_sandbox/",
        # GCE_METADATA_HOST and GCE_METADATA_IP: where google-auth finds credentials.
        "metadata": sandbox.metadata_address,
        # The git server behind connected repositories (they refuse anonymous reads).
        "git": sandbox.git_server.url,
        # STORAGE_EMULATOR_HOST: Cloud Storage's JSON API (`deployer setup` uploads there).
        "storage": sandbox.storage_url,
        # How containers are isolated: "namespaces", or why they share the host's network.
        "containers": _isolation(sandbox),
        **signing,
    }
    if demo is not None:
        state.update(
            {
                "config": str(demo.config.path),
                "store": demo.store,
                "project": demo.project,
                "region": demo.region,
                "demo": {
                    "slack_team": demo_seed.SLACK_TEAM,
                    "slack_channel": demo.slack_channel,
                    "slack_user": demo.slack_user,
                    # Approves prod's deploys (`[environments.prod.approval]`); deploys nothing.
                    "slack_approver": demo.slack_approver,
                    "github_repository": demo.github_repository,
                    # prod's Cloud Run service, its URL and its first revision.
                    "service": demo.service,
                    "service_uri": demo.service_uri,
                    "revision": demo.revision,
                    # staging's: `prod` has promote_from = "staging"; none runs until deployed.
                    "staging_service": demo.staging_service,
                    "commit": demo.commit,
                    "image": demo.image,
                    "repository": demo.repository,
                    "repository_remote": demo.repository_remote,
                },
                # Channels the bot has not joined, for trying what Slack refuses there.
                "slack_channels": {
                    "unjoined_public": demo.slack_unjoined_public,
                    "unjoined_private": demo.slack_unjoined_private,
                },
            }
        )
    return state


def write_atomically(path: Path, text: str) -> None:
    """Readers see the whole file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def smoke_check(demo: Demo) -> list[str]:
    """Call the demo service the way a user would; the problems found (empty when healthy)."""
    problems = []
    try:
        with urllib.request.urlopen(f"{demo.service_uri}/health", timeout=5) as answer:
            health = json.load(answer)
    except (OSError, ValueError) as error:
        return [f"GET {demo.service_uri}/health failed: {error}"]
    if health.get("status") != "healthy":
        problems.append(f"/health answered {health!r}")
    version = health.get("version") or {}
    if version.get("commit") != demo.commit:
        problems.append(f"/health reports commit {version.get('commit')!r}, built {demo.commit}")
    if version.get("revision") != demo.revision:
        problems.append(
            f"/health reports revision {version.get('revision')!r}, not {demo.revision}"
        )
    return problems


@dataclass
class Running:
    """A started sandbox: the local cloud, the seeded demo and the chat front on top."""

    sandbox: Sandbox
    demo: Demo | None
    front: ServedFront | None
    state: dict[str, Any]
    workdir: Path

    def close(self) -> None:
        """Stop the front, the cloud and every child process; remove the work folder."""
        try:
            if self.front is not None:
                self.front.close()
        finally:
            self.sandbox.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)


def start(
    with_demo: bool = True, start_dir: Path | None = None, slack_rate_scale: float = 1.0
) -> Running:
    """Start the sandbox in this process (seeded, with the front, unless `with_demo` is False).

    `slack_rate_scale` speeds up Slack's rate limits in the sink (0 or less: none).
    """
    workdir = Path(tempfile.mkdtemp(prefix="deployer-sandbox-"))
    sandbox = Sandbox(workdir / "cloud", slack_rate_scale=slack_rate_scale).start()
    # Deploys run in this process too (the demo's first one, the front's inline workers).
    sandbox.metadata.serve_this_process()
    try:
        demo, front = None, None
        signing = {
            "slack_signing_secret": secrets.token_hex(16),
            "github_webhook_secret": secrets.token_hex(16),
        }
        if with_demo:
            imports = webhook.warm_imports()
            repo = demo_seed.repository_root(start_dir or Path.cwd())
            demo = demo_seed.seed_demo(sandbox, repo, workdir)
            imports.join(timeout=30)
            try:
                front = webhook.start_front(sandbox, demo, signing)
            except Exception as error:
                raise DemoError(f"the chat front could not start: {error}") from error
        state = {**state_of(sandbox, demo, signing), **webhook.state_entries(front)}
        return Running(sandbox, demo, front, state, workdir)
    except BaseException:
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def run(
    state_file: Path | None, with_demo: bool, smoke: bool, slack_rate_scale: float = 1.0
) -> int:
    """Run the sandbox until SIGINT/SIGTERM (or, with `smoke`, until checked); exit status."""
    if not math.isfinite(slack_rate_scale):
        print(
            f"sandbox: --slack-rate-scale must be a number (1: Slack's limits, 0: none), "
            f"got {slack_rate_scale}",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        running = start(with_demo, slack_rate_scale=slack_rate_scale)
    except DemoError as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 1
    try:
        if state_file is not None:
            write_atomically(state_file, json.dumps(running.state, indent=2) + "\n")
        _announce(running, time.monotonic() - started, state_file)
        if smoke:
            return _smoke(running)
        stop.wait()
        print("sandbox: stopping", file=sys.stderr)
        return 0
    finally:
        running.close()
        if state_file is not None:
            state_file.unlink(missing_ok=True)


def _isolation(sandbox: Sandbox) -> str:
    """How revisions and job tasks run: in namespaces of their own, or why not."""
    reason = sandbox.network_isolation
    if reason is None:
        return "namespaces: each has its own network (PORT is its container port)"
    return f"host network, PORT remapped: {reason}"


def _announce(running: Running, elapsed: float, state_file: Path | None) -> None:
    sandbox, demo, front = running.sandbox, running.demo, running.front
    lines = [
        f"sandbox ready in {elapsed:.1f} s",
        f"  Google APIs (gRPC)  DEPLOYER_GCP_EMULATOR_HOST={sandbox.grpc_address}",
        f"  Slack Web API       SLACK_API_URL={sandbox.slack_api_url}",
        f"  Slack messages      {sandbox.http.url}/_sandbox/messages",
        f"  Faults              {sandbox.http.url}/_sandbox/faults",
        f"  Traffic             POST {sandbox.http.url}/_sandbox/traffic",
        f"  Slack rate limits   {sandbox.http.url}/_sandbox/rate_limits ({_scale(sandbox)})",
        f"  GitHub REST API     DEPLOYER_GITHUB_API_URL={sandbox.github_api_url}",
        f"  GitHub calls        {sandbox.http.url}/_sandbox/github",
        f"  Cloud Storage       STORAGE_EMULATOR_HOST={sandbox.storage_url}",
        f"  Metadata server     GCE_METADATA_HOST={sandbox.metadata_address} "
        f"GCE_METADATA_IP={sandbox.metadata_address}",
        f"  Containers          {_isolation(sandbox)}",
    ]
    if demo is not None:
        lines += [
            f"  Prod service        {demo.service} in {demo.project}/{demo.region}: {demo.service_uri}",
            f"                      revision {demo.revision}, commit {demo.commit[:12]}",
            f"  Staging service     {demo.staging_service}: nothing yet (`/deploy staging`)",
            f"  Slack people        {demo.slack_user} deploys; {demo.slack_approver} approves prod",
            f"  Config              DEPLOYER_CONFIG={demo.config.path}",
            f"  Store               DEPLOYER_STORE={demo.store}",
        ]
    if front is not None:
        lines += [
            f"  Webhooks            {front.url}/slack/events  {front.url}/github/webhook",
            f"  Worker job          DEPLOYER_DISPATCH={front.job}",
        ]
    if state_file is not None:
        lines.append(f"  State file          {state_file}")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _scale(sandbox: Sandbox) -> str:
    limits = sandbox.http.rate_limits
    if not limits.enforced:
        return "off"
    return "Slack's own" if limits.scale == 1 else f"Slack's, {limits.scale:g}x faster"


def _front_problems(url: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as answer:
            if answer.status == 200:
                return []
            return [f"GET {url}/healthz answered {answer.status}"]
    except OSError as error:
        return [f"GET {url}/healthz failed: {error}"]


def _smoke(running: Running) -> int:
    demo = running.demo
    if demo is None:
        print("sandbox smoke check: nothing to check without the demo", file=sys.stderr)
        return 0
    problems = smoke_check(demo)
    if running.front is not None:
        problems += _front_problems(running.front.url)
    for problem in problems:
        print(f"sandbox smoke check: {problem}", file=sys.stderr)
    if not problems:
        print(
            f"sandbox smoke check passed: {demo.service_uri}/health is healthy "
            f"and reports commit {demo.commit[:12]} on {demo.revision}",
            file=sys.stderr,
        )
    return 1 if problems else 0
