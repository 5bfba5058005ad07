"""The tables of an environment in `deployer.toml`: how its revisions run, its rollout,
timeouts, who may deploy and when (`deployer.config` puts them together)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from deployer import deploy_windows, run_names
from deployer.config_fields import (
    Duration,
    Frozen,
    Repository,
    Seconds,
    SlackChannel,
    SlackUser,
    SlackUserGroup,
)


def fits_cloud_run(service: str) -> str:
    """`service`, when the names its candidates get fit Cloud Run's limits; ValueError else."""
    problems = []
    revision = run_names.longest_revision_name(service)
    if len(revision) > run_names.REVISION_NAME_MAX:
        problems.append(
            f"the candidate revision names it gets, like {revision!r}, would be "
            f"{len(revision)} characters; the limit is {run_names.REVISION_NAME_MAX}"
        )
    tag = run_names.CANDIDATE_TAG
    label = run_names.tag_url_label(service)
    if (
        len(tag) + len(service) > run_names.TAG_AND_SERVICE_MAX
        or len(label) > run_names.DNS_LABEL_MAX
    ):
        problems.append(
            f"its candidate tag {tag!r} and the service name together would be "
            f"{len(tag) + len(service)} characters, and the tag's URL label, like "
            f"{label!r}, {len(label)}; the limits are {run_names.TAG_AND_SERVICE_MAX} "
            f"and {run_names.DNS_LABEL_MAX}"
        )
    if problems:
        raise ValueError(
            f"{service!r} is too long for Cloud Run: {'; '.join(problems)}. Use a "
            f"service name of at most {run_names.longest_service_name()} characters."
        )
    return service


class RunSettings(Frozen):
    """Cloud Run settings of the revisions an environment runs."""

    memory: str = Field("512Mi", pattern=r"^[0-9]+(Mi|Gi)$")
    cpu: str = Field("1", pattern=r"^([0-9]+|[0-9]+m)$")
    concurrency: int = Field(80, ge=1, le=1000)
    min_instances: int = Field(0, ge=0, le=1000)
    max_instances: int = Field(10, ge=1, le=1000)
    request_timeout: int = Field(300, ge=1, le=3600)
    port: int = Field(8080, ge=1, le=65535)
    allow_unauthenticated: bool = False
    service_account: str | None = None


class Rollout(Frozen):
    """Traffic steps after the tagged candidate passed its health check."""

    steps: list[int] = Field(default_factory=lambda: [100])
    # Wait between steps, with health probes of the service URL, before the next step.
    step_wait: float = Field(0.0, ge=0, le=3600)

    @field_validator("steps")
    @classmethod
    def _increasing_to_100(cls, steps: list[int]) -> list[int]:
        if not steps or steps[-1] != 100:
            raise ValueError("traffic steps must end at 100, e.g. [10, 50, 100]")
        if any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise ValueError("traffic steps must be strictly increasing percentages in 1..100")
        return steps


class Timeouts(Frozen):
    """Seconds each stage may take before it fails with a timeout."""

    preflight: Seconds = 60
    build: Seconds = 1200
    deploy: Seconds = 120
    ready: Seconds = 300
    health: Seconds = 120
    promote: Seconds = 300
    verify: Seconds = 60


class Access(Frozen):
    """Who may deploy: Slack users, user groups and channels; GitHub repositories.

    `admins` (Slack users and user groups) may also force the environment's locks open
    (`/deploy unlock ENV force`); nobody may by default.
    """

    slack_users: list[SlackUser] = Field(default_factory=list)
    slack_usergroups: list[SlackUserGroup] = Field(default_factory=list)
    slack_channels: list[SlackChannel] = Field(default_factory=list)
    github_repositories: list[Repository] = Field(default_factory=list)
    admins: list[SlackUser | SlackUserGroup] = Field(default_factory=list)


class DeployWindows(Frozen):
    """When deploys may start (`deployer/deploy_windows.py` has the grammar); deny wins."""

    timezone: str
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        deploy_windows.zone(value)
        return value

    @field_validator("allow", "deny")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        for text in value:
            deploy_windows.parse_range(text)
        return value

    @model_validator(mode="after")
    def _opens_sometime(self) -> DeployWindows:
        if not (self.allow or self.deny):
            raise ValueError("say when deploys may start: give `allow` or `deny` ranges")
        if self.rules().never_open():
            raise ValueError(
                "these windows never open: every minute of the week is denied or outside allow"
            )
        return self

    def rules(self) -> deploy_windows.Windows:
        """The parsed ranges."""
        return deploy_windows.Windows(
            self.timezone,
            tuple(deploy_windows.parse_range(text) for text in self.allow),
            tuple(deploy_windows.parse_range(text) for text in self.deny),
        )


class Approval(Frozen):
    """Who must approve a deploy before its traffic moves (`deployer/pipeline/approval.py`).

    The candidate has passed health at 0 % when the thread asks; the deploy then waits,
    parked in the store, until `required` approvers said yes, one said no, or `timeout`
    ran out (a rejection: the candidate's tag goes, traffic stays).
    """

    required: int = Field(1, ge=1, le=10)
    approvers: list[SlackUser | SlackUserGroup] = Field(min_length=1)
    timeout: Duration = 1800
    allow_self: bool = False  # may the requester approve their own deploy
