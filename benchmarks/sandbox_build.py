"""Sandbox image builds: `docker build` of service/ through Cloud Build, cold and warm.

    uv run python benchmarks/sandbox_build.py [--cold N] [--warm N]

Cold: an empty build cache (`DEPLOYER_SANDBOX_CACHE` pointed at a new directory), so
uv downloads every package and every RUN runs. Warm: the same cache again, the same
uv.lock, so both `uv sync` RUNs are CACHED. Code changed: a new commit of app/ each
time, the same uv.lock: the dependencies' RUN is CACHED, the project's `uv sync` runs
(hatchling builds it), as for most deploys. Each sample is CreateBuild to the
operation done, over gRPC. Prints the figures and saves them to
benchmarks/results/sandbox_build.json. Target on a 2-core machine: warm <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from deployer_sandbox.cloud_build.build_layers import CACHE_ENV
from deployer_sandbox.harness.sandbox import Sandbox
from figures import save, summary
from google.cloud.devtools import cloudbuild_v1 as cb

from deployer.adapters.google_clients import google_client

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "bench-project"
IMAGE = f"europe-west1-docker.pkg.dev/{PROJECT}/deployer/backend:bench"
WARM_TARGET_S = 2.0


def service_repository(where: Path) -> Path:
    """A git repository holding a copy of service/ (the working tree's)."""
    repo = where / "repo"
    shutil.copytree(
        ROOT / "service", repo / "service", ignore=shutil.ignore_patterns("__pycache__", ".venv")
    )
    identity = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid"}
    identity |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "service"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env={**os.environ, **identity})
    return repo


def change_code(repo: Path, number: int) -> None:
    """Commit a change to the app's code (not to its dependencies)."""
    with (repo / "service" / "app" / "__init__.py").open("a", encoding="utf-8") as out:
        out.write(f"# change {number}\n")
    identity = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid"}
    identity |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    for args in (["add", "-A"], ["commit", "-q", "-m", f"change {number}"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env={**os.environ, **identity})


def one_build(client: cb.CloudBuildClient, repo: Path) -> tuple[float, float]:
    """(seconds from CreateBuild to its operation seen done by the client's polling,
    seconds from the build's create_time to its finish_time)."""
    build = cb.Build(
        source=cb.Source(git_source=cb.GitSource(url=str(repo), revision="main")),
        steps=[
            cb.BuildStep(
                name="gcr.io/cloud-builders/docker",
                dir_="service",
                env=["DOCKER_BUILDKIT=1"],
                args=["build", "--build-arg", "COMMIT_SHA=bench", "-t", IMAGE, "."],
            )
        ],
        images=[IMAGE],
        timeout={"seconds": 1200},
    )
    started = time.perf_counter()
    done = client.create_build(project_id=PROJECT, build=build).result(timeout=1200)
    took = time.perf_counter() - started
    if done.status != cb.Build.Status.SUCCESS:
        raise SystemExit(f"build {done.id} ended {done.status.name}")
    return took, done.finish_time.timestamp() - done.create_time.timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=1, help="cold builds (each a new cache)")
    parser.add_argument("--warm", type=int, default=7, help="warm builds after the cold ones")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        repo = service_repository(Path(tmp))
        sandbox = Sandbox(Path(tmp) / "cloud").start()
        try:
            client = google_client(cb.CloudBuildClient, sandbox.grpc_address)
            cold = []
            for number in range(max(1, args.cold)):
                os.environ[CACHE_ENV] = str(Path(tmp) / f"cache-{number}")
                cold.append(one_build(client, repo))
            warm = [one_build(client, repo) for _ in range(args.warm)]
            changed = []
            for number in range(args.warm):
                change_code(repo, number)
                changed.append(one_build(client, repo))
        finally:
            sandbox.stop()
    warm_figures = summary([build for _, build in warm])
    save(
        "sandbox_build",
        {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            # The build itself (create_time to finish_time), then as the client sees it:
            # api_core's operation polling adds up to its polling interval.
            "service_build_cold_s": summary([build for _, build in cold]),
            "service_build_warm_s": warm_figures,
            "service_build_code_changed_s": summary([build for _, build in changed]),
            "service_build_cold_client_s": summary([client for client, _ in cold]),
            "service_build_warm_client_s": summary([client for client, _ in warm]),
            "warm_target_s": WARM_TARGET_S,
            "warm_meets_target": warm_figures["median"] <= WARM_TARGET_S,
        },
    )


if __name__ == "__main__":
    main()
