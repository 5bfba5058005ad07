"""Figures 3 and 4: a worker's death to the resumed work, and lock latency (see reliability.py).

Figure 3 deploys the demo's `prod` without its approval and deploy window
(`reliability_common.unattended`, which also drops `promote_from`: a `deployer deploy
prod` builds either way): with the approval, `promote.step1` would come only after a
person's vote, and the killed worker would leave a parked deploy, not a lost one.
Both runs report to the sandbox's GitHub (`[github]`, `DEPLOYER_GITHUB_API_URL`), as
the demo's deploys do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deployer_sandbox.harness import seed as demo
from deployer_sandbox.harness.sandbox import Sandbox
from figures import summary
from reliability_common import (
    DEPLOY_TIMEOUT,
    RESUME_TARGET_LEASES,
    ROOT,
    EmulatorUnavailable,
    running_emulator,
    signing,
    unattended,
    write_config,
)

from deployer.adapters.google_clients import EMULATOR_HOST_ENV
from deployer.config_github import API_URL_ENV
from deployer.engine import Engine, default_platform
from deployer.front.context import front_context
from deployer.front.settings import FrontSettings
from deployer.front.sweep import Sweeper, SweepTimer
from deployer.pipeline.failpoints import KILL_AT
from deployer.pipeline.lease import DEPLOY
from deployer.pipeline.record import DeployRecord, Lock, State
from deployer.store import open_store
from deployer.store.protocol import Store

# --- 3. a worker's death to the resumed work ---------------------------------------------


def _wait_finished(store: Store, deploy_id: str) -> DeployRecord:
    deadline = time.monotonic() + DEPLOY_TIMEOUT
    while time.monotonic() < deadline:
        record = store.get(deploy_id)
        if record is not None and record.state.finished:
            return record
        time.sleep(0.05)
    raise SystemExit(f"deploy {deploy_id} was not resumed to its end")


def worker_death(
    sandbox: Sandbox, seeded: demo.Demo, workdir: Path, trials: int, lease: float
) -> dict:
    """Figure 3 (see the module docstring)."""
    host = sandbox.grpc_address
    leased = seeded.config.deployer.model_copy(update={"lease": lease})
    prod = unattended(seeded.config.environments["prod"])
    environments = {**seeded.config.environments, "prod": prod}
    config = write_config(
        seeded.config.model_copy(update={"deployer": leased, "environments": environments}),
        workdir / "death.toml",
    )
    store_url = f"sqlite:///{workdir / 'death.db'}"
    store = open_store(store_url)
    secret, token = signing()
    settings = FrontSettings(secret, token, None, sandbox.slack_api_url, "inline")
    engine = Engine(config, default_platform(host), store)
    context = front_context(settings, engine, dispatch="inline")
    # The resumed run is dispatched inline, in this process: it reads GitHub's URL here.
    github_before = os.environ.get(API_URL_ENV)
    os.environ[API_URL_ENV] = sandbox.github_api_url
    timer = SweepTimer(Sweeper(context), lease / 2)
    env = {
        **os.environ,
        "DEPLOYER_CONFIG": str(config.path),
        "DEPLOYER_STORE": store_url,
        EMULATOR_HOST_ENV: host,
        KILL_AT: "promote.step1",
    }
    to_resumed, to_end, lease_left = [], [], []
    try:
        for _ in range(trials):
            child = subprocess.Popen(
                [sys.executable, "-m", "deployer.cli", "deploy", "prod"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            output, _ = child.communicate(timeout=DEPLOY_TIMEOUT)
            died = time.time()
            if child.returncode != -signal.SIGKILL:
                raise SystemExit(f"deployer deploy was not killed at promote.step1:\n{output}")
            killed = store.history("prod", 1)[0]
            (held,) = [lock for lock in store.locks("prod") if lock.holder == killed.id]
            done = _wait_finished(store, killed.id)
            if done.state != State.SUCCEEDED or done.attempt != 2:
                raise SystemExit(f"{done.id} ended {done.state} after {done.attempt} runs")
            resumed = next(n for n in done.notes if n.text.startswith("worker lost during"))
            to_resumed.append(resumed.at - died)
            to_end.append(done.updated_at - died)
            lease_left.append(held.lease_until - died)
    finally:
        timer.stop()
        close = getattr(context.dispatcher, "close", None)
        if callable(close):
            close()
        if github_before is None:
            os.environ.pop(API_URL_ENV, None)
        else:
            os.environ[API_URL_ENV] = github_before
    worst = max(to_resumed) / lease
    return {
        "lease_s": lease,
        "sweep_interval_s": lease / 2,
        "death_to_resumed_s": summary(to_resumed),
        "death_to_end_s": summary(to_end),
        "death_to_resumed_leases": summary(to_resumed, 1 / lease),
        "death_to_end_leases": summary(to_end, 1 / lease),
        # Where the time goes: the dead run's lease still running, then sweep and resume.
        "lease_left_at_death_s": summary(lease_left),
        "lease_out_to_resumed_s": summary(
            [resumed - left for resumed, left in zip(to_resumed, lease_left, strict=True)]
        ),
        "target_leases": RESUME_TARGET_LEASES,
        "met": worst <= RESUME_TARGET_LEASES,
    }


# --- 4. lock acquire, renew and release ---------------------------------------------------


def lock_latency(store: Store, pairs: int) -> dict:
    """Milliseconds of acquire, renew and release, each call timed apart, `pairs` times."""
    owner = f"bench:{os.getpid()}"
    timings: dict[str, list[float]] = {"acquire": [], "renew": [], "release": []}
    warm = 10
    for index in range(warm + pairs):
        holder, now = f"d-bench-{index}", time.time()
        wanted = Lock("bench", DEPLOY, holder, "deploy", now, owner, now + 60)
        started = time.perf_counter()
        held = store.acquire_lock(wanted, now)
        acquired = time.perf_counter()
        renewed = store.renew_lock("bench", DEPLOY, holder, owner, now + 120)
        kept = time.perf_counter()
        released = store.release_lock("bench", DEPLOY, holder, owner)
        ended = time.perf_counter()
        if held.owner != owner or not renewed or not released:
            raise SystemExit(f"lock #{index}: acquire, renew or release was refused")
        if index >= warm:
            timings["acquire"].append(acquired - started)
            timings["renew"].append(kept - acquired)
            timings["release"].append(ended - kept)
    return {name: summary(samples, 1000) for name, samples in timings.items()}


@contextmanager
def firestore_emulator(workdir: Path) -> Iterator[str | None]:
    """The emulator's host:port while it runs; None (and why, printed) when it cannot start."""
    try:
        with running_emulator(workdir / "firestore-emulator.log") as address:
            yield address
    except EmulatorUnavailable as reason:
        print(f"Firestore skipped: {reason}")
        yield None


def locks(workdir: Path, pairs: int) -> dict:
    """Figure 4 (see the module docstring)."""
    results: dict[str, Any] = {
        "pairs": pairs,
        "sqlite_ms": lock_latency(open_store(f"sqlite:///{workdir / 'locks.db'}"), pairs),
    }
    with firestore_emulator(workdir) as address:
        if address is None:
            results["firestore_emulator_ms"] = None
            return results
        before = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = address
        try:
            store = open_store(f"firestore://bench-project/locks-{uuid.uuid4().hex[:8]}")
            results["firestore_emulator_ms"] = lock_latency(store, pairs)
        finally:
            if before is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = before
    return results
