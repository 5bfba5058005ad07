"""Preflight: everything that can be checked before anything changes.

Config, locks, the build config, every secret (pinned to a version), the
service as it runs now, and the ref. A deploy that passes preflight fails later
only for reasons the platform discovers (build, container, health).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.cloud.devtools import cloudbuild_v1

from deployer.build_config import BuildConfigError, load_build_config
from deployer.config import RESERVED_ENV, RESERVED_ENV_PREFIXES, Config, Environment, ServiceConfig
from deployer.dotenv import parse_dotenv
from deployer.errors import DotenvError
from deployer.pipeline import traffic
from deployer.pipeline.image_preflight import ImageLint, lint_image
from deployer.pipeline.ports import (
    PinnedSecret,
    Platform,
    SecretProblem,
    Secrets,
    ServiceState,
    SourceProblem,
    Sources,
    TrafficShare,
)
from deployer.pipeline.record import DeployRecord, Outcome
from deployer.pipeline.stages import Deadline, StageFailed
from deployer.store.protocol import Store


@dataclass(frozen=True)
class Plan:
    """What a deploy will do, known before it changes anything."""

    environment: str
    settings: Environment
    service: ServiceConfig  # where it deploys: `Config.target`
    builder: ServiceConfig  # where it builds: the service as written (`Config.service_of`)
    build: cloudbuild_v1.Build  # the build config as parsed, for `Builds.start` alone
    ref: str
    commit: str
    env: dict[str, str]  # plain values; from env_from_secret too, so never printed
    secret_env: dict[str, PinnedSecret]
    # None: the first deploy creates the service. One that serves nothing (no `keep`) is
    # taken over: the candidate gets all of its traffic.
    current: ServiceState | None
    # What served when the deploy first began (the record's baseline, never re-read on a
    # resumed run): the traffic to restore if anything goes wrong.
    baseline: tuple[TrafficShare, ...] = ()
    warnings: list[str] = field(default_factory=list)
    # Every value read from `env_from_secret`, those skipped too (a name a secret
    # reference sets may hold that very secret): hidden from quoted output with `env`.
    read_values: frozenset[str] = frozenset()

    @property
    def known_values(self) -> tuple[str, ...]:
        """The values quoted output must not show: the revision's plain environment and
        every value read from Secret Manager."""
        return (*self.env.values(), *self.read_values)

    @property
    def keep(self) -> tuple[TrafficShare, ...]:
        """The baseline's revisions that received requests."""
        return tuple(share for share in self.baseline if share.percent > 0)

    @property
    def previous_revision(self) -> str | None:
        """The revision that serves most traffic now."""
        if not self.keep:
            return None
        return max(self.keep, key=lambda share: share.percent).revision

    def lines(self) -> list[str]:
        """The plan for people; names only, never a value."""
        serving = ", ".join(f"{s.revision} {s.percent}%" for s in self.keep) or "nothing"
        secrets = ", ".join(
            f"{name}={pinned.secret}:{pinned.version}" for name, pinned in self.secret_env.items()
        )
        steps = " -> ".join(f"{step}%" for step in self.settings.rollout.steps)
        where = f"{self.service.project}/{self.service.region}"
        name, health = self.service.service, self.service.health
        if self.current is None:
            service = f"service {name} does not exist in {where}: the first deploy creates it"
        elif not self.keep:
            service = (
                f"service {name} in {where} exists but serves nothing: this deploy takes it over"
            )
        else:
            service = f"service {name} in {where}, now serving {serving}"
        if self.keep:
            candidate = f"candidate at 0% with tag, health {health.path} x{health.consecutive}, then traffic {steps}"
        else:
            # Cloud Run's traffic adds up to 100%: with no other revision to hold the rest,
            # the candidate serves all of it from the moment it is ready.
            unused = (
                f", so traffic {steps} has nothing to step from"
                if len(self.settings.rollout.steps) > 1
                else ""
            )
            candidate = (
                f"candidate with tag takes 100% once ready (nothing else serves{unused}), "
                f"health {health.path} x{health.consecutive}"
            )
        return [
            service,
            f"build {self.ref} = {self.commit[:12]} with {build_config_label(self.service)}, "
            f"image {self.service.image}",
            f"env: {', '.join(sorted(self.env)) or 'none'}; secrets pinned: {secrets or 'none'}",
            candidate,
            *[f"warning: {warning}" for warning in self.warnings],
        ]


