"""Deploys whose process is killed mid-run, as a terminal or a worker would be.

killed_deploy(world, "promote.step1")   runs `deployer deploy prod` in a child process
                                        that SIGKILLs itself at that point
                                        (deployer/pipeline/failpoints.py); the record
                                        it left behind
wait_lease_out(world)                   until the dead run's lease has run out
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from deployer.adapters.google_clients import EMULATOR_HOST_ENV
from deployer.pipeline.failpoints import KILL_AT
from deployer.pipeline.record import DeployRecord
from tests.engine_world import ENVIRONMENT, World

LEASE = 1.0  # seconds: short, so a dead run's lease runs out quickly


def run_env(world: World, **extra: str) -> dict[str, str]:
    """The environment a `deployer` child process of the world runs with."""
    return {
        **os.environ,
        "DEPLOYER_CONFIG": str(world.config_path),
        "DEPLOYER_STORE": world.store_url,
        EMULATOR_HOST_ENV: world.sandbox.grpc_address,
        **extra,
    }


def killed_deploy(world: World, kill_at: str, repo_root: Path, *args: str) -> DeployRecord:
    """`deployer deploy prod ARGS` killed at `kill_at`; the record it left."""
    world.reconfigure(deployer={"lease": LEASE})
    done = subprocess.run(
        [sys.executable, "-m", "deployer.cli", "deploy", ENVIRONMENT, *args],
        env=run_env(world, **{KILL_AT: kill_at}),
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -9, f"not killed at {kill_at}:\n{done.stdout}\n{done.stderr}"
    record = world.store().history(ENVIRONMENT, 1)[0]
    assert not record.state.finished
    world.seen.append(done.stdout + done.stderr)
    return record


def wait_lease_out(world: World, timeout: float = 10.0) -> None:
    """Until no deploy lock of the world's environment has a live lease."""
    deadline = time.monotonic() + timeout
    while any(
        lock.kind == "deploy" and not lock.expired(time.time())
        for lock in world.store().locks(ENVIRONMENT)
    ):
        assert time.monotonic() < deadline, "the dead run's lease never ran out"
        time.sleep(0.05)
