"""`deployer check [ENV]`: the deploy's preflight and more, without deploying anything.

One line per check, `ok`, `warn` or `FAIL`; any FAIL means a deploy would stop.
The checks reuse the pipeline's own preflight functions, so `check` and a
deploy cannot disagree about the config, the build config, secrets, the service
or the ref. Rights are asked with `testIamPermissions` where the API has it;
an API that does not answer (the sandbox's Secret Manager) is reported, not failed.
With SLACK_BOT_TOKEN, Slack's `auth.test` says whether the token is taken; with
DEPLOYER_DISPATCH, the deployer's own project is checked as `deployer setup` shapes it
(`check_project`: APIs, the accounts' roles, the worker job).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from deployer.check_analysis import check_analysis
from deployer.check_preflight import (
    SourceRead,
    check_health_path,
    check_image,
    check_image_lint,
    check_secrets,
    check_service,
    check_source,
)
from deployer.check_project import check_project
from deployer.check_results import Check, CheckReport, EnvironmentReport, Status, plural
from deployer.check_rights import (
    check_act_as,
    check_public_access,
    check_runtime_access,
    check_secret_rights,
    check_service_rights,
    check_worker_job,
)
from deployer.check_slack import check_bot_token, check_channel, check_chart_scope, check_usergroups
from deployer.cli_ports import Permissions, ProjectReader
from deployer.config import Config, load_config
from deployer.errors import ConfigError
from deployer.front.ports import Chat
from deployer.pipeline.ports import Platform


def run_checks(
    platform: Callable[[], Platform],
    permissions: Callable[[], Permissions],
    environment: str | None = None,
    ref: str | None = None,
    config_path: Path | str | None = None,
    chat: Callable[[], Chat | None] = lambda: None,
    dispatch: str = "",
    project: Callable[[], ProjectReader] | None = None,
    store: str = "",
) -> CheckReport:
    """Check one environment (or all) without changing anything (Slack too, given `chat`;
    the worker job, given `dispatch`: DEPLOYER_DISPATCH's job name; with `project` too, the
    deployer's project as setup shapes it, its store being `store`: DEPLOYER_STORE)."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        return CheckReport(Check(Status.FAIL, "config", str(error)))
    names = [environment] if environment else sorted(config.environments)
    head = Check(
        Status.OK,
        "config",
        f"{config.path} is valid: {_count(config.services, 'service')}, "
        f"{_count(config.environments, 'environment')}",
    )
    if environment and environment not in config.environments:
        known = ", ".join(sorted(config.environments))
        return CheckReport(
            Check(
                Status.FAIL,
                "config",
                f"no environment {environment!r} in {config.path}; known: {known}",
            )
        )
    world, rights, slack = platform(), permissions(), chat()
    reports = tuple(_environment(config, name, world, rights, ref, slack) for name in names)
    own: list[Check] = []
    if slack is not None:
        own.append(check_bot_token(slack))
    if dispatch.startswith("projects/"):
        if project is not None:
            own.extend(check_project(project(), config, dispatch, store))
        own.append(check_worker_job(rights, dispatch))
    return CheckReport(head, reports, tuple(own))


def _count(items: Mapping[str, object], noun: str) -> str:
    names = ", ".join(sorted(items))
    return f"{plural(len(items), noun)} ({names})"


def _environment(
    config: Config,
    name: str,
    platform: Platform,
    rights: Permissions,
    ref: str | None,
    chat: Chat | None,
) -> EnvironmentReport:
    settings = config.environment(name)
    # Builds (source, build config, the image's lint) are the service's; the rest is about
    # where the environment deploys.
    builder, service = config.service_of(name), config.target(name)
    read: list[SourceRead] = []
    checks: list[Check] = check_source(platform, builder, settings, ref, read)
    provided: set[str] = set()
    pinned = check_secrets(platform, service, settings, checks, provided)
    if read:
        checks.extend(check_image_lint(platform, builder, settings, read[0], provided))
    exists = check_service(platform, service, checks)
    if exists and (health := check_health_path(platform, service, settings)) is not None:
        checks.append(health)
    checks.append(check_image(service))
    checks.append(check_service_rights(rights, service, settings, exists))
    if (act_as := check_act_as(service, settings)) is not None:
        checks.append(act_as)
    checks.append(check_secret_rights(rights, service, settings, pinned))
    checks.append(check_runtime_access(rights, service, settings, pinned))
    if exists:
        checks.append(check_public_access(rights, service, settings))
    checks.extend(check_analysis(platform, service, settings, name))
    if chat is None:
        checks.append(Check(Status.WARN, "slack", "SLACK_BOT_TOKEN is not set: Slack not checked"))
    else:
        checks.append(check_channel(chat, settings))
        if (files := check_chart_scope(chat, settings)) is not None:
            checks.append(files)
        groups = check_usergroups(chat, settings)
        if groups is not None:
            checks.append(groups)
    title = f"{name}: service {service.service} in {service.project}/{service.region}"
    return EnvironmentReport(name, title, tuple(checks))


# --- what the user reads -----------------------------------------------------------------


def render_checks(report: CheckReport) -> list[str]:
    """One line per check, then a count."""
    lines = [_line(report.config), *(_line(check) for check in report.deployer)]
    for environment in report.environments:
        lines.append(environment.title)
        lines.extend(_line(check) for check in environment.checks)
    every = report.all()
    counts = {status: sum(1 for c in every if c.status == status) for status in Status}
    verdict = "would stop a deploy" if report.failed else "a deploy can go ahead"
    lines.append(
        f"{counts[Status.OK]} ok, {counts[Status.WARN]} warn, {counts[Status.FAIL]} FAIL: {verdict}"
    )
    return lines


def _line(check: Check) -> str:
    return f"  {check.status:<4}  {check.subject}: {check.message}"
