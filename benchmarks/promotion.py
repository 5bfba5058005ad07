"""Promotion overhead over platform time: staging -> prod with no approval, against the sandbox.

    uv run python benchmarks/promotion.py [--runs N] [--warmup N] [--health default|fast]

prod serves its first deploy; staging (the same service, its own project and region)
is deployed from a new commit each round, outside the measurement. Then, in an order
that alternates round by round, two deploys of prod run to their end on this thread
(the terminal's way, `Engine.deploy`):

    promotion        `deployer promote staging prod`: preflight reads staging (its lock,
                     service, serving revision, one health probe: `preflight.source`),
                     then prod's plan; nothing built; deploy, ready, health, promote, verify
    deploy           an ordinary deploy of prod at the same commit, which reuses staging's
                     build (build once): the same image, through the same stages

Every port of the pipeline (sources, builds, secrets, services, health, images) and
the store sit behind timing proxies (`timed_ports.py`). Figures, per kind:

    total_s          wall time of the deploy, lock taken to lock released
    platform_s       time inside port calls on the deploy's thread: Cloud Run create,
                     wait and route, health probes (their configured intervals included),
                     Secret Manager, the repository's reads
    overhead_s       total - platform: the deployer's own work (target <= 0.5 s)
    in_store_s       the part of the overhead spent inside store calls
    overhead_engine_definition_s
                     total - the candidate's create -> Ready as Cloud Run stamped it - the
                     configured waits (health: consecutive - 1 intervals): the definition
                     of benchmarks/engine.py, so the two can be compared
    preflight_s      the preflight stage; `source_s` the promotion's own part of it
    stages_s         per stage, median wall, platform and overhead seconds
    calls            per port method, median calls and seconds a deploy

The candidate's health check is the deployer's default (3 good answers 0.5 s apart), or
with `--health fast` the tests' (2, 0.1 s apart): its waits are platform time either way.
Prints a table and saves everything to benchmarks/results/promotion.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from figures import save, summary
from promotion_world import (
    HEALTH_CHECKS,
    ROOT,
    STAGING,
    World,
    close_world,
    deploy_staging,
    make_world,
    promote_from_staging,
    quiet_logs,
    start_sandbox,
    use_health,
)
from timed_ports import BETWEEN, Timings, timed_function, timed_platform, timed_store

from deployer.engine import Engine
from deployer.pipeline import deploy as deploy_pipeline
from deployer.pipeline.record import DEPLOY_STAGES, DeployRecord, State

OVERHEAD_TARGET_S = 0.5
KINDS = ("promotion", "deploy")
SOURCE = "preflight.source"  # the promotion's reading of staging, inside its preflight
STAGES = (*(str(stage) for stage in DEPLOY_STAGES), BETWEEN)


def _ready_seconds(world: World, revision: str) -> float:
    """The candidate's create -> Ready, as Cloud Run stamped it."""
    found = world.revision(revision)
    ready = next(c for c in found.conditions if c.type_ == "Ready")
    return float(ready.last_transition_time.timestamp() - found.create_time.timestamp())


def measure(world: World, engine: Engine, timings: Timings, record: DeployRecord) -> dict[str, Any]:
    """Run `record` to its end; where its time went."""
    timings.reset()
    started = time.perf_counter()
    done = engine.deploy(record, timings.listener)
    total = time.perf_counter() - started
    if done.state != State.SUCCEEDED:
        raise SystemExit(f"{done.id} ended {done.state}: {done.error}")
    if done.promoted_from is None and not done.build_reused:
        raise SystemExit(f"{done.id} built again instead of reusing staging's build")
    assert done.candidate_revision is not None
    check = world.config.target(done.environment).health
    waits = (check.consecutive - 1) * check.interval
    platform = timings.seconds()
    walls = dict(timings.stage_wall)
    walls[BETWEEN] = total - sum(seconds for stage, seconds in walls.items() if stage != SOURCE)
    stages = {}
    for stage in (*STAGES, SOURCE):
        if stage not in walls:
            continue
        inside = timings.seconds(stage=stage)
        if stage == "preflight":  # the source's part is a part of preflight
            inside += timings.seconds(stage=SOURCE)
        stages[stage] = {
            "wall": walls[stage],
            "platform": inside,
            "overhead": walls[stage] - inside,
        }
    return {
        "total": total,
        "platform": platform,
        "overhead": total - platform,
        "in_store": timings.seconds("store"),
        "overhead_engine_definition": total
        - _ready_seconds(world, done.candidate_revision)
        - waits,
        "stages": stages,
        "calls": timings.by_method(),
    }