def build_config_label(service: ServiceConfig) -> str:
    """Where the build's steps come from, for people."""
    if service.source.trigger:
        return f"trigger {service.source.trigger}"
    return f"{service.build_config} at that commit"


def build_config_name(service: ServiceConfig) -> str:
    """The build config a fix is written in."""
    if service.source.trigger:
        return f"trigger {service.source.trigger}'s build config"
    return service.build_config


def lint(
    platform: Platform,
    service: ServiceConfig,
    settings: Environment,
    build: cloudbuild_v1.Build,
    commit: str,
    provided: set[str],
    deadline: Deadline,
) -> ImageLint:
    """The Dockerfile lint of `commit`'s build (`image_preflight`)."""
    return lint_image(
        platform.sources,
        service,
        settings,
        build,
        commit,
        provided,
        build_config_name(service),
        max(1.0, deadline.left()),
    )


def stop_on(found: ImageLint) -> None:
    """StageFailed naming every FAIL of the lint, before any build is spent."""
    failures = found.failures
    if not failures:
        return
    first = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    raise StageFailed(
        f"the image would fail, so nothing was built: {first.subject}: {first.message}{more}",
        "\n".join(f"{finding.subject}: {finding.message}" for finding in failures),
    )


def check_locks(store: Store, environment: str, requester: str, deploy_id: str = "") -> None:
    """Fail when someone else locked the environment or another deploy runs in it.

    The deploy lock of `deploy_id` itself does not count: a worker that died
    mid-deploy leaves it behind, and the resumed run carries on under it.
    """
    for lock in store.locks(environment):
        if lock.kind == "manual" and lock.holder != requester:
            reason = f": {lock.reason}" if lock.reason else ""
            raise StageFailed(f"{environment} is locked by {lock.holder}{reason}")
        if lock.kind == "deploy" and lock.holder != deploy_id:
            raise StageFailed(f"deploy {lock.holder} is already running in {environment}")


def load_build(
    sources: Sources, service: ServiceConfig, commit: str, deadline: Deadline
) -> cloudbuild_v1.Build:
    """The build config of `commit`, read where it lives (the repository, or the trigger)."""
    try:
        found = sources.build_config(service, commit, timeout=max(1.0, deadline.left()))
    except SourceProblem as problem:
        raise StageFailed(str(problem), problem.fix) from None
    try:
        return load_build_config(found.text, name=found.origin)
    except BuildConfigError as error:
        raise StageFailed("build config is invalid", str(error)) from None


def resolve_env(
    secrets: Secrets,
    service: ServiceConfig,
    settings: Environment,
    read: set[str] | None = None,
) -> tuple[dict[str, str], dict[str, PinnedSecret], list[str]]:
    """Plain env, pinned secret refs and warnings; StageFailed names any unusable secret.

    `read`, when given, receives every value read from `env_from_secret`, skipped or not.
    """
    warnings: list[str] = []
    env: dict[str, str] = {}
    problems: list[str] = []
    if settings.env_from_secret is not None:
        try:
            _, text = secrets.read_text(service.project, settings.env_from_secret)
            from_file = parse_dotenv(text, source=f"secret {settings.env_from_secret.secret}")
        except (SecretProblem, DotenvError) as error:
            problems.append(str(error))
            from_file = {}
        if read is not None:
            read.update(from_file.values())
        for name, value in from_file.items():
            if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
                warnings.append(
                    f"{name} from {settings.env_from_secret.secret} skipped: Cloud Run sets it"
                )
            elif name in settings.secrets:
                warnings.append(
                    f"{name} from {settings.env_from_secret.secret} skipped: a secret reference sets it"
                )
            else:
                env[name] = value
    env.update(settings.env)  # the config's own values win over the dotenv secret
    pinned: dict[str, PinnedSecret] = {}
    for name, ref in settings.secrets.items():
        try:
            pinned[name] = secrets.pin(service.project, ref)
        except SecretProblem as error:
            problems.append(f"{name}: {error}")
    if problems:
        raise StageFailed(
            "secrets not usable: " + "; ".join(problems),
            "create or enable them in Secret Manager (`deployer env import`), or fix the config",
        )
    return env, pinned, warnings


