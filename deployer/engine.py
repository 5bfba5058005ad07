"""The operations every front offers (terminal, Slack, GitHub), over one config and store."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from deployer import window_gate
from deployer.config import Config, load_config
from deployer.errors import ConfigError
from deployer.pipeline.deploy import DeployPipeline
from deployer.pipeline.events import Listener
from deployer.pipeline.hook_port import HookJobs
from deployer.pipeline.lease import ABANDON_OWNER, DEPLOY
from deployer.pipeline.ports import (
    COMMIT_LABEL,
    DEPLOY_LABEL,
    HealthOutcome,
    Platform,
    RevisionInfo,
    ServiceState,
)
from deployer.pipeline.probes import probe_once
from deployer.pipeline.record import DeployRecord, Lock, new_deploy_id
from deployer.pipeline.runs import Runs
from deployer.pipeline.traffic import audience
from deployer.store import open_store
from deployer.store.protocol import Store

STATUS_HEALTH_TIMEOUT = 3.0
SANDBOX_MIN_INTERVAL = 1.0  # the shortest analysis interval against the sandbox


@dataclass(frozen=True)
class RevisionStatus:
    name: str
    percent: int
    tag: str
    commit: str
    image: str
    deploy_id: str
    created: str
    deployed_by: str = ""  # requester of the deploy that created it, from the store
    deployed_at: float | None = None
    promoted_from: str = ""  # the environment whose image its deploy promoted, if any


@dataclass(frozen=True)
class ForcedUnlock:
    """What `force_unlock` cleared: a person's lock, and the deploy handed over to be abandoned."""

    environment: str
    manual: Lock | None
    abandoned: DeployRecord | None


@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    service: str
    location: str  # project/region
    uri: str
    serving: list[RevisionStatus]
    locks: list[Lock]
    last: DeployRecord | None
    health: HealthOutcome | None
    problem: str = ""  # why the service could not be read
    tagged: list[RevisionStatus] = field(default_factory=list)  # 0 % revisions with a tag


def bare_status(config: Config, environment: str, problem: str = "") -> EnvironmentStatus:
    """An environment's status before anything about it is read: where it runs, nothing
    serving, no locks, no last deploy, no health; `problem` says why nothing more."""
    service = config.target(environment)
    return EnvironmentStatus(
        environment=environment,
        service=service.service,
        location=f"{service.project}/{service.region}",
        uri="",
        serving=[],
        locks=[],
        last=None,
        health=None,
        problem=problem,
    )


def default_platform(host: str | None = None) -> Platform:
    """The real adapters: Google's APIs, or the sandbox at `host` / DEPLOYER_GCP_EMULATOR_HOST."""
    from google.cloud import artifactregistry_v1, monitoring_v3, run_v2, secretmanager_v1
    from google.cloud.devtools import cloudbuild_v1, cloudbuild_v2
    from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

    from deployer.adapters.artifact_registry import ArtifactRegistryImages
    from deployer.adapters.cloud_build import CloudBuildBuilds
    from deployer.adapters.cloud_logging import BuildLogs, RevisionLogs
    from deployer.adapters.cloud_monitoring import MIN_PERIOD, CloudMonitoringMetrics
    from deployer.adapters.cloud_run import CloudRunServices
    from deployer.adapters.google_clients import emulator_host, google_client
    from deployer.adapters.health import HttpHealth
    from deployer.adapters.secret_manager import SecretManagerSecrets
    from deployer.adapters.source_repositories import CloudBuildSources

    return Platform(
        sources=CloudBuildSources(
            google_client(cloudbuild_v2.RepositoryManagerClient, host),
            google_client(cloudbuild_v1.CloudBuildClient, host),
            local_paths=bool(host) or None,
        ),
        builds=CloudBuildBuilds(
            google_client(cloudbuild_v1.CloudBuildClient, host),
            BuildLogs(google_client(LoggingServiceV2Client, host)),
        ),
        secrets=SecretManagerSecrets(
            google_client(secretmanager_v1.SecretManagerServiceClient, host)
        ),
        services=CloudRunServices(
            google_client(run_v2.ServicesClient, host),
            google_client(run_v2.RevisionsClient, host),
            RevisionLogs(google_client(LoggingServiceV2Client, host)),
        ),
        # ID tokens from the run's credentials; in the sandbox, from its metadata server.
        health=HttpHealth(),
        images=ArtifactRegistryImages(
            google_client(artifactregistry_v1.ArtifactRegistryClient, host)
        ),
        metrics=CloudMonitoringMetrics(
            google_client(monitoring_v3.MetricServiceClient, host),
            # The sandbox's Monitoring has no 60 s grain: tests and the demo judge faster.
            min_interval=SANDBOX_MIN_INTERVAL if host or emulator_host() else MIN_PERIOD,
        ),
        hooks=_hook_jobs(host),
    )


