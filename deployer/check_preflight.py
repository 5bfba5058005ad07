"""The checks a deploy's preflight makes: ref and build config, secrets, service and image."""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.cloud.devtools import cloudbuild_v1

from deployer.check_results import Check, Status, plural
from deployer.config import Environment, ServiceConfig
from deployer.pipeline.ports import Platform, SecretProblem
from deployer.pipeline.preflight import (
    build_config_label,
    lint,
    load_build,
    resolve_env,
    resolve_ref,
)
from deployer.pipeline.probes import probe_once
from deployer.pipeline.stages import Deadline, StageFailed

_REGISTRY_REGION = re.compile(r"^(?P<region>[a-z0-9-]+)-docker\.pkg\.dev/")


@dataclass(frozen=True)
class SourceRead:
    """The commit a deploy would build and its build config, as preflight reads them."""

    commit: str
    build: cloudbuild_v1.Build


def check_source(
    platform: Platform,
    service: ServiceConfig,
    settings: Environment,
    ref: str | None,
    read: list[SourceRead] | None = None,
) -> list[Check]:
    """Whether the ref resolves and the build config at that commit loads, as the deploy
    does; `read` receives both when they do."""
    subject = f"ref {ref or 'HEAD'}"
    deadline = Deadline(settings.timeouts.preflight)
    try:
        commit = resolve_ref(platform.sources, service, ref, deadline)
    except StageFailed as failure:
        return [
            Check(Status.FAIL, subject, _with_fix(failure)),
            Check(Status.FAIL, "build config", "not read: the ref did not resolve"),
        ]
    checks = [Check(Status.OK, subject, f"resolves to {commit[:12]}")]
    try:
        build = load_build(platform.sources, service, commit, deadline)
    except StageFailed as failure:
        checks.append(Check(Status.FAIL, "build config", _with_fix(failure)))
        return checks
    if read is not None:
        read.append(SourceRead(commit, build))
    steps = len(build.steps)
    checks.append(
        Check(
            Status.OK,
            "build config",
            f"{build_config_label(service).removesuffix(' at that commit')} at {commit[:12]} "
            f"loads ({plural(steps, 'step')})",
        )
    )
    return checks


def _with_fix(failure: StageFailed) -> str:
    return f"{failure.summary}: {failure.detail}" if failure.detail else failure.summary


def check_secrets(
    platform: Platform,
    service: ServiceConfig,
    settings: Environment,
    checks: list[Check],
    provided: set[str] | None = None,
) -> list[str]:
    """One check per secret reference (and env_from_secret); the ids that exist.
    `provided` receives the variable names the revision would get (env, secrets, and
    those env_from_secret holds)."""
    if provided is not None:
        provided.update(settings.env, settings.secrets)
    usable: list[str] = []
    for name, ref in settings.secrets.items():
        try:
            pinned = platform.secrets.pin(service.project, ref)
        except SecretProblem as problem:
            checks.append(Check(Status.FAIL, f"secret {name}", f"{ref}: {problem}"))
            continue
        usable.append(ref.secret)
        checks.append(
            Check(Status.OK, f"secret {name}", f"{ref} -> version {pinned.version}, enabled")
        )
    source = settings.env_from_secret
    if source is None:
        return usable
    subject = "env_from_secret"
    try:
        pinned = platform.secrets.pin(service.project, source)
        # The deploy's own reading: CRC32C-checked, parsed exactly, reserved names skipped.
        alone = settings.model_copy(update={"secrets": {}, "env": {}})
        env, _, warnings = resolve_env(platform.secrets, service, alone)
    except SecretProblem as problem:
        checks.append(Check(Status.FAIL, subject, f"{source}: {problem}"))
        return usable
    except StageFailed as failure:
        checks.append(Check(Status.FAIL, subject, f"{source}: {failure.summary}"))
        return usable
    usable.append(source.secret)
    if provided is not None:
        provided.update(env)
    shadowed = sorted(set(env) & (set(settings.secrets) | set(settings.env)))
    note = f"; {', '.join(shadowed)} set by the config instead" if shadowed else ""
    checks.append(
        Check(
            Status.OK,
            subject,
            f"{source} -> version {pinned.version}: {plural(len(env), 'variable')} parse{note}",
        )
    )
    checks.extend(Check(Status.WARN, subject, warning) for warning in warnings)
    return usable


