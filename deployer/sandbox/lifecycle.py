"""`deployer sandbox`: start the local cloud, seed the demo, publish its state, run until stopped."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from deployer.sandbox import demo as demo_seed
from deployer.sandbox.demo import Demo, DemoError
from deployer.sandbox.server import Sandbox


def state_of(sandbox: Sandbox, demo: Demo | None, signing: dict[str, str]) -> dict[str, Any]:
    """The state file's JSON (PRODUCT.md): where everything listens and who the demo is."""
    state: dict[str, Any] = {
        "gcp": sandbox.grpc_address,
        "slack_api": sandbox.slack_api_url,
        "control": f"{sandbox.http.url}/_sandbox/",
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
                    "github_repository": demo.github_repository,
                    "service": demo.service,
                    "service_uri": demo.service_uri,
                    "revision": demo.revision,
                    "commit": demo.commit,
                    "image": demo.image,
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


def run(state_file: Path | None, with_demo: bool, smoke: bool) -> int:
    """Run the sandbox until SIGINT/SIGTERM (or, with `smoke`, until checked); exit status."""
    started = time.monotonic()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    workdir = Path(tempfile.mkdtemp(prefix="deployer-sandbox-"))
    sandbox = Sandbox(workdir / "cloud").start()
    try:
        demo = None
        if with_demo:
            repo = demo_seed.repository_root(Path.cwd())
            demo = demo_seed.seed_demo(sandbox, repo, workdir)
        signing = {
            "slack_signing_secret": secrets.token_hex(16),
            "github_webhook_secret": secrets.token_hex(16),
        }
        state = state_of(sandbox, demo, signing)
        if state_file is not None:
            write_atomically(state_file, json.dumps(state, indent=2) + "\n")
        _announce(sandbox, demo, time.monotonic() - started, state_file)
        if smoke:
            return _smoke(demo)
        stop.wait()
        print("sandbox: stopping", file=sys.stderr)
        return 0
    except DemoError as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 1
    finally:
        sandbox.stop()
        if state_file is not None:
            state_file.unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _announce(sandbox: Sandbox, demo: Demo | None, elapsed: float, state_file: Path | None) -> None:
    lines = [
        f"sandbox ready in {elapsed:.1f} s",
        f"  Google APIs (gRPC)  DEPLOYER_GCP_EMULATOR_HOST={sandbox.grpc_address}",
        f"  Slack Web API       SLACK_API_URL={sandbox.slack_api_url}",
        f"  Slack messages      {sandbox.http.url}/_sandbox/messages",
        f"  Faults              {sandbox.http.url}/_sandbox/faults",
    ]
    if demo is not None:
        lines += [
            f"  Demo service        {demo.service} in {demo.project}/{demo.region}: {demo.service_uri}",
            f"                      revision {demo.revision}, commit {demo.commit[:12]}",
            f"  Config              DEPLOYER_CONFIG={demo.config.path}",
            f"  Store               DEPLOYER_STORE={demo.store}",
        ]
    if state_file is not None:
        lines.append(f"  State file          {state_file}")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _smoke(demo: Demo | None) -> int:
    if demo is None:
        print("sandbox smoke check: nothing to check without the demo", file=sys.stderr)
        return 0
    problems = smoke_check(demo)
    for problem in problems:
        print(f"sandbox smoke check: {problem}", file=sys.stderr)
    if not problems:
        print(
            f"sandbox smoke check passed: {demo.service_uri}/health is healthy "
            f"and reports commit {demo.commit[:12]} on {demo.revision}",
            file=sys.stderr,
        )
    return 1 if problems else 0
