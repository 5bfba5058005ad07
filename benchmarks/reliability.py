"""How the deployer holds up when things go wrong: Slack rate-limiting, a crowd, a dead worker.

    uv run python benchmarks/reliability.py [--quick] [--requests N] [--cold N]
                                            [--services N] [--alone N] [--rounds N]
                                            [--trials N] [--lease S] [--pairs N]

One in-process sandbox seeded with the demo (deployer.example.toml) serves
figures 1 to 3; figure 4 needs no sandbox. Times are wall clock on a shared,
noisy machine: medians and tails, and ratios between conditions.

1. slash_ack_ms        signed `/deploy ENV` over loopback HTTP to the front (werkzeug,
                       as `serve()` runs it): request sent -> HTTP answer, for requests
                       ACCEPTED as new deploys (one generated environment per request),
                       dispatched to a sandbox Cloud Run job whose container is `true`,
                       so no real deploy runs behind the front. Twice: Slack healthy,
                       every Slack Web API call answering 429 `Retry-After: 8`, and
                       every Slack call delayed 1,000 ms (`slack_latency`).
                       `cold`: the first request of a fresh front process that builds its
                       context (config, store, clients, bolt) on that request, as a new
                       Cloud Functions instance does. The sandbox's Slack enforces no
                       limits of its own (the healthy baseline meets no 429), and the
                       front's sweep is off (production runs it elsewhere).
                       Targets: p99 <= 250 ms under the 429s; with Slack slow, the
                       median within 5 % of the delay (50 ms) of the healthy one, warm
                       and cold: one Slack call in the request would add a whole second.
2. concurrent_deploys  the deployer's own overhead per deploy = wall time - platform time
                       (the build, create_time -> finish_time; the candidate revision,
                       create_time -> Ready) - configured waits (health gates, rollout
                       step waits), for one of N services deploying alone and for N
                       deploying at once on threads of this process (one Engine, one
                       SQLite store), in rounds that take turns. Also where it went: per
                       stage, inside store calls, and how busy the CPUs were.
                       Target: median concurrent / median alone <= 1.5.
3. worker_death_s      a `deployer deploy prod` process SIGKILLed at `promote.step1`
                       (lease S seconds), a SweepTimer sweeping every S/2 here: from the
                       process's exit to the resumed run's "worker lost during ..." note,
                       and to the deploy's end. Target: death -> resumed <= 2 leases.
4. lock_ms             acquire, renew (the heartbeat) and release of a leased deploy
                       lock, each timed apart, on SQLite and on the Firestore emulator
                       (skipped, with a line saying so, without gcloud and java).

Prints a table per figure and saves everything to benchmarks/results/reliability.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from deployer_sandbox.harness import chat_front as webhook
from deployer_sandbox.harness import seed as demo
from deployer_sandbox.harness.sandbox import Sandbox
from figures import save, summary
from google.cloud import run_v2
from google.cloud.devtools import cloudbuild_v1

from deployer.adapters.google_clients import EMULATOR_HOST_ENV, google_client
from deployer.config import Config, load_config
from deployer.engine import Engine, default_platform
from deployer.front.context import front_context
from deployer.front.settings import FrontSettings
from deployer.front.sweep import Sweeper, SweepTimer
from deployer.pipeline.events import ignore
from deployer.pipeline.failpoints import KILL_AT
from deployer.pipeline.lease import DEPLOY
from deployer.pipeline.record import DeployRecord, Lock, Stage, State
from deployer.store import open_store
from deployer.store.protocol import Store

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the signed requests of the front's tests (tests/front_requests.py)
from tests.engine_world import toml_value  # noqa: E402
from tests.firestore_emulator import EmulatorUnavailable, running_emulator  # noqa: E402
from tests.front_requests import WireRequest, slash_command  # noqa: E402

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
    for section, body in config.model_dump(mode="json", exclude_none=True).items():
        tables = body.items() if section in ("services", "environments") else [(None, body)]
        for name, table in tables:
            lines.append(f"[{section}]" if name is None else f"[{section}.{json.dumps(name)}]")
            lines += [f"{json.dumps(key)} = {toml_value(value)}" for key, value in table.items()]
            lines.append("")
    path.write_text("\n".join(lines))
    return load_config(path)


def signing() -> tuple[str, str]:
    """A fresh Slack signing secret and a bot token the sandbox's sink accepts."""
    return secrets.token_hex(16), f"xoxb-bench-{secrets.token_hex(8)}"


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