def _hook_jobs(host: str | None) -> HookJobs:
    """Deploy hooks as Cloud Run job executions, their output read from Cloud Logging."""
    from google.cloud import run_v2
    from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

    from deployer.adapters.cloud_logging import ExecutionLogs
    from deployer.adapters.cloud_run_hook_jobs import CloudRunHookJobs
    from deployer.adapters.google_clients import google_client

    return CloudRunHookJobs(
        google_client(run_v2.JobsClient, host),
        google_client(run_v2.ExecutionsClient, host),
        ExecutionLogs(google_client(LoggingServiceV2Client, host)),
        google_client(run_v2.ServicesClient, host),
    )


class Engine:
    """Deploy, roll back, lock and report, the same way for every front."""

    def __init__(self, config: Config, platform: Platform, store: Store) -> None:
        self.config = config
        self.platform = platform
        self.store = store
        self.runs = Runs(config, platform, store)

    @classmethod
    def from_environment(cls) -> Engine:
        """Config from DEPLOYER_CONFIG, store from DEPLOYER_STORE, the real (or sandbox) APIs."""
        return cls(load_config(), default_platform(), open_store())

    def resolve(self, environment: str, service: str | None = None) -> str:
        """Check `environment` (and `service`, when named) and return the service key."""
        settings = self.config.environment(environment)
        if service is not None and service != settings.service:
            raise ConfigError(
                f"environment {environment} deploys {settings.service}, not {service}"
            )
        return settings.service

    def new_deploy(
        self, environment: str, ref: str | None, requester: str, service: str | None = None
    ) -> DeployRecord:
        """A deploy record ready to run (not saved yet)."""
        approval = self.config.environment(environment).approval
        return DeployRecord(
            id=new_deploy_id(),
            kind="deploy",
            environment=environment,
            service=self.resolve(environment, service),
            requester=requester,
            ref=ref,
            promote_to=self.config.promotes_to(environment),
            approval_required=approval.required if approval else 0,
            cloud_run_service=self.config.target(environment).service,
        )

    def new_promotion(
        self, source: str, environment: str, requester: str, digest: str | None = None
    ) -> DeployRecord:
        """A deploy of what `source` serves to `environment` (not saved yet); `digest`: the
        image a button was drawn for, refused at preflight if `source` serves another."""
        wanted = self.config.environment(environment).promote_from
        self.config.environment(source)
        if wanted != source:
            how = f"from {wanted}" if wanted else "from nowhere (no `promote_from`)"
            raise ConfigError(f"{environment} is promoted {how}, not from {source}")
        record = self.new_deploy(environment, None, requester)
        record.promoted_from, record.promote_digest = source, digest
        return record

    def deploy(
        self, record: DeployRecord, listener: Listener, dry_run: bool = False
    ) -> DeployRecord:
        """Run a new deploy record to its end here (a terminal): lock, run, release."""
        if dry_run:
            pipeline = DeployPipeline(self.config, self.platform, self.store, listener)
            return pipeline.run(record, dry_run=True)
        closed = window_gate.closed_text(self.config, record)
        if closed is not None:  # refused before anything is locked or built
            raise window_gate.WindowClosedError(
                f"{closed}. Nothing was started; to deploy anyway, add --break-glass REASON "
                "(recorded in the deploy and its thread)."
            )
        return self.runs.run(record, listener)

    def resume(self, deploy_id: str, listener: Listener, owner: str | None = None) -> DeployRecord:
        """Run the saved deploy `deploy_id` from where it stopped (a worker's job)."""
        record = self.store.get(deploy_id)
        if record is None:
            raise ConfigError(f"no deploy {deploy_id} in the store")
        return self.runs.run(record, listener, owner)

    def new_rollback(
        self, environment: str, to_revision: str | None, requester: str
    ) -> DeployRecord:
        """A rollback record ready to run by `resume` (not saved yet); None: the previous revision."""
        return DeployRecord(
            id=new_deploy_id(),
            kind="rollback",
            environment=environment,
            service=self.resolve(environment),
            requester=requester,
            target_revision=to_revision,
            cloud_run_service=self.config.target(environment).service,
        )

    def rollback(
        self, environment: str, to_revision: str | None, requester: str, listener: Listener
    ) -> DeployRecord:
        """Move the environment's traffic back to `to_revision` (default: the previous one)."""
        return self.runs.run(self.new_rollback(environment, to_revision, requester), listener)

    def cancel(self, deploy_id: str, who: str) -> DeployRecord | None:
        """Ask a running deploy to stop before traffic moves; the record (None if unknown)."""
        record = self.store.get(deploy_id)
        if record is not None and not record.state.finished:
            self.store.request_cancel(deploy_id, who)
        return record

    def history(self, environment: str, limit: int = 20) -> list[DeployRecord]:
        self.config.environment(environment)
        return self.store.history(environment, limit)

    def lock(self, environment: str, holder: str, reason: str) -> Lock:
        """Lock the environment for `holder`; the lock that holds it (maybe someone else's)."""
        self.config.environment(environment)
        return self.store.acquire_lock(Lock(environment, "manual", holder, reason, time.time()))

    def unlock(self, environment: str, holder: str) -> bool:
        """Release `holder`'s lock; whether there was one."""
        self.config.environment(environment)
        locks = [lock for lock in self.store.locks(environment) if lock.kind == "manual"]
        if not locks:
            return False
        # Anyone allowed to deploy may unlock: a lock is a courtesy, not a permission.
        return self.store.release_lock(environment, "manual", locks[0].holder)

    def force_unlock(self, environment: str, who: str, reason: str) -> ForcedUnlock:
        """Clear every lock of `environment`; a deploy holding it is handed over to be abandoned.

        The deploy is then abandoned by whatever runs it next (`resume`, a worker, the
        sweep): it takes the lock over as its abandoner, cancels its build, and puts
        back and verifies the traffic that served before it began.
        """
        self.config.environment(environment)
        now = time.time()
        manual: Lock | None = None
        handed: DeployRecord | None = None
        for lock in self.store.locks(environment):
            if lock.kind == "manual":
                if self.store.release_lock(environment, "manual", lock.holder):
                    manual = lock
                continue
            record = self.store.get(lock.holder)
            self.store.release_lock(environment, DEPLOY, lock.holder)
            if record is None or record.state.finished:
                continue  # a lock its deploy forgot: gone now
            because = f"forced unlock by {who}: {reason or 'no reason given'}"
            handover = Lock(
                environment,
                DEPLOY,
                record.id,
                because,
                now,
                ABANDON_OWNER + record.id,
                now + self.config.deployer.lease,
            )
            if self.store.acquire_lock(handover, now).owner == handover.owner:
                handed = record
        return ForcedUnlock(environment, manual, handed)

    def status(self, environment: str | None = None) -> list[EnvironmentStatus]:
        """What runs where: one entry per environment (or just `environment`)."""
        names = [environment] if environment else sorted(self.config.environments)
        return [self._status_of(name) for name in names]

    def _status_of(self, environment: str) -> EnvironmentStatus:
        settings = self.config.environment(environment)
        service = self.config.target(environment)
        history = self.store.history(environment, 1)
        base = replace(
            bare_status(self.config, environment),
            locks=self.store.locks(environment),
            last=history[0] if history else None,
        )
        try:
            state = self.platform.services.current(service)
            infos = {r.name: r for r in self.platform.services.revisions(service, 50)}
        except Exception as error:  # status must answer even when Cloud Run does not
            return replace(base, problem=f"cannot read {service.service}: {error}")
        if state is None:
            return replace(base, problem=f"service {service.service} does not exist")
        rows = [self._with_requester(row) for row in _revision_rows(state, infos)]
        serving = [row for row in rows if row.percent > 0]
        # The commit is checked only when one labelled revision takes all traffic.
        health = probe_once(
            self.platform.health,
            service.health,
            state.uri,
            commit=serving[0].commit if len(serving) == 1 else "",
            timeout=STATUS_HEALTH_TIMEOUT,
            audience=audience(settings.run.allow_unauthenticated, state.uri),
            failures=1,
        )
        return replace(
            base,
            uri=state.uri,
            serving=serving,
            tagged=[row for row in rows if row.percent == 0],
            health=health,
        )

    def _with_requester(self, row: RevisionStatus) -> RevisionStatus:
        """Who deployed the revision, and when: from the record its deploy label names."""
        record = self.store.get(row.deploy_id) if row.deploy_id else None
        if record is None:
            return row
        return replace(
            row,
            deployed_by=record.requester,
            deployed_at=record.created_at,
            promoted_from=record.promoted_from or "",
        )


def _revision_rows(state: ServiceState, infos: dict[str, RevisionInfo]) -> list[RevisionStatus]:
    rows = []
    for share in state.traffic:
        info = infos.get(share.revision)
        labels = info.labels if info else {}
        rows.append(
            RevisionStatus(
                name=share.revision,
                percent=share.percent,
                tag=share.tag,
                commit=labels.get(COMMIT_LABEL, ""),
                image=info.image if info else "",
                deploy_id=labels.get(DEPLOY_LABEL, ""),
                created=info.created if info else "",
            )
        )
    return rows
