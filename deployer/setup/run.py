"""`deployer setup`: the steps in order, printed as they end, and a summary.

The order differs from a plain reading of the issue where one step needs another's
result: secrets are stored before their grants (a grant on a secret needs the secret),
and the worker job's grants follow the job.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from deployer import config_text
from deployer.config import parse_config
from deployer.setup import (
    accounts,
    apis,
    firestore,
    front,
    grants,
    image,
    secrets,
    sweep,
    worker_job,
)
from deployer.setup.context import Setup
from deployer.setup.names import (
    FRONT_FUNCTION,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    worker_job_name,
)
from deployer.setup.paste import paste_lines
from deployer.setup.steps import Outcome, Step, StepResult, run_steps, summary


def steps() -> list[Step]:
    """Every step, in the order it runs."""
    return [
        Step(apis.STEP, apis.enable_apis),
        Step(accounts.STEP, accounts.create_accounts),
        Step(firestore.STEP, firestore.ensure_firestore),
        Step(secrets.STEP, secrets.store_secrets),
        Step("project grants", grants.grant_on_project),
        Step("account grants", grants.grant_on_accounts),
        Step("secret grants", grants.grant_on_secrets),
        Step(image.STEP, image.ensure_image),  # sets Setup.image for the job (and the front)
        Step(worker_job.STEP, worker_job.ensure_worker_job),
        Step(
            "worker job grants",
            lambda s: grants.grant_on_worker_job(s, worker_job_name(s.project, s.region)),
        ),
        Step(sweep.STEP, sweep.ensure_sweep),
        Step(front.STEP, front.deploy_front),
        Step("service grants", grants.grant_on_services),
    ]


def run_setup(
    project: str,
    region: str,
    config_path: Path | str | None,
    secret_values: dict[str, str],
    image: str | None,
    dry_run: bool,
    say: Callable[[str], None] = print,
    front: str = FRONT_FUNCTION,
) -> list[StepResult]:
    """Run every step against `project`; each line is said as its step ends."""
    found = config_text.read(config_path)
    config = parse_config(found.text, found.origin, found.folder)
    setup = Setup(
        project,
        region,
        config,
        found.text,
        secret_values,
        image,
        dry_run,
        front=front,
        image_given=image is not None,
    )
    results: list[StepResult] = []
    try:
        for result in run_steps(steps(), setup):
            results.append(result)
            say(result.line())
    finally:
        setup.close()
    slack_stored = {SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET} <= setup.stored_versions.keys()
    for line in paste_lines(setup.front_url, slack_stored):
        say(line)
    say(summary(results, dry_run))  # last, where a script or a person looks for it
    return results


def exit_status(results: list[StepResult]) -> int:
    """0 when every step is done (or planned); 1 when something is missing."""
    return 1 if any(r.outcome == Outcome.MISSING for r in results) else 0