def _cold_child() -> None:
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
        [sys.executable, __file__, "--cold-child"],
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
    prod = seeded.config.environments["prod"]
    environments = {
        "prod": prod,
        **dict.fromkeys((n for group in names.values() for n in group), prod),
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


# --- 2. twenty services deploying at once ------------------------------------------------


def fleet_config(base: Config, count: int) -> Config:
    """`count` services like the demo's `backend` (own Cloud Run service and image), one
    environment each, named svc-01 ..."""
    backend, prod = base.services["backend"], base.environments["prod"]
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
    config = write_config(
        seeded.config.model_copy(update={"deployer": leased}), workdir / "death.toml"
    )
    store_url = f"sqlite:///{workdir / 'death.db'}"
    store = open_store(store_url)
    secret, token = signing()
    settings = FrontSettings(secret, token, None, sandbox.slack_api_url, "inline")
    engine = Engine(config, default_platform(host), store)
    context = front_context(settings, engine, dispatch="inline")
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


# --- the table ----------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def table(results: dict[str, Any]) -> None:
    """The figures in a few lines each."""
    machine = results["machine"]
    print(
        f"\nmachine: {machine['cpus']} CPUs, {machine['cpu_busy_before_start']:.0%} busy with "
        f"others' work before the run; load average {machine['loadavg_1m_start']} -> "
        f"{machine['loadavg_1m_end']}"
    )
    ack = results["slash_ack_ms"]
    print(f"1. /deploy ENV accepted, ms (every Slack call 429 Retry-After {RETRY_AFTER})")
    print(f"   {'':<12}{'p50':>8}{'p99':>8}{'cold p50':>10}{'n':>5}")
    for condition in CONDITIONS:
        row, cold = ack[condition]["accepted_ms"], ack[condition]["cold_first_request_ms"]
        print(
            f"   {condition:<12}{row['median']:>8.1f}{row['p99']:>8.1f}"
            f"{cold['median']:>10.1f}{row['n']:>5}"
        )
    ratio = ack["ratio_429_over_ok"]
    print(
        f"   429/ok: p50 x{ratio['median']}, p99 x{ratio['p99']}; "
        f"target p99 <= {ACK_P99_TARGET_MS:g} ms: {_verdict(ack['met'])}"
    )
    slow = ack["slow_minus_ok_ms"]
    print(
        f"   slow ({SLOW_SLACK_MS} ms a call) - ok: p50 {slow['accepted_ms']:+.1f} ms, cold p50 "
        f"{slow['cold_first_request_ms']:+.1f} ms; target <= {SLOW_DELTA_TARGET_MS:g} ms: "
        f"{_verdict(ack['slow_met'])}"
    )

    fleet = results["concurrent_deploys"]
    alone, crowd = fleet["alone_overhead_s"], fleet["concurrent_overhead_s"]
    print(f"\n2. deployer overhead per deploy, s ({fleet['services']} services at once vs alone)")
    print(f"   alone      median {alone['median']:.3f}  p95 {alone['p95']:.3f}  n {alone['n']}")
    print(f"   concurrent median {crowd['median']:.3f}  p95 {crowd['p95']:.3f}  n {crowd['n']}")
    print(
        f"   ratio x{fleet['ratio_median']}; target <= {CONCURRENCY_TARGET}: "
        f"{_verdict(fleet['met'])}"
    )
    parts_alone, parts_crowd = fleet["overhead_parts_alone_s"], fleet["overhead_parts_concurrent_s"]
    print(
        "   parts (median s, alone -> concurrent): "
        + ", ".join(f"{p} {parts_alone[p]:.2f}->{parts_crowd[p]:.2f}" for p in OVERHEAD_PARTS)
    )
    print(
        f"   in the store (across parts): {parts_alone['in_store']:.2f}->"
        f"{parts_crowd['in_store']:.2f} s in {parts_crowd['store_calls']:.0f} calls a deploy"
    )
    calls = fleet["concurrent_store_calls_ms"]
    slowest = sorted(calls, key=lambda name: -calls[name]["p95"])[:3]
    print(
        "   store calls in the crowd, ms: "
        + ", ".join(
            f"{name} p50 {calls[name]['median']:.1f} p95 {calls[name]['p95']:.0f} "
            f"max {calls[name]['max']:.0f}"
            for name in slowest
        )
    )
    busy, cores = fleet["machine_cpu_busy"], fleet["bench_process_cores"]
    print(
        f"   CPU ({os.cpu_count()} cores) busy {busy['alone']:.0%} alone, "
        f"{busy['concurrent']:.0%} concurrent; this process (deployer + sandbox, one GIL) "
        f"used {cores['alone']:.2f} -> {cores['concurrent']:.2f} cores"
    )
    if not fleet["met"]:
        part = fleet["largest_growth"]
        in_store = parts_crowd["in_store"] - parts_alone["in_store"]
        print(
            f"   missed: +{crowd['median'] - alone['median']:.2f} s overhead a deploy, of which "
            f"+{in_store:.2f} s inside store calls (SQLite: one writer at a time); by part, "
            f"{part} grows most (+{fleet['overhead_growth_s'][part]:.2f} s); the CPUs were "
            f"{busy['concurrent']:.0%} busy"
        )

    death = results["worker_death_s"]
    resumed, end = death["death_to_resumed_s"], death["death_to_end_s"]
    leases = death["death_to_resumed_leases"]
    print(f"\n3. worker killed at promote.step1 -> resumed (lease {death['lease_s']:g} s)")
    print(
        f"   to resumed: median {resumed['median']:.2f} s ({leases['median']:.2f} leases), "
        f"max {resumed['max']:.2f} s ({leases['max']:.2f} leases)"
    )
    print(f"   to the end: median {end['median']:.2f} s, max {end['max']:.2f} s")
    print(
        f"   of which: lease left at death median {death['lease_left_at_death_s']['median']:.2f} s, "
        f"lease out -> resumed median {death['lease_out_to_resumed_s']['median']:.2f} s "
        f"(sweep every {death['sweep_interval_s']:g} s)"
    )
    print(f"   target <= {RESUME_TARGET_LEASES:g} leases: {_verdict(death['met'])}")

    lock = results["lock_ms"]
    print(f"\n4. leased deploy lock, ms ({lock['pairs']} of each)")
    for store in ("sqlite_ms", "firestore_emulator_ms"):
        if lock[store] is None:
            print(f"   {store.removesuffix('_ms'):<18} skipped")
            continue
        cells = "  ".join(
            f"{call} p50 {lock[store][call]['median']:.2f} p95 {lock[store][call]['p95']:.2f}"
            for call in ("acquire", "renew", "release")
        )
        print(f"   {store.removesuffix('_ms'):<18} {cells}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--requests", type=int, help="measured /deploy per condition (60)")
    parser.add_argument("--cold", type=int, help="fresh front processes per condition (3)")
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--alone", type=int, help="deploys of one service alone, a round (3)")
    parser.add_argument("--rounds", type=int, help="rounds: alone deploys, then all at once (3)")
    parser.add_argument("--trials", type=int, help="killed workers (5)")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--pairs", type=int, help="lock acquire+release pairs per store (200)")
    parser.add_argument("--cold-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_child:
        _cold_child()
        return
    defaults = (
        {"requests": 15, "cold": 1, "alone": 2, "rounds": 1, "trials": 2, "pairs": 50}
        if args.quick
        else {"requests": 60, "cold": 3, "alone": 3, "rounds": 3, "trials": 5, "pairs": 200}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            # Others share the machine: the load it had when this run started and ended.
            "loadavg_1m_start": round(os.getloadavg()[0], 2),
        },
    }
    with Load() as idle:
        time.sleep(2)
    results["machine"]["cpu_busy_before_start"] = idle.machine_busy  # others' work
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # The deployer's warnings (every 429 is one) go to a file, not between the figures.
        logging.basicConfig(filename=workdir / "deployer.log", level=logging.WARNING)
        # Slack's own rate limits off: the healthy baseline must not meet 429s of its own.
        sandbox = Sandbox(workdir / "cloud", slack_rate_scale=0).start()
        sandbox.metadata.serve_this_process()  # probes get ID tokens from it
        try:
            seeded = demo.seed_demo(sandbox, ROOT, workdir)
            print("1/4 slash-command ack ...", flush=True)
            results["slash_ack_ms"] = slash_ack(sandbox, seeded, workdir, args.requests, args.cold)
            print("2/4 worker death ...", flush=True)
            results["worker_death_s"] = worker_death(
                sandbox, seeded, workdir, args.trials, args.lease
            )
            # Last in the sandbox: it leaves N services serving (idle processes).
            print("3/4 concurrent deploys ...", flush=True)
            results["concurrent_deploys"] = concurrent_deploys(
                sandbox, seeded, workdir, args.services, args.alone, args.rounds
            )
        finally:
            sandbox.stop()
        print("4/4 locks ...", flush=True)
        results["lock_ms"] = locks(workdir, args.pairs)
    results["machine"]["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    table(results)
    save("reliability", results)


if __name__ == "__main__":
    main()
