"""The narrow interfaces the pipeline needs from the outside world.

Each Protocol is the slice of one system the pipeline uses; the adapters
implement them over the Google client libraries. The values crossing them are
plain frozen dataclasses, with one exception: the build config crosses as the
`cloudbuild_v1.Build` it was parsed into. Cloud Build's own message is the
schema preflight checks the file against (as gcloud does); the pipeline carries
it from preflight to `Builds.start` and never reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from google.cloud.devtools import cloudbuild_v1

from deployer.config import HealthCheck, RunSettings, SecretRef, ServiceConfig
from deployer.pipeline.hook_port import HookJobs
from deployer.pipeline.measurements import Metrics

# Labels on every revision the deployer creates: status, history and rollback read them.
DEPLOY_LABEL = "deployer-deploy"
COMMIT_LABEL = "deployer-commit"
ENVIRONMENT_LABEL = "deployer-environment"
REQUESTER_ANNOTATION = "deployer/requester"

Progress = Callable[[str], None]
"""Called with a short human line whenever a wait learns something new."""


# --- the source repository -----------------------------------------------------------


class SourceProblem(Exception):
    """The repository could not be read; `fix` says what to do about it."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


class RefNotFound(SourceProblem):
    """The ref names no commit in the source repository."""

    def __init__(self, message: str, fix: str = "push the branch or tag, or check its spelling"):
        super().__init__(message, fix)


@dataclass(frozen=True)
class BuildConfigText:
    """The build config a deploy submits, as read from where it lives."""

    origin: str  # how messages name it: "cloudbuild.yaml at 1a2b3c4d5e6f in REPO"
    text: str


@dataclass(frozen=True)
class CommitLog:
    """The commits between what serves and what is deployed, as git reads them."""

    count: int  # commits in `new` and not in `old` (a lower bound when not `complete`)
    subjects: tuple[str, ...]  # their first lines, newest first, at most the limit asked
    behind: int = 0  # commits in `old` and not in `new`: a deploy of an older commit
    complete: bool = True  # False: the history read stopped before it reached `old`
    compare_url: str = ""  # GitHub's compare page, for a repository on github.com


class Sources(Protocol):
    """The code being deployed, read with the same access the build will have."""

    def resolve(self, service: ServiceConfig, ref: str | None, timeout: float) -> str:
        """The full commit SHA `ref` (default: the default branch) points at; RefNotFound otherwise."""
        ...

    def build_config(self, service: ServiceConfig, commit: str, timeout: float) -> BuildConfigText:
        """The build config that builds `commit`: the repository's file at that commit, or the
        trigger's own; SourceProblem when it cannot be read."""
        ...

    def export(
        self, service: ServiceConfig, commit: str, destination: Path, timeout: float
    ) -> None:
        """Write the repository's files at `commit` into the empty folder `destination`, as
        the build's checkout holds them (the Dockerfile lint reads its build contexts
        there); SourceProblem when they cannot be read. Only the repository's root is
        written: `source.dir` is the caller's to apply."""
        ...

    def commit_log(
        self, service: ServiceConfig, old: str, new: str, limit: int, timeout: float
    ) -> CommitLog:
        """The commits `new` has that `old` has not: how many, the first `limit` subjects,
        newest first; SourceProblem when the history cannot be read."""
        ...


# --- Cloud Build ----------------------------------------------------------------------


@dataclass(frozen=True)
class BuildStarted:
    build_id: str
    log_url: str


@dataclass(frozen=True)
class BuildOutcome:
    status: str  # SUCCESS, FAILURE, TIMEOUT, CANCELLED, INTERNAL_ERROR, EXPIRED
    log_url: str
    commit: str | None = None  # the commit the build really used
    image: str | None = None  # repository@sha256:..., never a tag
    failing_step: str | None = None  # step id (or index) that failed
    detail: str = ""  # status_detail / failure_info detail

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS" and self.image is not None


