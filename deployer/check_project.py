"""`deployer check`: the deployer's own project, as `deployer setup` shapes it.

Checked when DEPLOYER_DISPATCH names the worker job (`projects/P/locations/R/jobs/J`):
P is the deployer's project and R its region.

    APIs          enabled where the deployer calls them (`check_apis`)
    roles         the accounts' project roles, nothing broader (`check_bindings`)
    worker job    the job exists, and its task timeout is longer than the longest deploy
                  the config allows (`setup/worker_timeout.py`'s `longest_run_s`, the
                  figure setup sets it from); Cloud Run kills a task at its timeout
"""

from __future__ import annotations

from deployer.check_apis import check_apis
from deployer.check_bindings import check_bindings
from deployer.check_results import Check, Status
from deployer.cli_ports import ProjectReader
from deployer.config import Config


def check_project(reader: ProjectReader, config: Config, job: str, store: str) -> list[Check]:
    """The deployer's project checks; `job` is DEPLOYER_DISPATCH's full job name."""
    parts = job.split("/")
    if len(parts) != 6 or parts[0] != "projects" or parts[2] != "locations" or parts[4] != "jobs":
        return [
            Check(
                Status.FAIL,
                "worker job",
                f"DEPLOYER_DISPATCH={job!r} is not projects/P/locations/R/jobs/J",
            )
        ]
    project, region = parts[1], parts[3]
    checks = check_apis(reader, config, project, store)
    checks += check_bindings(reader, config, project, region, reader.deployer_account())
    checks.append(check_worker_present(reader, config, job))
    return checks


def check_worker_present(reader: ProjectReader, config: Config, job: str) -> Check:
    """The worker job exists, with a task timeout longer than the longest deploy."""
    subject = "worker job"
    short, region = job.rsplit("/", 1)[-1], job.split("/")[3]
    found = reader.worker_job(job)
    if found.note:
        return Check(Status.WARN, subject, f"{short}: not checked ({found.note})")
    if not found.found:
        return Check(
            Status.FAIL,
            subject,
            f"{job} does not exist: no deploy can start. Run `deployer setup`, or point "
            "DEPLOYER_DISPATCH at the worker job",
        )
    from deployer.setup.worker_timeout import longest_run_s, task_timeout_s

    runs = {name: longest_run_s(config.environment(name)) for name in config.environments}
    timeout = f"task timeout {found.task_timeout:g} s"
    if not runs:
        return Check(Status.OK, subject, f"{short} exists, {timeout}")
    environment = max(runs, key=lambda name: runs[name])
    longest = f"{environment}'s {runs[environment]:g} s"
    if found.task_timeout <= runs[environment]:
        return Check(
            Status.WARN,
            subject,
            f"{short}: {timeout} is not longer than the longest deploy the config allows "
            f"({longest}: stage, hook and traffic-step timeouts): Cloud Run would kill it "
            f"first. `gcloud run jobs update {short} --region={region} "
            f"--task-timeout={task_timeout_s(config)}s` (or run `deployer setup`)",
        )
    return Check(
        Status.OK, subject, f"{short} exists, {timeout}, longer than the longest deploy ({longest})"
    )
