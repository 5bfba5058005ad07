"""Figure 2: twenty services deploying at once against one alone (see reliability.py).

Each service's environment is a copy of the demo's `prod` without its approval, deploy
window and `promote_from` (`reliability_common.unattended`): every deploy runs from
build to verify with no person in the loop, as the figure has always measured. Every
deploy builds anew (`--rebuild`): a reused build's time is not this deploy's platform
time, and the figure counts a build in each deploy.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

from deployer_sandbox.harness import seed as demo
from deployer_sandbox.harness.sandbox import Sandbox
from figures import summary
from google.cloud import run_v2
from google.cloud.devtools import cloudbuild_v1
from reliability_common import (
    CONCURRENCY_TARGET,
    DEPLOY_TIMEOUT,
    unattended,
)

from deployer.adapters.google_clients import google_client
from deployer.config import Config
from deployer.engine import Engine, default_platform
from deployer.pipeline.events import ignore
from deployer.pipeline.record import DeployRecord, Stage, State
from deployer.store import open_store
from deployer.store.protocol import Store

# --- 2. twenty services deploying at once ------------------------------------------------


def fleet_config(base: Config, count: int) -> Config:
    """`count` services like the demo's `backend` (own Cloud Run service and image), one
    environment each, named svc-01 ..."""
    backend, prod = base.services["backend"], unattended(base.environments["prod"])
    registry = backend.image.rsplit("/", 1)[0]
    services, environments = {}, {}
    for number in range(1, count + 1):
        name = f"svc-{number:02d}"
        services[name] = backend.model_copy(
            update={
                "service": name,
                "image": f"{registry}/{name}",
                "substitutions": {**backend.substitutions, "_IMAGE_NAME": name},
            }
        )
        environments[name] = prod.model_copy(update={"service": name})
    return base.model_copy(
        update={"services": services, "environments": environments, "releases": None}
    )


def configured_waits(config: Config, environment: str) -> float:
    """Seconds the config itself asks a deploy to wait: the health gate before traffic, one
    more gate per partial rollout step, and each such step's soak (`step_wait`)."""
    health = config.service_of(environment).health
    rollout = config.environment(environment).rollout
    gates = sum(1 for percent in rollout.steps if percent < 100)
    return (1 + gates) * (health.consecutive - 1) * health.interval + gates * rollout.step_wait


class PlatformTimes:
    """Reads back from the sandbox how long the platform itself took for a deploy."""

    def __init__(self, host: str, config: Config) -> None:
        self.config = config
        self.builds: Any = google_client(cloudbuild_v1.CloudBuildClient, host)
        self.revisions: Any = google_client(run_v2.RevisionsClient, host)

    def seconds(self, record: DeployRecord) -> tuple[float, float]:
        """(the build's, the candidate revision's) seconds."""
        service = self.config.service_of(record.environment)
        where = f"projects/{service.project}/locations/{service.region}"
        build = self.builds.get_build(name=f"{where}/builds/{record.build_id}")
        revision = self.revisions.get_revision(
            name=f"{where}/services/{service.service}/revisions/{record.candidate_revision}"
        )
        ready = next(c for c in revision.conditions if c.type_ == "Ready")
        return (
            build.finish_time.timestamp() - build.create_time.timestamp(),
            ready.last_transition_time.timestamp() - revision.create_time.timestamp(),
        )


def overhead(times: PlatformTimes, outcome: Outcome) -> dict[str, float]:
    """The deploy's overhead, and where it went: each part is a stage's time minus what the
    platform or the config account for in it; `in_store` cuts across them."""
    record, wall, (in_store, store_calls) = outcome
    if record.state != State.SUCCEEDED:
        raise SystemExit(f"deploy {record.id} of {record.environment} ended {record.state}")
    build, revision = times.seconds(record)
    waits = configured_waits(times.config, record.environment)
    health = times.config.service_of(record.environment).health
    gate = (health.consecutive - 1) * health.interval  # the health stage's own wait
    stages = dict.fromkeys(Stage, 0.0)
    for result in record.stages:
        stages[result.stage] += result.duration
    return {
        "wall": wall,
        "platform": build + revision,
        "overhead": wall - build - revision - waits,
        "preflight": stages[Stage.PREFLIGHT],
        "build": stages[Stage.BUILD] - build,
        "deploy_ready": stages[Stage.DEPLOY] + stages[Stage.READY] - revision,
        "health": stages[Stage.HEALTH] - gate,
        "promote_verify": stages[Stage.PROMOTE] + stages[Stage.VERIFY] - (waits - gate),
        "between_stages": wall - sum(stages.values()),
        "in_store": in_store,
        "store_calls": store_calls,
    }