@dataclass(frozen=True)
class EarlierBuild:
    """A successful build of the same commit with the same effective build config."""

    build_id: str
    log_url: str
    image: str  # repository@sha256:..., as the build pushed it
    deploy_id: str  # the deploy that asked for it ("" when its tags do not say)


class BuildRejected(Exception):
    """Cloud Build refused a request (invalid build, no permission, unknown build); the message quotes it."""


class Builds(Protocol):
    def start(
        self, service: ServiceConfig, build: cloudbuild_v1.Build, commit: str, deploy_id: str
    ) -> BuildStarted:
        """Submit `build` (the build config, as parsed) for `commit`; returns as soon as
        Cloud Build knows the build id."""
        ...

    def wait(
        self,
        service: ServiceConfig,
        build_id: str,
        timeout: float,
        progress: Progress,
        stop: Callable[[], bool] = ...,
    ) -> BuildOutcome:
        """Follow the build to its end; on `timeout`, cancel it and report TIMEOUT.

        When `stop()` turns true, cancel the build and report how it ended (CANCELLED).
        """
        ...

    def cancel(self, service: ServiceConfig, build_id: str) -> None:
        """Ask Cloud Build to stop the build."""
        ...

    def earlier(
        self, service: ServiceConfig, build: cloudbuild_v1.Build, commit: str, timeout: float
    ) -> EarlierBuild | None:
        """The newest successful build of `commit` with the same effective config as `build`
        would have, or None; BuildRejected when Cloud Build cannot be asked."""
        ...


# --- Artifact Registry ----------------------------------------------------------------


@dataclass(frozen=True)
class ImageCheck:
    """Whether an image can still be pulled by digest, and what the registry said."""

    exists: bool
    detail: str  # "still in Artifact Registry", "no longer in Artifact Registry", or why not known


class Images(Protocol):
    def check(self, image: str, timeout: float) -> ImageCheck:
        """Ask the registry whether `image` (repository@sha256:...) still exists; never raises
        for what the registry answers (an answer other than found is `exists=False`)."""
        ...


# --- Secret Manager -------------------------------------------------------------------


class SecretProblem(Exception):
    """A referenced secret is missing, disabled or destroyed; the message names it."""


@dataclass(frozen=True)
class PinnedSecret:
    secret: str  # the secret id
    version: str  # a concrete version number, never `latest`


class Secrets(Protocol):
    def pin(self, project: str, ref: SecretRef) -> PinnedSecret:
        """Resolve `ref` to an enabled concrete version (metadata only, no value read)."""
        ...

    def read_text(self, project: str, ref: SecretRef) -> tuple[PinnedSecret, str]:
        """Read a secret's value (CRC32C checked) for `env_from_secret`; never log it."""
        ...


# --- Cloud Run ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficShare:
    revision: str  # short revision name
    percent: int
    tag: str = ""
    uri: str = ""


@dataclass(frozen=True)
class ServiceState:
    name: str  # full resource name
    uri: str
    traffic: tuple[TrafficShare, ...]
    latest_ready_revision: str | None
    latest_created_revision: str | None
    etag: str

    def serving(self) -> list[TrafficShare]:
        """Traffic targets that receive requests."""
        return [share for share in self.traffic if share.percent > 0]


@dataclass(frozen=True)
class RevisionInfo:
    name: str  # short revision name
    created: str  # RFC 3339
    ready: bool
    image: str
    labels: Mapping[str, str] = field(default_factory=dict)
    message: str = ""  # the Ready condition's message when not ready


@dataclass(frozen=True)
class RevisionSpec:
    """What a revision runs, as Cloud Run holds it: what "what changes" compares."""

    name: str  # short revision name
    image: str
    commit: str  # its COMMIT_LABEL; "" when the deployer did not create it
    # Plain variables: name -> a fingerprint of the value (sha256), never the value.
    env: Mapping[str, str]
    secret_env: Mapping[str, PinnedSecret]  # secret references, by variable name
    service_account: str
    cpu: str
    memory: str
    min_instances: int
    max_instances: int


