"""How long the worker job's task may run: longer than the longest deploy the config
allows, since Cloud Run kills a task at its timeout (default 600 s, shorter than the
default build timeout alone) and a killed worker is only retried, resuming its deploy.

One run of a deploy, per environment, at most:

    every stage's timeout          preflight + build + deploy + ready + health + promote + verify
    + its hooks' timeouts          predeploy, postdeploy (Cloud Run job executions it waits on)
    + the traffic steps' waits     each step after the first waits `rollout.step_wait`, or
                                   `analysis.interval` for every step when analysis judges them
    + the watch after verify       `analysis.watch`
    + a margin                     Slack posts and store writes between stages

Approval waits are not counted: a deploy awaiting approval parks in the store with no run
alive (`pipeline/approval.py`); the vote starts a new execution. The longest
environment's sum is the job's timeout, within Cloud Run's 24 h.
"""

from __future__ import annotations

import math

from deployer.config import Config, Environment

MARGIN_S = 300
CLOUD_RUN_MAX_S = 24 * 3600
CLOUD_RUN_DEFAULT_S = 600


def longest_run_s(environment: Environment) -> float:
    """The longest one run of a deploy to `environment` may take, without the margin."""
    stages = sum(environment.timeouts.model_dump().values())
    hooks = sum(h.timeout for h in (environment.hooks.predeploy, environment.hooks.postdeploy) if h)
    steps = len(environment.rollout.steps)
    analysis = environment.analysis
    if analysis is not None:
        traffic = steps * analysis.interval + analysis.watch
    else:
        traffic = (steps - 1) * environment.rollout.step_wait
    return float(stages + hooks + traffic)


def task_timeout_s(config: Config) -> int:
    """The worker job's task timeout, whole seconds."""
    longest = max((longest_run_s(e) for e in config.environments.values()), default=0.0)
    return min(CLOUD_RUN_MAX_S, max(CLOUD_RUN_DEFAULT_S, math.ceil(longest + MARGIN_S)))
