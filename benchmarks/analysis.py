"""Analysis overhead per traffic step, and threshold breach to rollback, against the sandbox.

    uv run python benchmarks/analysis.py [--runs N] [--warmup N] [--interval S]

prod serves its first deploy (tests/engine_world.py); then it gets traffic steps
[50, 100] and an `[analysis]` table: `interval` S (2 s unless asked; the sandbox's
Monitoring may be read more often than Google's 60 s), `min_requests` 20,
`max_error_rate` 5 %, `max_latency_p95_ms` 2000. Each round deploys a new commit of prod
once per kind, in an order that rotates round by round:

    real         a good candidate under loopback traffic (`POST /_sandbox/traffic`,
                 40 rps to the service URL from the moment promotion starts): at 50 % it
                 answers about 40 real requests in the interval, more than `min_requests`,
                 so no synthetic request is needed (the figures say how many were sent)
    synthetic    a good candidate with no traffic at all: the step's gap is filled with
                 synthetic requests to its tag URL (/health)
    breach       the `real` deploy with the candidate armed with an `error_rate` fault of
                 rate 1.0 (every non-health request answered 500): the step fails and
                 the deploy rolls back

Only the 50 % step is gated (100 % is the end), so each deploy judges one step. Every
port (Monitoring's included) and the store sit behind timing proxies (`timed_ports.py`);
`StepAnalysis.judge_step`, `StepAnalysis.measure_stable_before` and the rollout's
`_gate` are timed as parts of the promote stage. Figures, per kind:

    step_s             wall time of `judge_step`: the interval's wait, the Monitoring
                       reads, any synthetic requests, the verdict, the record saved
    overhead_ms        step - the configured waits (target <= 100 ms). The configured
                       waits are the `interval` alone: the time the step must last by
                       configuration. The time synthetic requests take is not a configured
                       wait, so it is counted here (and shown apart in `synthetic_ms`)
      monitoring_ms    of which inside Monitoring reads (`metrics.requests`, two
                       ListTimeSeries calls each): platform time
      synthetic_ms     of which inside synthetic requests (`health.sample`): platform time
      store_ms         of which inside the store (the judged window saved in the record)
      own_ms           the rest: the deployer's own work, the wait's oversleep included
    reads              Monitoring reads in the step (1 when the data is there at once)
    gate_overhead_ms   the whole gate (the candidate's tag health check, then the step's
                       analysis) - the interval - the health check's configured waits
                       ((consecutive - 1) x its interval)
    stable_before_ms   the one read of the stable revision's figures before the first
                       step, once a deploy (not a step's)
    synthetic_sent     synthetic requests sent in the step; real_seen: the other requests
                       of the candidate in the judged figures (the loopback traffic's, and
                       the tag URL's health probes, which Monitoring counts too)

and for `breach`, from the event that reads back the step's traffic ("traffic 50% on
<candidate>, ...", when the candidate starts answering its share with 500s):

    breach_to_verdict_s    to the failing analysis line in the thread
    breach_to_rollback_s   to the rollback stage's start (target <= interval + 1 s)
    breach_to_restored_s   to the rollback stage's end: the baseline routed, read back

The sandbox runs in this process: its Monitoring server, router and loopback traffic share
the interpreter with the deployer, so `monitoring_ms` is the whole read, client and
server. The adapter reads the step's own window (`cloud_monitoring.py`); a read of the
sandbox's costs in proportion to the requests in it (about 20 us each, client and
server). Monitoring's ingestion delay is left at 0 (the data is there at once), and
Google's own ListTimeSeries latency is not modelled; a step whose data is there at once
makes two of those calls (one read of two metrics).

Prints a table and saves everything to benchmarks/results/analysis.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from figures import save, summary
from promotion_world import ROOT, World, close_world, make_world, quiet_logs, start_sandbox
from timed_ports import Timings, timed_function, timed_platform, timed_store

from deployer.engine import Engine
from deployer.pipeline.analysis import StepAnalysis
from deployer.pipeline.events import Event, StageFinished, StageProgressed, StageStarted, fan_out
from deployer.pipeline.record import DeployRecord, Stage, State
from deployer.pipeline.rollout import Rollout
from tests.test_analysis import Traffic

KINDS = ("real", "synthetic", "breach")
OVERHEAD_TARGET_MS = 100.0
ROLLBACK_MARGIN_S = 1.0  # breach to rollback start: at most the interval + this
MIN_REQUESTS = 20
RPS = 40
STEP = 50
# The timed parts of the promote stage.
STEP_PART, GATE_PART, STABLE_PART = "analysis.step", "gate", "analysis.stable_before"


def configure(world: World, interval: float) -> None:
    """prod with traffic steps [STEP, 100] and analysis on."""
    world.reconfigure(
        environment={
            "rollout": {"steps": [STEP, 100], "step_wait": 0},
            "analysis": {
                "interval": interval,
                "min_requests": MIN_REQUESTS,
                "max_error_rate": 0.05,
                "max_latency_p95_ms": 2000,
            },
            "timeouts": {"promote": 40, "verify": 15},
        }
    )


class Clock:
    """When the step's traffic was read back, judged, rolled back and restored."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        now = time.perf_counter()
        if isinstance(event, StageProgressed) and event.stage == Stage.PROMOTE:
            if event.message.startswith(f"traffic {STEP}% on "):
                self.at.setdefault("breach", now)
            elif event.message.startswith(f"analysis at {STEP}%: "):
                self.at.setdefault("verdict", now)
        elif isinstance(event, StageStarted) and event.stage == Stage.ROLLBACK:
            self.at.setdefault("rollback", now)
        elif isinstance(event, StageFinished) and event.result.stage == Stage.ROLLBACK:
            self.at.setdefault("restored", now)

    def since_breach(self, moment: str) -> float:
        return self.at[moment] - self.at["breach"]


