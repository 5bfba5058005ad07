"""An execution of a Cloud Run job as the sandbox records it: made from the job and
RunJob's overrides (args, env, task count, timeout), with the platform's variables, the
command its tasks run, and the lines they write (`ExecutionRunner` runs it)."""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from google.cloud import run_v2

from deployer_sandbox.cloud_run.containers import argv_of, base_environment
from deployer_sandbox.cloud_run.job_names import new_execution_id
from deployer_sandbox.cloud_run.resources import condition
from deployer_sandbox.common.child_processes import minimal_environment
from deployer_sandbox.common.images import Image, ImageStore
from deployer_sandbox.common.protos import clone, new_etag, now
from deployer_sandbox.common.rpc import failed_precondition, invalid

State = run_v2.Condition.State


class TaskLogLine(NamedTuple):
    """One line of a task attempt, as Cloud Logging receives it (`cloud_logging.sources`)."""

    timestamp: datetime  # when the sandbox read it (UTC)
    text: str
    number: int  # increases with every line the sandbox records: a tie-breaker
    task_index: int
    task_attempt: int
    system: bool = False  # the platform's own line ("Container called exit(1).")


LINE_NUMBERS = itertools.count(1)
_HISTORY_LINES = 10_000


@dataclass
class Execution:
    """One execution's record, its cancel signal and the task processes it runs."""

    message: run_v2.Execution
    operation: str
    argv: list[str]  # the container's argv, overrides applied
    image: Image | None  # None: a local command, run in `cwd`
    cwd: str
    env: dict[str, str]
    max_retries: int
    timeout: float
    log_path: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    processes: set[subprocess.Popen[bytes]] = field(default_factory=set)
    failure: str = ""
    started: float = field(default_factory=time.monotonic)
    # The platform's variables, set over whatever the container declares.
    platform: dict[str, str] = field(default_factory=dict)
    # The lines its tasks wrote, and the platform's own, as Cloud Logging receives them
    # (the newest _HISTORY_LINES: a chatty task must not fill the sandbox's memory).
    lines: deque[TaskLogLine] = field(default_factory=lambda: deque(maxlen=_HISTORY_LINES))


def new_execution(
    job: run_v2.Job,
    overrides: Any,
    images: ImageStore,
    logs: Path,
    platform_env: Mapping[str, str] | None = None,
) -> Execution:
    """A pending execution of `job` with RunJob's `overrides`; its log file goes in `logs`.

    `platform_env` is in every task's environment, over the container's own
    (the sandbox's metadata server: GCE_METADATA_HOST, GCE_METADATA_IP).
    """
    template = clone(job.template)
    container = template.template.containers[0]
    for override in overrides.container_overrides:
        if override.name and override.name != container.name:
            raise invalid(f"Container override names unknown container '{override.name}'.")
        if override.clear_args:
            del container.args[:]
        elif override.args:
            container.args = list(override.args)
        merged = {env.name: env for env in container.env}
        merged.update({env.name: env for env in override.env})
        container.env = list(merged.values())
    if overrides.task_count:
        template.task_count = overrides.task_count
    if run_v2.RunJobRequest.Overrides.pb(overrides).HasField("timeout"):
        template.template.timeout = overrides.timeout
    job_id = job.name.rsplit("/", 1)[1]
    name = f"{job.name}/executions/{new_execution_id(job_id)}"
    log_path = logs / f"{name.rsplit('/', 1)[1]}.log"
    message = run_v2.Execution(
        name=name,
        uid=str(uuid.uuid4()),
        generation=1,
        observed_generation=1,
        create_time=now(),
        update_time=now(),
        launch_stage=job.launch_stage,
        job=job_id,
        parallelism=template.parallelism,
        task_count=template.task_count,
        template=template.template,
        reconciling=True,
        log_uri=log_path.as_uri(),
        etag=new_etag(),
        labels=dict(template.labels),
        annotations=dict(template.annotations),
        conditions=[
            condition("ResourcesAvailable", State.CONDITION_PENDING),
            condition("Started", State.CONDITION_PENDING),
            condition("Completed", State.CONDITION_PENDING),
        ],
    )
    image, argv, cwd, env = _command(images, container)
    platform = {
        **(platform_env or {}),
        "CLOUD_RUN_JOB": job_id,
        "CLOUD_RUN_EXECUTION": name.rsplit("/", 1)[1],
        "CLOUD_RUN_TASK_COUNT": str(template.task_count),
    }
    env.update(platform)
    timeout = run_v2.TaskTemplate.pb(template.template).timeout.ToTimedelta().total_seconds()
    return Execution(
        message,
        "",
        argv,
        image,
        cwd,
        env,
        template.template.max_retries,
        timeout,
        log_path,
        platform=platform,
    )


def _command(
    images: ImageStore, container: run_v2.Container
) -> tuple[Image | None, list[str], str, dict[str, str]]:
    """(image, argv, cwd, environment without secrets resolved yet) of a task's container."""
    image = images.resolve(container.image)
    if image is not None:
        return image, argv_of(image, container.command, container.args), "", base_environment(image)
    if not container.command:
        raise failed_precondition(f"Image '{container.image}' not found.")
    argv = [*container.command, *container.args]
    return None, argv, os.getcwd(), minimal_environment()
