"""The deployer's own overhead per deploy, and how fast it reports a platform failure.

    uv run python benchmarks/engine.py [--deploys N] [--failures N]

Against an in-process sandbox seeded with the demo (deployer.example.toml), deploying
`prod` as built from a commit (not promoted) with its approval and deploy windows
dropped, as before the demo asked for them: an approval parks the deploy for a
person, which is no overhead of the deployer's; everything else is prod's own.
Every deploy builds anew (`--rebuild`): a reused build would leave no build to time
here, and none to fail.
- overhead = wall time of a deploy - the time the platform spent (the build,
  from create_time to finish_time, and the candidate revision, from its
  create_time to its Ready transition) - the waits the config asks for
  (health: consecutive-1 intervals). Target <= 0.5 s.
- failure latency = the moment the pipeline reports a failed stage - the
  moment the platform recorded the failure (build finish_time; revision Ready
  false transition). Target <= 1 s.
Prints the figures and saves them to benchmarks/results/engine.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from deployer_sandbox.harness import seed as demo
from deployer_sandbox.harness.sandbox import Sandbox
from figures import save, summary
from google.cloud import run_v2
from google.cloud.devtools import cloudbuild_v1

from deployer.adapters.google_clients import google_client
from deployer.config import Config
from deployer.engine import Engine, default_platform
from deployer.pipeline.events import Event, StageFinished
from deployer.pipeline.record import DeployRecord, Outcome, Stage, State
from deployer.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parent.parent


def _seconds(timestamp: Any) -> float:
    return float(timestamp.timestamp())


class Recorder:
    """Keeps the wall-clock time each stage finished."""

    def __init__(self) -> None:
        self.finished: dict[Stage, tuple[float, Outcome]] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageFinished):
            self.finished[event.result.stage] = (time.time(), event.result.outcome)


def unattended(config: Config) -> Config:
    """`config` with prod deploying straight through: no approval to wait for, any day."""
    prod = config.environment("prod").model_copy(update={"approval": None, "windows": None})
    return config.model_copy(update={"environments": {**config.environments, "prod": prod}})


def rebuilt(engine: Engine) -> DeployRecord:
    """A new deploy of prod at HEAD that builds, whatever was built before."""
    record = engine.new_deploy("prod", "HEAD", "bench")
    record.rebuild = True
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=8)
    parser.add_argument("--failures", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Sandbox(Path(tmp) / "cloud").start()
        sandbox.metadata.serve_this_process()  # probes get ID tokens from it
        try:
            seeded = demo.seed_demo(sandbox, ROOT, Path(tmp))
            config = unattended(seeded.config)
            service = config.services["backend"]
            host = sandbox.grpc_address
            engine = Engine(config, default_platform(host), SqliteStore(Path(tmp) / "bench.db"))
            builds = google_client(cloudbuild_v1.CloudBuildClient, host)
            revisions = google_client(run_v2.RevisionsClient, host)
            policy = (service.health.consecutive - 1) * service.health.interval
            parent = (
                f"projects/{service.project}/locations/{service.region}/services/{service.service}"
            )

            overheads, totals, platform_times = [], [], []
            for _ in range(args.deploys):
                started = time.time()
                record = engine.deploy(rebuilt(engine), Recorder())
                total = time.time() - started
                assert record.state == State.SUCCEEDED, record.error
                build = builds.get_build(
                    name=f"projects/{service.project}/locations/{service.region}/builds/{record.build_id}"
                )
                revision = revisions.get_revision(
                    name=f"{parent}/revisions/{record.candidate_revision}"
                )
                ready = next(c for c in revision.conditions if c.type_ == "Ready")
                platform = (_seconds(build.finish_time) - _seconds(build.create_time)) + (
                    _seconds(ready.last_transition_time) - _seconds(revision.create_time)
                )
                totals.append(total)
                platform_times.append(platform)
                overheads.append(total - platform - policy)

            latencies: dict[str, list[float]] = {"build_failure": [], "revision_crash": []}
            for _ in range(args.failures):
                sandbox.faults.arm("build_fail", step="build")
                recorder = Recorder()
                record = engine.deploy(rebuilt(engine), recorder)
                build = builds.get_build(
                    name=f"projects/{service.project}/locations/{service.region}/builds/{record.build_id}"
                )
                reported, outcome = recorder.finished[Stage.BUILD]
                assert outcome == Outcome.FAILED
                latencies["build_failure"].append(reported - _seconds(build.finish_time))

                sandbox.faults.arm("revision_crash")
                recorder = Recorder()
                record = engine.deploy(rebuilt(engine), recorder)
                revision = revisions.get_revision(
                    name=f"{parent}/revisions/{record.candidate_revision}"
                )
                ready = next(c for c in revision.conditions if c.type_ == "Ready")
                reported, outcome = recorder.finished[Stage.READY]
                assert outcome == Outcome.FAILED
                latencies["revision_crash"].append(reported - _seconds(ready.last_transition_time))
        finally:
            sandbox.stop()

    figures = {
        "deploy_total_s": summary(totals),
        "platform_s": summary(platform_times),
        "configured_waits_s": policy,
        "overhead_s": summary(overheads),
        "failure_report_latency_s": {kind: summary(v) for kind, v in latencies.items()},
    }
    save("engine", figures)


if __name__ == "__main__":
    main()