def measure(
    world: World, engine: Engine, timings: Timings, kind: str, interval: float
) -> dict[str, Any]:
    """Deploy a new commit as `kind` says; where the analysed step's time went."""
    world.commit(f"{kind} candidate")
    if kind == "breach":
        world.sandbox.faults.arm("error_rate", rate=1.0)  # the next revision: the candidate
    traffic = Traffic(world, rps=RPS, seconds=interval + 3) if kind != "synthetic" else None
    clock = Clock()
    listeners = [timings.listener, clock] + ([traffic] if traffic else [])
    timings.reset()
    try:
        record = engine.deploy(engine.new_deploy("prod", None, "cli:bench"), fan_out(*listeners))
    finally:
        if traffic is not None:
            traffic.join()
        world.sandbox.faults.clear()
    judged = _checked(record, kind)
    check = world.config.target("prod").health
    health_waits = (check.consecutive - 1) * check.interval
    step = timings.stage_wall[STEP_PART]
    parts = {
        "monitoring": timings.seconds("metrics", STEP_PART),
        "synthetic": timings.seconds("health", STEP_PART),
        "store": timings.seconds("store", STEP_PART),
    }
    overhead = step - interval
    sample: dict[str, Any] = {
        "step": step,
        "overhead": overhead,
        **parts,
        "own": overhead - sum(parts.values()),
        "reads": sum(
            1 for call in timings.calls if call.stage == STEP_PART and call.port == "metrics"
        ),
        "gate_overhead": timings.stage_wall[GATE_PART] - interval - health_waits,
        "stable_before": timings.stage_wall[STABLE_PART],
        "synthetic_sent": judged.synthetic.requests,
        "real_seen": judged.candidate.requests - judged.synthetic.requests,
    }
    if kind == "breach":
        for moment in ("verdict", "rollback", "restored"):
            sample[f"breach_to_{moment}"] = clock.since_breach(moment)
    return sample


def _checked(record: DeployRecord, kind: str) -> Any:
    """The judged step of `record`, once its deploy ended as `kind` must end."""
    wanted = State.ROLLED_BACK if kind == "breach" else State.SUCCEEDED
    if record.state != wanted:
        raise SystemExit(f"{kind}: {record.id} ended {record.state}, not {wanted}: {record.error}")
    steps = [m for m in record.analysis if m.phase == "step" and m.percent == STEP]
    if len(steps) != 1 or steps[0].passed == (kind == "breach"):
        raise SystemExit(f"{kind}: {record.id} judged its {STEP}% step unexpectedly: {steps}")
    return steps[0]


def figures_of(samples: list[dict[str, Any]]) -> dict[str, Any]:
    def of(name: str, scale: float = 1.0) -> dict[str, float]:
        return summary([sample[name] for sample in samples], scale)

    out: dict[str, Any] = {
        "step_s": of("step"),
        "overhead_ms": of("overhead", 1000),
        "monitoring_ms": of("monitoring", 1000),
        "synthetic_ms": of("synthetic", 1000),
        "store_ms": of("store", 1000),
        "own_ms": of("own", 1000),
        "reads": of("reads"),
        "gate_overhead_ms": of("gate_overhead", 1000),
        "stable_before_ms": of("stable_before", 1000),
        "synthetic_sent": of("synthetic_sent"),
        "real_seen": of("real_seen"),
    }
    if "breach_to_rollback" in samples[0]:
        for moment in ("verdict", "rollback", "restored"):
            out[f"breach_to_{moment}_s"] = of(f"breach_to_{moment}")
    return out


