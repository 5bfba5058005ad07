"""What the reliability figures share: where the repository is, the targets, configs as files."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

from deployer.config import Config, Environment, load_config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the signed requests of the front's tests (tests/front_requests.py)
from tests import setup_config  # noqa: E402
from tests.engine_world import toml_value  # noqa: E402
from tests.firestore_emulator import EmulatorUnavailable, running_emulator  # noqa: E402
from tests.front_requests import WireRequest, slash_command  # noqa: E402

# What the figures' modules take from the tests through here, once the path is set.
__all__ = [
    "ACK_P99_TARGET_MS",
    "CONCURRENCY_TARGET",
    "CONDITIONS",
    "DEPLOY_TIMEOUT",
    "NOOP_JOB",
    "RESUME_TARGET_LEASES",
    "RETRY_AFTER",
    "ROOT",
    "SLOW_DELTA_TARGET_MS",
    "SLOW_SLACK_MS",
    "WARMUP",
    "EmulatorUnavailable",
    "WireRequest",
    "running_emulator",
    "setup_config",
    "signing",
    "slash_command",
    "unattended",
    "write_config",
]

NOOP_JOB = "deployer-noop"
RETRY_AFTER = 8  # seconds every rate-limited Slack call is told to wait
WARMUP = 5  # requests sent before each measured series
DEPLOY_TIMEOUT = 180.0

ACK_P99_TARGET_MS = 250.0
SLOW_SLACK_MS = 1000  # every Slack call delayed so, for the slow-Slack condition
SLOW_DELTA_TARGET_MS = 50.0  # slow-Slack median - healthy median, warm and cold
CONDITIONS = ("slack_ok", "slack_429", "slack_slow")
CONCURRENCY_TARGET = 1.5
RESUME_TARGET_LEASES = 2.0


# --- shared: configs as files -----------------------------------------------------------


def write_config(config: Config, path: Path) -> Config:
    """Write `config` as TOML at `path` (for processes that read DEPLOYER_CONFIG); it, loaded."""
    lines = []
    dumped = config.model_dump(mode="json", exclude_none=True)
    if config.github is not None:  # dumped as a table, its unset project dropped: as written
        dumped["github"]["token_secret"] = str(config.github.token_secret)
    for section, body in dumped.items():
        tables = body.items() if section in ("services", "environments") else [(None, body)]
        for name, table in tables:
            lines.append(f"[{section}]" if name is None else f"[{section}.{json.dumps(name)}]")
            lines += [f"{json.dumps(key)} = {toml_value(value)}" for key, value in table.items()]
            lines.append("")
    path.write_text("\n".join(lines))
    return load_config(path)


def unattended(environment: Environment) -> Environment:
    """`environment` deploying straight through, as the figures measure it: no approval
    (it would park each deploy for a person), no deploy window (a run must work any day),
    and built from a commit, not promoted (`promote_from` names an environment that copies
    of it, under other names, may not have)."""
    return environment.model_copy(update={"approval": None, "windows": None, "promote_from": None})


def signing() -> tuple[str, str]:
    """A fresh Slack signing secret and a bot token the sandbox's sink accepts."""
    return secrets.token_hex(16), f"xoxb-bench-{secrets.token_hex(8)}"