def _medians(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Per stage (or per method), the median of each figure across `samples`."""
    names = sorted({name for sample in samples for name in sample[key]})
    out: dict[str, Any] = {}
    for name in names:
        rows = [sample[key][name] for sample in samples if name in sample[key]]
        if key == "calls":
            out[name] = {
                "calls": statistics.median(count for count, _ in rows),
                "seconds": round(statistics.median(seconds for _, seconds in rows), 4),
            }
        else:
            out[name] = {
                part: round(statistics.median(row[part] for row in rows), 4) for part in rows[0]
            }
    return out


def figures_of(samples: list[dict[str, Any]]) -> dict[str, Any]:
    def of(name: str) -> dict[str, float]:
        return summary([sample[name] for sample in samples])

    def stage(name: str, part: str) -> dict[str, float]:
        return summary([sample["stages"][name][part] for sample in samples])

    out: dict[str, Any] = {
        "total_s": of("total"),
        "platform_s": of("platform"),
        "overhead_s": of("overhead"),
        "in_store_s": of("in_store"),
        "overhead_engine_definition_s": of("overhead_engine_definition"),
        "preflight_s": {
            "wall": stage("preflight", "wall"),
            "platform": stage("preflight", "platform"),
            "overhead": stage("preflight", "overhead"),
        },
        "stages_s": _medians(samples, "stages"),
        "calls": _medians(samples, "calls"),
    }
    if all(SOURCE in sample["stages"] for sample in samples):
        out["preflight_s"]["source_s"] = {
            part: stage(SOURCE, part) for part in ("wall", "platform", "overhead")
        }
    return out


def table(results: dict[str, Any]) -> None:
    """The figures in a few lines."""
    print(f"\nmedian seconds over {results['runs']} rounds (p95 in brackets)")
    print(f"{'':<34}{'promotion':>16}{'deploy':>16}")
    rows = [
        ("total", "total_s"),
        ("inside platform calls", "platform_s"),
        ("overhead = total - platform", "overhead_s"),
        ("  of which inside the store", "in_store_s"),
        ("overhead, engine.py's definition", "overhead_engine_definition_s"),
    ]
    for label, key in rows:
        cells = "".join(
            f"{results[kind][key]['median']:>8.3f} ({results[kind][key]['p95']:.3f})"
            for kind in KINDS
        )
        print(f"{label:<34}{cells}")
    print("\nper stage, median wall / platform / overhead")
    for stage in (*STAGES[:1], SOURCE, *STAGES[1:]):
        cells = ""
        for kind in KINDS:
            row = results[kind]["stages_s"].get(stage)
            cells += (
                f"{row['wall']:>7.3f}/{row['platform']:.3f}/{row['overhead']:.3f}"
                if row
                else f"{'-':>23}"
            )
        print(f"  {stage:<18}{cells}")
    promotion = results["promotion"]
    source = promotion["preflight_s"]["source_s"]["wall"]["median"]
    verdict = "met" if results["met"] else "MISSED"
    print(
        f"\npromotion preflight {promotion['preflight_s']['wall']['median']:.3f} s, of which "
        f"reading staging {source:.3f} s; overhead {promotion['overhead_s']['median']:.3f} s, "
        f"target <= {OVERHEAD_TARGET_S} s: {verdict}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="measured rounds (7)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first, not counted (1)")
    parser.add_argument(
        "--health",
        choices=tuple(HEALTH_CHECKS),
        default="default",
        help="the candidate's health check: the deployer's default (3 good answers 0.5 s "
        "apart) or the tests' world's (2, 0.1 s apart)",
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
        "health": args.health,
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        quiet_logs(workdir)
        sandbox = start_sandbox(workdir)
        world = None
        try:
            world = make_world(sandbox, workdir / "world", ROOT)
            use_health(world, args.health)
            promote_from_staging(world)
            results["health_check"] = world.config.target("prod").health.model_dump(mode="json")
            timings = Timings()
            engine = Engine(
                world.config,
                timed_platform(world.platform, timings),
                timed_store(world.store(), timings),
            )
            # The promotion's own part of preflight, counted apart.
            source = deploy_pipeline.take_promoted_image
            deploy_pipeline.take_promoted_image = timed_function(source, SOURCE, timings)
            for round_number in range(args.warmup + args.runs):
                world.commit(f"round {round_number}")
                staged = deploy_staging(world)
                records = {
                    "promotion": engine.new_promotion(STAGING, "prod", "cli:bench"),
                    "deploy": engine.new_deploy("prod", None, "cli:bench"),
                }
                order = KINDS if round_number % 2 == 0 else tuple(reversed(KINDS))
                totals = {}
                for kind in order:
                    sample = measure(world, engine, timings, records[kind])
                    totals[kind] = sample["total"]
                    if round_number >= args.warmup:
                        samples[kind].append(sample)
                print(
                    f"round {round_number + 1}/{args.warmup + args.runs}"
                    f"{' (warm-up)' if round_number < args.warmup else ''}: staging at "
                    f"{(staged.commit or '')[:12]}, then "
                    + ", ".join(f"{kind} {totals[kind]:.3f} s" for kind in order),
                    flush=True,
                )
            deploy_pipeline.take_promoted_image = source
        finally:
            if world is not None:
                close_world(world)
            sandbox.stop()
    for kind in KINDS:
        results[kind] = figures_of(samples[kind])
    promotion, deploy = results["promotion"], results["deploy"]
    results["promotion_minus_deploy_median_s"] = {
        key: round(promotion[f"{key}_s"]["median"] - deploy[f"{key}_s"]["median"], 4)
        for key in ("total", "platform", "overhead")
    }
    results["target_overhead_s"] = OVERHEAD_TARGET_S
    results["met"] = promotion["overhead_s"]["median"] <= OVERHEAD_TARGET_S
    results["machine"]["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    table(results)
    save("promotion", results)


if __name__ == "__main__":
    main()
