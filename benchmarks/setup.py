"""`deployer setup` against the sandbox: a first run on an empty project, the no-op second
run, the deployer's image built with Cloud Build, and the deployed front's first answers.

    uv run python benchmarks/setup.py [--rounds N] [--acks N] [--no-build]

Each round sets up a project of its own (APIs, accounts, grants, Firestore, secrets, the
worker job, the sweep, the front deployed as a function, its grants) with `--image` given,
then runs setup again, which must change nothing. One more project is set up without
`--image`, so the deployer's image is built from this checkout's root Dockerfile, once
(its layer cache is then warm for this sandbox) and the no-op run that follows it.
Then a correctly signed `/deploy status` goes to the deployed function's own URL: the
first answer (the function's process just started) and the warm ones.

Prints the figures and saves them to benchmarks/results/setup.json. Target: the no-op
second run <= 5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from deployer_sandbox.harness.chat_front import push_worker_image
from deployer_sandbox.harness.sandbox import Sandbox
from figures import save, summary
from google.cloud import functions_v2
from reliability_common import (
    EmulatorUnavailable,
    running_emulator,
    setup_config,
    slash_command,
)

from deployer.adapters.google_clients import google_client
from deployer.setup.run import run_setup
from deployer.setup.steps import Outcome, StepResult

REGION = setup_config.REGION
NOOP_TARGET_S = 5.0
CHANNEL, USER = "C0BENCH01", "U0BENCH01"
SIGNING = uuid.uuid4().hex


def config_text(project: str) -> str:
    return setup_config.config_text(
        project,
        f'channel = "{CHANNEL}"\n'
        f'allow = {{ slack_users = ["{USER}"], slack_channels = ["{CHANNEL}"] }}\n',
    )


def secret_values() -> dict[str, str]:
    return {
        "slack-signing-secret": SIGNING,
        "slack-bot-token": f"xoxb-bench-{uuid.uuid4().hex}",
        "github-webhook-secret": uuid.uuid4().hex,
    }


def timed_setup(
    project: str, config: Path, image: str | None, values: dict[str, str]
) -> tuple[float, list[StepResult]]:
    started = time.perf_counter()
    results = run_setup(project, REGION, config, values, image, False, say=lambda _: None)
    return time.perf_counter() - started, results


def changed(results: list[StepResult]) -> int:
    return sum(r.outcome == Outcome.CHANGED for r in results)


def new_project(folder: Path) -> tuple[str, Path]:
    project = f"bench-{uuid.uuid4().hex[:10]}"
    config = folder / f"{project}.toml"
    config.write_text(config_text(project))
    return project, config


def acks(sandbox: Sandbox, url: str, runs: int) -> tuple[float, list[float]]:
    """Seconds to the function's answer to a signed `/deploy status`: the first, the rest."""
    samples = []
    for _ in range(runs + 1):
        response_url = sandbox.http.mint_response_url(channel=CHANNEL, user=USER)
        request = slash_command(
            SIGNING, "status", user=USER, channel=CHANNEL, response_url=response_url
        )
        started = time.perf_counter()
        answer = httpx.post(
            url + request.path, content=request.body, headers=request.headers, timeout=30
        )
        samples.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise SystemExit(f"the function answered {answer.status_code}: {answer.text[:200]}")
    return samples[0], samples[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--acks", type=int, default=10)
    parser.add_argument("--no-build", action="store_true", help="skip the image build round")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            emulator = running_emulator(folder / "firestore.log")
            firestore = emulator.__enter__()
        except EmulatorUnavailable as reason:
            raise SystemExit(str(reason)) from None
        sandbox = Sandbox(folder / "sandbox").start()
        os.environ.update(
            DEPLOYER_GCP_EMULATOR_HOST=sandbox.grpc_address,
            STORAGE_EMULATOR_HOST=sandbox.storage_url,
            FIRESTORE_EMULATOR_HOST=firestore,
        )
        sandbox.metadata.serve_this_process()
        sandbox.http.sink.add_channel(CHANNEL, "deploys")
        sandbox.http.sink.add_user(USER, "bench")
        firsts, noops, first_changes = [], [], 0
        first_acks, warm_acks = [], []
        figures: dict[str, object] = {
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "loadavg_1m_start": round(os.getloadavg()[0], 2),
            },
            "rounds": args.rounds,
        }
        try:
            for _ in range(args.rounds):
                project, config = new_project(folder)
                image = push_worker_image(sandbox, project, REGION)
                seconds, results = timed_setup(project, config, image, secret_values())
                firsts.append(seconds)
                first_changes = changed(results)
                seconds, results = timed_setup(project, config, image, {})
                noops.append(seconds)
                if changed(results):
                    raise SystemExit(f"the second run changed {changed(results)} steps")
                functions = google_client(functions_v2.FunctionServiceClient)
                url = functions.get_function(
                    name=f"projects/{project}/locations/{REGION}/functions/deployer"
                ).url
                functions.transport.close()
                first, warm = acks(sandbox, url, args.acks)
                first_acks.append(first)
                warm_acks.extend(warm)
            figures["setup_first_run_image_given_s"] = summary(firsts)
            figures["steps_changed_by_a_first_run"] = first_changes
            figures["setup_noop_second_run_s"] = summary(noops)
            figures["noop_target_s"] = NOOP_TARGET_S
            figures["noop_met"] = max(noops) <= NOOP_TARGET_S
            figures["function_first_ack_s"] = summary(first_acks)
            figures["function_warm_ack_s"] = summary(warm_acks)
            if not args.no_build:
                project, config = new_project(folder)
                seconds, _ = timed_setup(project, config, None, secret_values())
                figures["setup_first_run_building_the_image_s"] = round(seconds, 2)
                seconds, results = timed_setup(project, config, None, {})
                figures["setup_noop_after_a_build_s"] = round(seconds, 3)
        finally:
            sandbox.stop()
            emulator.__exit__(None, None, None)
        figures["machine"]["loadavg_1m_end"] = round(os.getloadavg()[0], 2)  # type: ignore[index]
    save("setup", figures)


if __name__ == "__main__":
    main()