def check_image_lint(
    platform: Platform,
    service: ServiceConfig,
    settings: Environment,
    source: SourceRead,
    provided: set[str],
) -> list[Check]:
    """The deploy's own Dockerfile lint (`image_preflight`): one line per finding."""
    deadline = Deadline(settings.timeouts.preflight)
    found = lint(platform, service, settings, source.build, source.commit, provided, deadline)
    return [
        Check(Status(finding.level), finding.subject, finding.message) for finding in found.findings
    ]


def check_service(platform: Platform, service: ServiceConfig, checks: list[Check]) -> bool:
    """Add the Cloud Run service's check; whether the service exists."""
    subject = f"service {service.service}"
    try:
        state = platform.services.current(service)
    except Exception as error:  # any API failure is this check's answer, not a crash
        checks.append(Check(Status.FAIL, subject, f"cannot read it: {error}"))
        return False
    if state is None:
        checks.append(
            Check(Status.OK, subject, "does not exist yet: will be created by the first deploy")
        )
        return False
    if not state.serving():
        # Cloud Run keeps traffic empty until a first revision serves (a failed first
        # deploy leaves it so); the deploy creates its candidate with all of the traffic.
        checks.append(
            Check(
                Status.WARN,
                subject,
                "exists but serves nothing: none of its revisions has ever served (a failed "
                "first deploy); the next deploy takes it over",
            )
        )
        return True
    serving = ", ".join(f"{share.revision} {share.percent}%" for share in state.serving())
    checks.append(Check(Status.OK, subject, f"exists, serving {serving}"))
    return True


def check_health_path(
    platform: Platform, service: ServiceConfig, settings: Environment
) -> Check | None:
    """What the health path answers on the revision that serves now (None when nothing
    serves). A 404 there is a warning: the candidate is judged on that path, and an app
    that serves its health route elsewhere (`/api/v1/utils/health-check/`) fails it."""
    check = service.health
    subject = f"health {check.path}"
    try:
        state = platform.services.current(service)
    except Exception:  # the service check above has said why it cannot be read
        return None
    if state is None or not state.serving():
        return None
    audience = "" if settings.run.allow_unauthenticated else state.uri
    timeout = min(10.0, check.request_timeout * 2)
    outcome = probe_once(
        platform.health, check, state.uri, commit="", timeout=timeout, audience=audience, failures=1
    )
    hop = ""
    if outcome.redirected_to:
        # A redirect is followed by the probes too, but it is a detour worth naming: the
        # path configured is not the one that answers (FastAPI's trailing-slash redirect).
        hop = (
            f" after a redirect to {outcome.redirected_to} (followed; set "
            f"services.{service.service}.health.path to the path that answers)"
        )
    if outcome.ok:
        return Check(Status.OK, subject, f"answers {check.expect_status} on {state.uri}{hop}")
    if outcome.status == 404:
        return Check(
            Status.WARN,
            subject,
            f"{state.uri}{check.path} answers 404{hop} on the revision that serves now: a "
            f"candidate is judged on that path, so fix services.{service.service}.health.path "
            "unless the new code adds it",
        )
    return Check(Status.WARN, subject, f"on the revision that serves now{hop}: {outcome.message}")


def check_image(service: ServiceConfig) -> Check:
    """Whether the image's Artifact Registry is in the service's region."""
    match = _REGISTRY_REGION.match(service.image)
    if match is None:  # the config's own validation makes this unreachable today
        return Check(Status.FAIL, "image", f"{service.image} is not an Artifact Registry image")
    region = match["region"]
    if region != service.region:
        return Check(
            Status.WARN,
            "image",
            f"{service.image}: Artifact Registry in {region}, but the service runs in "
            f"{service.region} (slower, billed cross-region pulls)",
        )
    return Check(Status.OK, "image", f"{service.image}: Artifact Registry in {region}")
