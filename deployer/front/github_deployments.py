"""GitHub Deployments: a pipeline listener that mirrors a deploy into its repository on GitHub.

    pipeline event                          GitHub (repository of the service, `config_github`)
    StageFinished preflight, passed         create the deployment (ref: the commit just
                                            resolved; environment: the deploy's), then `queued`
    StageStarted of any later stage         `in_progress`
    DeployFinished, record finished         succeeded: `success`; failed or rolled back:
                                            `failure`; cancelled or abandoned: `error`
    a dry run, a rollback, a deploy that    nothing
    never passed preflight, no `[github]`,
    no repository known

Each status carries `environment_url` (the service's URL, once known) and `log_url`
(the deploy's Slack thread, when it has a permalink), and is sent at most once, in
that order, whichever run of the deploy reaches it: a deploy resumed after its
worker died, or parked awaiting approval and resumed by another process, goes on
from what the store says was sent. The store keeps that in a versioned document,

    github-deployment:<deploy id>   {"repository", "deployment_id", "posted", "told"}

written only over the version read (compare and swap), with no `due_at`: it is
never the outbox's work. A status is claimed there before it is sent, so a run
that dies between the two never sends it twice. A deployment whose create failed
is created by the next step that needs it.

GitHub never fails a deploy, nor holds it up for long: calls are short and tried
once (`adapters.github_deployments`), a problem is told once in the deploy's story
as one line (`Noted`: "GitHub deployment status not posted: 401 Bad credentials",
never the token), and after GitHub did not answer at all the run skips it until the
final status.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from deployer.config import SecretRef
from deployer.config_github import repository_of
from deployer.pipeline.events import (
    DeployFinished,
    Event,
    Listener,
    Noted,
    StageFinished,
    StageStarted,
)
from deployer.pipeline.ports import SecretProblem
from deployer.pipeline.record import DeployRecord, Outcome, Stage, State
from deployer.store.protocol import Store, Versioned

if TYPE_CHECKING:
    from deployer.engine import Engine

log = logging.getLogger(__name__)

KEY_PREFIX = "github-deployment:"
QUEUED, IN_PROGRESS = "queued", "in_progress"
FINAL = {
    State.SUCCEEDED: "success",
    State.FAILED: "failure",
    State.ROLLED_BACK: "failure",
    State.CANCELLED: "error",
    State.ABANDONED: "error",
}
# Statuses in the order a deploy reaches them: a later one is never followed by an earlier.
_RANK = {"": 0, QUEUED: 1, IN_PROGRESS: 2, "success": 3, "failure": 3, "error": 3}
_CAS_ATTEMPTS = 20


class GitHubProblem(Exception):
    """Something kept GitHub from hearing about the deploy; `str()` is safe to show (no
    token). `outage`: GitHub did not answer (timeout, connection, 5xx)."""

    def __init__(self, reason: str, outage: bool = False) -> None:
        super().__init__(reason)
        self.outage = outage


class DeploymentsApi(Protocol):
    """The slice of GitHub's REST API this listener uses (`adapters.github_deployments`)."""

    def create(
        self,
        repository: str,
        ref: str,
        environment: str,
        description: str,
        payload: dict[str, Any],
    ) -> int: ...

    def post_status(
        self,
        repository: str,
        deployment_id: int,
        state: str,
        description: str,
        environment_url: str = "",
        log_url: str = "",
    ) -> None: ...


# --- what GitHub and the thread are told ---------------------------------------------------


def not_posted(reason: str) -> str:
    """The one line the deploy's story gets when GitHub could not be told."""
    return f"GitHub deployment status not posted: {reason}"


def _description(record: DeployRecord, state: str) -> str:
    """A status's `description` (GitHub keeps 140 characters)."""
    commit = (record.commit or "")[:12]
    if state == QUEUED:
        return f"{record.ref or commit} is {commit}: preflight passed"
    if state == IN_PROGRESS:
        return f"Rolling out {commit} to {record.environment}"
    if state == "success":
        return f"{record.environment} runs {commit} ({record.candidate_revision or 'serving'})"
    first = (record.error or str(record.state)).strip().splitlines()
    return f"{record.state}: {first[0] if first else ''}"[:140]


# --- the state kept in the store -----------------------------------------------------------