class TimedStore:
    """The store, keeping how long each thread spent in it and how many calls it made:
    a deploy runs on one thread, so its own store time can be told apart."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._spent: dict[int, tuple[float, int]] = {}
        self._lock = threading.Lock()
        self.calls: dict[str, list[float]] = {}  # seconds of each call, by method

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                with self._lock:
                    seconds, calls = self._spent.get(threading.get_ident(), (0.0, 0))
                    self._spent[threading.get_ident()] = (seconds + spent, calls + 1)
                    self.calls.setdefault(name, []).append(spent)

        return timed

    def take(self) -> tuple[float, int]:
        """Seconds and calls of this thread since its last `take`."""
        with self._lock:
            return self._spent.pop(threading.get_ident(), (0.0, 0))


class Load:
    """How busy the CPUs were over the spans measured (`with load:`, as often as wanted): the
    machine's share (all cores, /proc/stat), and the cores this process used (the deployer's
    threads and the in-process sandbox; its children, the revisions and builds, not)."""

    def __init__(self) -> None:
        self._jiffies_total = self._jiffies_idle = 0
        self._cpu = self._wall = 0.0

    @staticmethod
    def _now() -> tuple[int, int, float, float]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        # total, idle + iowait, this process's CPU seconds, wall seconds
        return sum(fields), fields[3] + fields[4], time.process_time(), time.perf_counter()

    def __enter__(self) -> Load:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end, start = self._now(), self._start
        self._jiffies_total += end[0] - start[0]
        self._jiffies_idle += end[1] - start[1]
        self._cpu += end[2] - start[2]
        self._wall += end[3] - start[3]

    @property
    def machine_busy(self) -> float:
        return round(1 - self._jiffies_idle / max(1, self._jiffies_total), 3)

    @property
    def process_cores(self) -> float:
        return round(self._cpu / max(1e-9, self._wall), 3)


Outcome = tuple[DeployRecord, float, tuple[float, int]]  # record, wall s, (store s, calls)


def deploy_all(engine: Engine, store: TimedStore, environments: list[str]) -> list[Outcome]:
    """Deploy every environment at once, one thread each; how each went."""
    barrier = threading.Barrier(len(environments))
    done: list[Outcome | BaseException | None] = [None] * len(environments)

    def one(index: int) -> None:
        try:
            record = engine.new_deploy(environments[index], "HEAD", "bench")
            record.rebuild = True
            barrier.wait()
            store.take()
            started = time.perf_counter()
            finished = engine.deploy(record, ignore)
            done[index] = (finished, time.perf_counter() - started, store.take())
        except BaseException as error:  # reported below, on the main thread
            done[index] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(environments))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEPLOY_TIMEOUT)
    outcomes: list[Outcome] = []
    for environment, outcome in zip(environments, done, strict=True):
        if not isinstance(outcome, tuple):
            raise SystemExit(f"the deploy of {environment} did not end: {outcome!r}")
        outcomes.append(outcome)
    return outcomes


OVERHEAD_PARTS = (
    "preflight",
    "build",
    "deploy_ready",
    "health",
    "promote_verify",
    "between_stages",
)  # `in_store` is not one of them: the store is called from every stage and between them


def _medians(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(row[key] for row in rows), 4) for key in rows[0]}


def concurrent_deploys(
    sandbox: Sandbox, seeded: demo.Demo, workdir: Path, count: int, alone: int, rounds: int
) -> dict:
    """Figure 2 (see the module docstring)."""
    host = sandbox.grpc_address
    config = fleet_config(seeded.config, count)
    store = TimedStore(open_store(f"sqlite:///{workdir / 'fleet.db'}"))
    engine = Engine(config, default_platform(host), store)  # type: ignore[arg-type]  (a proxy)
    reader = PlatformTimes(host, config)
    environments = sorted(config.environments)
    deploy_all(engine, store, environments)  # creates every service: later deploys are updates
    store.calls.clear()
    # Alone and all at once take turns, so that both meet the same neighbours on the machine.
    alone_rows, crowd_rows, alone_load, crowd_load = [], [], Load(), Load()
    crowd_calls: dict[str, list[float]] = {}
    for _ in range(rounds):
        for _ in range(alone):
            with alone_load:
                outcomes = deploy_all(engine, store, environments[:1])
            alone_rows += [overhead(reader, outcome) for outcome in outcomes]
        store.calls.clear()
        with crowd_load:
            outcomes = deploy_all(engine, store, environments)
        crowd_rows += [overhead(reader, outcome) for outcome in outcomes]
        for name, seconds in store.calls.items():  # the crowd's calls, heartbeats included
            crowd_calls.setdefault(name, []).extend(seconds)
    alone_overhead = [row["overhead"] for row in alone_rows]
    crowd_overhead = [row["overhead"] for row in crowd_rows]
    ratio = statistics.median(crowd_overhead) / statistics.median(alone_overhead)
    parts_alone, parts_crowd = _medians(alone_rows), _medians(crowd_rows)
    growth = {part: round(parts_crowd[part] - parts_alone[part], 4) for part in OVERHEAD_PARTS}
    return {
        "services": count,
        "configured_waits_s": configured_waits(config, environments[0]),
        "alone_overhead_s": summary(alone_overhead),
        "concurrent_overhead_s": summary(crowd_overhead),
        "ratio_median": round(ratio, 2),
        "target_ratio": CONCURRENCY_TARGET,
        "met": ratio <= CONCURRENCY_TARGET,
        "alone_wall_s": summary([row["wall"] for row in alone_rows]),
        "concurrent_wall_s": summary([row["wall"] for row in crowd_rows]),
        "alone_platform_s": summary([row["platform"] for row in alone_rows]),
        "concurrent_platform_s": summary([row["platform"] for row in crowd_rows]),
        # Medians of each part of the overhead, to see what grows in the crowd.
        "overhead_parts_alone_s": parts_alone,
        "overhead_parts_concurrent_s": parts_crowd,
        "overhead_growth_s": growth,
        "largest_growth": max(growth, key=lambda part: growth[part]),
        "concurrent_store_calls_ms": {
            name: summary(seconds, 1000) for name, seconds in sorted(crowd_calls.items())
        },
        "machine_cpu_busy": {
            "alone": alone_load.machine_busy,
            "concurrent": crowd_load.machine_busy,
        },
        "bench_process_cores": {
            "alone": alone_load.process_cores,
            "concurrent": crowd_load.process_cores,
        },
    }
