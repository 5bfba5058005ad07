"""The narrow interface the hook stages need from Cloud Run jobs (`Platform.hooks`).

A hook is one command run once from the candidate's image, as an execution of a Cloud
Run job the deployer keeps per service and hook (`run_names.hook_job_name`). The
adapter (`deployer/adapters/cloud_run_hook_jobs.py`) creates or updates the job,
runs it, waits for the execution and reads its last log lines; the stages
(`deployer/pipeline/hooks.py`) decide what its outcome means for the deploy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from deployer.config import RunSettings, ServiceConfig

if TYPE_CHECKING:  # ports imports this module for `Platform.hooks`
    from deployer.pipeline.ports import PinnedSecret

PREDEPLOY = "predeploy"
POSTDEPLOY = "postdeploy"
# Lines of the job's log a failure quotes: enough for a traceback's end.
HOOK_LOG_LINES = 20


@dataclass(frozen=True)
class HookSpec:
    """What one hook runs: the candidate's image and environment, the hook's command."""

    hook: str  # PREDEPLOY or POSTDEPLOY
    image: str  # the candidate's image, by digest
    command: tuple[str, ...]  # replaces the image's ENTRYPOINT and CMD
    env: Mapping[str, str]
    secret_env: Mapping[str, PinnedSecret]
    settings: RunSettings  # service account, cpu, memory of the environment's revisions
    timeout: float  # seconds the task may run (the job's task timeout), from the config
    # On the job's executions; `DEPLOY_LABEL` says which deploy ran one, so that a
    # resumed deploy finds the execution its lost run started.
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HookOutcome:
    """How one execution of a hook ended, as Cloud Run and its log tell it."""

    ok: bool
    execution: str  # the execution's short name ("" when none was started)
    summary: str  # "exited 1 after 3 s", "timed out after 600 s", "succeeded in 2 s"
    log_lines: tuple[str, ...] = ()  # the execution's last lines, newest last, redacted
    log_url: str = ""  # where people read the whole log (Cloud Console)
    timed_out: bool = False
    # Whether this execution was started by an earlier run of the same deploy (a resumed
    # deploy found it rather than running the command a second time).
    earlier: bool = False


Started = Callable[[str, str], None]
"""Told (the execution's short name, its log URL) once a hook's execution is known."""


class HookRefused(Exception):
    """Cloud Run refused to create, update or run the hook's job; the message quotes it."""


class HookJobs(Protocol):
    """Cloud Run jobs that run a service's hooks."""

    def run(
        self,
        service: ServiceConfig,
        spec: HookSpec,
        timeout: float,
        started: Started | None = None,
    ) -> HookOutcome:
        """Create or update the service's job for `spec.hook`, run it once and wait at most
        `timeout` seconds in all for the execution to end (cancelled, and said timed out,
        when it does not; Cloud Run itself stops the task after `spec.timeout`).

        An execution labelled with the same deploy (an earlier run's) is not run again:
        its outcome is reused when it ended, and it is waited for when it still runs.
        `started` hears of the execution once it is known, before the wait. HookRefused
        when Cloud Run refuses the job or the run."""
        ...