def baseline_of(record: DeployRecord, current: ServiceState | None) -> tuple[TrafficShare, ...]:
    """The record's saved baseline; on its first preflight, `current`'s traffic, saved in it."""
    if record.baseline_traffic is None:
        record.baseline_traffic = traffic.to_shares(current.traffic if current else ())
    return traffic.from_shares(record.baseline_traffic)


def resolve_ref(
    sources: Sources, service: ServiceConfig, ref: str | None, deadline: Deadline
) -> str:
    try:
        return sources.resolve(service, ref, timeout=max(1.0, deadline.left()))
    except SourceProblem as problem:
        raise StageFailed(str(problem), problem.fix) from None


# Cloud Run's request metrics reach Monitoring "up to 240 seconds" after sampling
# (cloud.google.com/monitoring/api/metrics_gcp, run.googleapis.com/request_count).
MONITORING_LAG = 240.0


def analysis_fits(settings: Environment, environment: str, min_interval: float) -> list[str]:
    """StageFailed when `[analysis]` cannot work as configured; warnings when it may run
    out of time waiting for Monitoring's data."""
    rules = settings.analysis
    if rules is None:
        return []
    table = f"environments.{environment}"
    if rules.interval < min_interval:
        raise StageFailed(
            f"{table}.analysis interval is {rules.interval:g} s; Cloud Monitoring counts "
            f"Cloud Run's requests per {min_interval:g} s",
            f"set interval = {min_interval:g} or more",
        )
    judged = sum(1 for step in settings.rollout.steps if step < 100)
    needed = judged * rules.interval
    promote = settings.timeouts.promote
    if needed >= promote:
        raise StageFailed(
            f"{table}.timeouts.promote ({promote:g} s) cannot hold {judged} judged "
            f"step(s) of {rules.interval:g} s each",
            f"raise timeouts.promote above {needed + MONITORING_LAG * judged:g}",
        )
    if min_interval >= 60 and promote < needed + MONITORING_LAG * judged:
        return [
            f"{table}.timeouts.promote ({promote:g} s) leaves less than "
            f"{MONITORING_LAG:g} s a step for Cloud Monitoring's data, which can arrive that "
            "late: a step may fail unjudged"
        ]
    return []


def make_plan(
    config: Config, platform: Platform, store: Store, record: DeployRecord, deadline: Deadline
) -> Plan:
    """Every check that needs no change: locks, build config, secrets, the service, the ref."""
    settings = config.environment(record.environment)
    service, builder = config.target(record.environment), config.service_of(record.environment)
    check_locks(store, record.environment, record.requester, record.id)
    commit = record.commit or resolve_ref(platform.sources, builder, record.ref, deadline)
    build = load_build(platform.sources, builder, commit, deadline)
    read: set[str] = set()
    env, secret_env, warnings = resolve_env(platform.secrets, service, settings, read)
    found = lint(platform, builder, settings, build, commit, {*env, *secret_env}, deadline)
    stop_on(found)
    warnings += [f"{finding.subject}: {finding.message}" for finding in found.warnings]
    warnings += analysis_fits(settings, record.environment, platform.metrics.min_interval)
    # A service that exists but serves nothing (its first revision failed: Cloud Run keeps
    # traffic_statuses empty until one serves) is taken over like a new one. On a resumed
    # run whatever serves now may be this deploy's own half-done work: the baseline, not
    # this reading, is what gets restored.
    current = platform.services.current(service)
    if deadline.expired():
        raise StageFailed("preflight ran out of time", outcome=Outcome.TIMED_OUT)
    return Plan(
        environment=record.environment,
        settings=settings,
        service=service,
        builder=builder,
        build=build,
        ref=record.ref or "HEAD",
        commit=commit,
        env=env,
        secret_env=secret_env,
        current=current,
        baseline=baseline_of(record, current),
        warnings=warnings,
        read_values=frozenset(read),
    )