@dataclass
class Mirror:
    """What GitHub has of one deploy: its deployment and the latest status claimed."""

    repository: str
    deployment_id: int | None = None
    posted: str = ""  # the latest status claimed (sent, or given up on)
    told: list[str] = field(default_factory=list)  # problems the story already heard

    @classmethod
    def from_json(cls, text: str) -> Mirror:
        return cls(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def read_mirror(store: Store, deploy_id: str) -> Mirror | None:
    """The deploy's GitHub state as the store keeps it, or None."""
    found = store.outbox_read(KEY_PREFIX + deploy_id)
    return Mirror.from_json(found.body) if found else None


def change_mirror(
    store: Store, deploy_id: str, repository: str, change: Callable[[Mirror], bool]
) -> Mirror:
    """Apply `change` (True: write it) over the version read, again on a conflict; the
    mirror as it then stands."""
    key = KEY_PREFIX + deploy_id
    for attempt in range(_CAS_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
        found: Versioned | None = store.outbox_read(key)
        mirror = Mirror.from_json(found.body) if found else Mirror(repository)
        if not change(mirror):
            return mirror
        # due_at None: nothing for the outbox's drains to do with it.
        if store.outbox_write(key, mirror.to_json(), None, found.version if found else 0):
            return mirror
    raise RuntimeError(f"the GitHub state of {deploy_id} kept changing while it was written")


# --- the listener --------------------------------------------------------------------------


def _passed_preflight(record: DeployRecord) -> bool:
    return bool(record.commit) and any(
        result.stage == Stage.PREFLIGHT and result.outcome == Outcome.SUCCEEDED
        for result in record.stages
    )


class GitHubDeployments:
    """A listener mirroring one deploy into a GitHub Deployment (see the module's table).

    `api()` builds the client on first use (it reads the token): any failure there is a
    `GitHubProblem` told like a failed call. `tell` hears the one-line notes; `link(id)`
    is the deploy thread's permalink ("" when there is none yet).
    """

    def __init__(
        self,
        store: Store,
        repository: str,
        api: Callable[[], DeploymentsApi],
        tell: Listener,
        link: Callable[[str], str] = lambda _: "",
    ) -> None:
        self.store = store
        self.repository = repository
        self._make_api = api
        self._api: DeploymentsApi | None = None
        self._tell = tell
        self._link = link
        self._outage = False  # GitHub did not answer: wait for the final status
        self._tried: set[str] = set()  # statuses this run tried: each stage must not retry

    def __call__(self, event: Event) -> None:
        try:
            self._handle(event)
        except Exception:  # a bug here must not break the deploy
            log.exception("github: deployment of %s not updated", event.record.id)

    def _handle(self, event: Event) -> None:
        record = event.record
        if record.kind != "deploy":
            return
        if isinstance(event, StageFinished):
            if event.result.stage == Stage.PREFLIGHT and event.result.outcome == Outcome.SUCCEEDED:
                self._advance(record, QUEUED)
        elif isinstance(event, StageStarted):
            if event.stage != Stage.PREFLIGHT:
                self._advance(record, IN_PROGRESS)
        elif isinstance(event, DeployFinished):
            final = FINAL.get(record.state)
            if not event.dry_run and record.state.finished and final is not None:
                self._advance(record, final)

    def _advance(self, record: DeployRecord, state: str) -> None:
        """Send `state` unless it (or a later one) was claimed; create the deployment first
        when there is none yet."""
        final = _RANK[state] == _RANK["success"]
        if state in self._tried or (self._outage and not final):
            return
        mirror = read_mirror(self.store, record.id)
        if mirror is not None and _RANK[mirror.posted] >= _RANK[state]:
            return
        self._tried.add(state)
        try:
            deployment_id = mirror.deployment_id if mirror else None
            if deployment_id is None:
                if not _passed_preflight(record):
                    return  # nothing was deployed: GitHub hears of nothing
                deployment_id = self._create(record)
            if not self._claim(record.id, state):
                return  # another run got there first
            self.api().post_status(
                self.repository,
                deployment_id,
                state,
                _description(record, state),
                environment_url=record.service_url or "",
                log_url=self._link(record.id),
            )
        except GitHubProblem as problem:
            self._outage = self._outage or problem.outage
            self._told(record, str(problem))

    def api(self) -> DeploymentsApi:
        if self._api is None:
            self._api = self._make_api()
        return self._api

    def _create(self, record: DeployRecord) -> int:
        assert record.commit is not None
        deployment_id = self.api().create(
            self.repository,
            # The commit itself: the deployment is of exactly what was built, whatever
            # the branch or tag points at by now. The ref asked for is in the payload.
            record.commit,
            environment=record.environment,
            description=f"Deploy {record.id} of {record.ref or record.commit[:12]}",
            payload={"deploy_id": record.id, "ref": record.ref or ""},
        )

        def keep(mirror: Mirror) -> bool:
            if mirror.deployment_id is not None:
                return False  # a racing run created one first: statuses go to that one
            mirror.deployment_id = deployment_id
            return True

        kept = change_mirror(self.store, record.id, self.repository, keep).deployment_id
        assert kept is not None
        return kept

    def _claim(self, deploy_id: str, state: str) -> bool:
        claimed = False

        def claim(mirror: Mirror) -> bool:
            nonlocal claimed
            claimed = _RANK[mirror.posted] < _RANK[state]
            if claimed:
                mirror.posted = state
            return claimed

        change_mirror(self.store, deploy_id, self.repository, claim)
        return claimed

    def _told(self, record: DeployRecord, reason: str) -> None:
        """Tell the story about `reason` once per deploy (the story's listeners log it);
        log a repeat."""
        first = False

        def remember(mirror: Mirror) -> bool:
            nonlocal first
            first = reason not in mirror.told
            if first:
                mirror.told.append(reason)
            return first

        change_mirror(self.store, record.id, self.repository, remember)
        if first:
            self._tell(Noted(record, not_posted(reason)))
        else:
            log.warning("github: deployment of %s: %s", record.id, reason)


# --- wiring --------------------------------------------------------------------------------


def github_deployments(
    engine: Engine,
    record: DeployRecord,
    tell: Listener,
    link: Callable[[str], str] = lambda _: "",
) -> GitHubDeployments | None:
    """The listener for `record`, or None when GitHub hears nothing of it: no `[github]`
    table, no repository known for its service, or not a deploy."""
    settings = engine.config.github
    service = engine.config.services.get(record.service)
    if settings is None or service is None or record.kind != "deploy":
        return None
    repository = repository_of(service)
    if repository is None:
        return None
    secret = settings.token_secret
    project = secret.project or service.project
    api_url = settings.effective_api_url()

    def api() -> DeploymentsApi:
        from deployer.adapters.github_deployments import GitHubDeploymentsClient

        try:
            _, token = engine.platform.secrets.read_text(
                project, SecretRef(secret=secret.secret, version=secret.version)
            )
        except SecretProblem as problem:
            raise GitHubProblem(f"cannot read the GitHub token: {problem}") from None
        return GitHubDeploymentsClient(token.strip(), api_url)

    return GitHubDeployments(engine.store, repository, api, tell, link)