def table(results: dict[str, Any]) -> None:
    """The figures in a few lines."""
    print(
        f"\nmedian over {results['runs']} rounds (p95 in brackets), interval "
        f"{results['interval_s']:g} s"
    )
    print(f"{'':<30}" + "".join(f"{kind:>18}" for kind in KINDS))
    rows = [
        ("step (s)", "step_s", 3),
        ("overhead = step - interval (ms)", "overhead_ms", 1),
        ("  Monitoring reads (ms)", "monitoring_ms", 1),
        ("  synthetic requests (ms)", "synthetic_ms", 1),
        ("  store (ms)", "store_ms", 1),
        ("  deployer's own (ms)", "own_ms", 1),
        ("Monitoring reads", "reads", 0),
        ("gate overhead (ms)", "gate_overhead_ms", 1),
        ("stable before, once (ms)", "stable_before_ms", 1),
        ("synthetic requests sent", "synthetic_sent", 0),
        ("real requests seen", "real_seen", 0),
    ]
    for label, key, digits in rows:
        cells = "".join(
            f"{results[kind][key]['median']:>9.{digits}f} ({results[kind][key]['p95']:>5.{digits}f})"
            for kind in KINDS
        )
        print(f"{label:<30}{cells}")
    breach = results["breach"]
    print("\nbreach (traffic 50% read back) to, median (p95) seconds")
    for moment in ("verdict", "rollback", "restored"):
        row = breach[f"breach_to_{moment}_s"]
        print(f"  {moment:<28}{row['median']:>9.3f} ({row['p95']:.3f})")
    met = results["met"]
    print(
        f"\noverhead per step, real traffic: {results['real']['overhead_ms']['median']:.1f} ms, "
        f"target <= {OVERHEAD_TARGET_MS:.0f} ms: {'met' if met['overhead_real'] else 'MISSED'}; "
        f"with synthetic fill {results['synthetic']['overhead_ms']['median']:.1f} ms: "
        f"{'met' if met['overhead_synthetic'] else 'MISSED'}"
    )
    print(
        f"breach to rollback start: {breach['breach_to_rollback_s']['median']:.3f} s, target <= "
        f"{results['target_rollback_s']:g} s: {'met' if met['breach_to_rollback'] else 'MISSED'}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="measured rounds (8)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first, not counted (1)")
    parser.add_argument(
        "--interval", type=float, default=2.0, help="analysis interval, seconds (2)"
    )
    args = parser.parse_args()

    samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_1m_start": round(os.getloadavg()[0], 2),
        },
        "runs": args.runs,
        "interval_s": args.interval,
        "min_requests": MIN_REQUESTS,
        "traffic_rps": RPS,
    }
    originals = (StepAnalysis.judge_step, StepAnalysis.measure_stable_before, Rollout._gate)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        quiet_logs(workdir)
        sandbox = start_sandbox(workdir)
        world = None
        try:
            world = make_world(sandbox, workdir / "world", ROOT)
            configure(world, args.interval)
            timings = Timings()
            engine = Engine(
                world.config,
                timed_platform(world.platform, timings),
                timed_store(world.store(), timings),
            )
            StepAnalysis.judge_step = timed_function(originals[0], STEP_PART, timings)  # type: ignore[method-assign]
            StepAnalysis.measure_stable_before = timed_function(originals[1], STABLE_PART, timings)  # type: ignore[method-assign]
            Rollout._gate = timed_function(originals[2], GATE_PART, timings)  # type: ignore[method-assign]
            for round_number in range(args.warmup + args.runs):
                order = KINDS[round_number % 3 :] + KINDS[: round_number % 3]
                said = []
                for kind in order:
                    sample = measure(world, engine, timings, kind, args.interval)
                    said.append(f"{kind} +{sample['overhead'] * 1000:.0f} ms")
                    if kind == "breach":
                        said[-1] += f", rollback {sample['breach_to_rollback']:.2f} s"
                    if round_number >= args.warmup:
                        samples[kind].append(sample)
                print(
                    f"round {round_number + 1}/{args.warmup + args.runs}"
                    f"{' (warm-up)' if round_number < args.warmup else ''}: " + "; ".join(said),
                    flush=True,
                )
        finally:
            StepAnalysis.judge_step, StepAnalysis.measure_stable_before, Rollout._gate = originals  # type: ignore[method-assign]
            if world is not None:
                close_world(world)
            sandbox.stop()
    for kind in KINDS:
        results[kind] = figures_of(samples[kind])
    results["target_overhead_ms"] = OVERHEAD_TARGET_MS
    results["target_rollback_s"] = args.interval + ROLLBACK_MARGIN_S
    results["met"] = {
        "overhead_real": results["real"]["overhead_ms"]["median"] <= OVERHEAD_TARGET_MS,
        "overhead_synthetic": results["synthetic"]["overhead_ms"]["median"] <= OVERHEAD_TARGET_MS,
        "breach_to_rollback": results["breach"]["breach_to_rollback_s"]["median"]
        <= results["target_rollback_s"],
    }
    results["machine"]["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    table(results)
    save("analysis", results)


if __name__ == "__main__":
    main()