class RolloutRefused(Exception):
    """Cloud Run refused a change to the service; the message quotes it."""


@dataclass(frozen=True)
class CandidateSpec:
    revision: str  # fresh short revision name
    image: str  # by digest
    env: Mapping[str, str]
    secret_env: Mapping[str, PinnedSecret]
    settings: RunSettings
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    tag: str


@dataclass(frozen=True)
class RolloutOutcome:
    ok: bool
    state: ServiceState | None
    message: str = ""  # the revision's condition message (the container's error) on failure
    timed_out: bool = False


class Services(Protocol):
    """A Cloud Run service: its state, its revisions, its traffic, who may invoke it."""

    def current(self, service: ServiceConfig) -> ServiceState | None:
        """The service as Cloud Run serves it now, or None when it does not exist."""
        ...

    def create(self, service: ServiceConfig, spec: CandidateSpec) -> str:
        """First deploy: create the service with `spec` as its only revision; the operation name."""
        ...

    def start_candidate(
        self, service: ServiceConfig, spec: CandidateSpec, keep: ServiceState
    ) -> str:
        """Create the candidate revision at 0 % with its tag, traffic pinned as in `keep`; the operation name.

        `keep` may pin the candidate itself (at 100 % on a service that serves nothing): the
        revision is created in the same request, so Cloud Run routes to it once it is ready.
        """
        ...

    def set_public(self, service: ServiceConfig, public: bool) -> bool:
        """Grant (True) or revoke (False) `roles/run.invoker` for `allUsers`, leaving other
        bindings alone; whether the policy changed. RolloutRefused when Cloud Run refuses."""
        ...

    def wait(self, service: ServiceConfig, operation: str, timeout: float) -> RolloutOutcome:
        """Wait until Cloud Run is done with the candidate (not reconciling, Ready true or
        false) and say how it ended."""
        ...

    def route(
        self,
        service: ServiceConfig,
        split: Sequence[TrafficShare],
        timeout: float,
    ) -> RolloutOutcome:
        """Set traffic exactly to `split` (tags included) and wait until Cloud Run serves it."""
        ...

    def revisions(self, service: ServiceConfig, limit: int) -> list[RevisionInfo]:
        """The service's revisions, newest first."""
        ...

    def revision_spec(self, service: ServiceConfig, revision: str) -> RevisionSpec | None:
        """What `revision` runs (image, env names, secrets, settings); None when Cloud Run
        has no such revision. RolloutRefused when it cannot be read."""
        ...


# --- Health ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthOutcome:
    ok: bool
    attempts: int
    status: int | None = None  # last HTTP status seen
    body: str = ""  # excerpt of the last answer
    message: str = ""
    # The URL the last answer came from when a redirect was followed to it, else "".
    redirected_to: str = ""


class Health(Protocol):
    def check(
        self,
        url: str,
        check: HealthCheck,
        commit: str,
        timeout: float,
        audience: str,
        progress: Progress,
    ) -> HealthOutcome:
        """Probe `url` until `check.consecutive` good answers in a row, or `timeout`.

        `audience`: the service's URL when it is private (each probe carries an ID token
        for it), "" when anyone may call it.
        """
        ...

    def sample(
        self, urls: Sequence[str], count: int, audience: str, timeout: float
    ) -> list[tuple[int | None, float]]:
        """Send `count` synthetic GETs over `urls` in turn, within `timeout`: each answer's
        status (None: no answer) and latency in ms (`adapters/synthetic_requests.py`)."""
        ...

    def redacting(self, known: Sequence[str]) -> Health:
        """The same prober, whose answers and progress lines are quoted without `known`
        (the values a candidate was given, which its answers may print)."""
        ...


@dataclass(frozen=True)
class Platform:
    """The outside world, one narrow interface per system."""

    sources: Sources
    builds: Builds
    secrets: Secrets
    services: Services
    health: Health
    images: Images
    metrics: Metrics
    hooks: HookJobs
