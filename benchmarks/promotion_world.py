"""The world the promotion and approval benchmarks share: a sandbox, prod and staging.

    sandbox    in this process, Slack's rate limits off (no figure here is about them),
               its metadata server handing this process ID tokens for the probes
    world      tests/engine_world.py: a git repository of service/, a project with its
               secrets, deployer.toml, a SQLite store, prod serving its first deploy;
               `use_health` puts back the deployer's default health check (the tests'
               world probes faster)
    staging    tests/test_environment_targets.py `add_staging`: the same service in a
               project and region of its own; prod gets `promote_from = "staging"` (and
               an `[approval]` table when asked), then staging is deployed once

The figures' modules take the tests' world and front builders from here, once the path
is set.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from deployer_sandbox.harness.sandbox import Sandbox

from deployer.adapters.google_clients import EMULATOR_HOST_ENV
from deployer.pipeline.events import Listener, ignore
from deployer.pipeline.record import DeployRecord, State

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' world builders (tests/engine_world.py)
from tests.engine_world import (  # noqa: E402
    ENVIRONMENT,
    World,
    close_world,
    make_world,
    thread_sent,
)
from tests.front_requests import Answer, WireRequest, block_action  # noqa: E402
from tests.front_world import FrontWorld, in_process, make_front, served, unique  # noqa: E402
from tests.test_environment_targets import STAGING, add_staging  # noqa: E402

__all__ = [
    "ENVIRONMENT",
    "HEALTH_CHECKS",
    "ROOT",
    "STAGING",
    "Answer",
    "FrontWorld",
    "WireRequest",
    "World",
    "block_action",
    "close_world",
    "deploy_staging",
    "in_process",
    "make_front",
    "make_world",
    "promote_from_staging",
    "quiet_logs",
    "served",
    "start_sandbox",
    "thread_sent",
    "unique",
    "use_health",
]


# The candidate's health check: the deployer's defaults (as deployer.example.toml writes
# them: 3 good answers in a row, 0.5 s apart), or the tests' world's (2, 0.1 s apart).
HEALTH_CHECKS: dict[str, dict[str, Any]] = {
    "default": {"consecutive": None, "failures": None, "interval": None, "request_timeout": None},
    "fast": {},
}


def use_health(world: World, choice: str) -> None:
    """The service's health check as `choice` (a key of HEALTH_CHECKS) says."""
    world.reconfigure(service={"health": HEALTH_CHECKS[choice]})


def quiet_logs(workdir: Path) -> None:
    """The deployer's warnings go to a file, not between the figures (again after main.py,
    which points them at stderr when it is loaded)."""
    logging.basicConfig(filename=workdir / "deployer.log", level=logging.WARNING, force=True)


def start_sandbox(workdir: Path) -> Sandbox:
    """A sandbox in this process, the deployer pointed at it."""
    sandbox = Sandbox(workdir / "cloud", slack_rate_scale=0).start()
    sandbox.metadata.serve_this_process()  # probes get ID tokens from it
    os.environ[EMULATOR_HOST_ENV] = sandbox.grpc_address
    return sandbox


def deploy_staging(world: World, listener: Listener = ignore) -> DeployRecord:
    """Deploy staging at the repository's HEAD, to its end; its record."""
    engine = world.engine
    record = engine.deploy(engine.new_deploy(STAGING, None, "cli:bench"), listener)
    if record.state != State.SUCCEEDED:
        raise SystemExit(f"staging's deploy {record.id} ended {record.state}: {record.error}")
    return record


def promote_from_staging(world: World, approval: dict[str, Any] | None = None) -> DeployRecord:
    """Add staging (a copy of prod's table as it is now), make prod promote from it, with
    `approval` as prod's `[approval]` table when given; deploy staging once. Its record."""
    add_staging(world)
    world.reconfigure(
        environment={"promote_from": STAGING, **({"approval": approval} if approval else {})}
    )
    return deploy_staging(world)
