"""Promotion: deploy the exact image and commit that serve 100 % in another environment.

`/deploy promote staging prod` (or `deployer promote staging prod`, or the "Promote to
prod" button of a successful staging thread) records a deploy to prod with
`promoted_from = "staging"`. Its first preflight takes what staging serves at that
moment, read back from Cloud Run, and refuses, naming why, when staging:

    is mid-rollout          its deploy lock is held (a deploy running, or awaiting approval)
    serves several          more than one revision takes traffic (a rollout or a split left)
    serves nothing / none   no service, or no revision takes traffic
    runs an unknown image   not by digest, or a revision the deployer did not label with
                            its commit: there would be nothing exact to promote
    is unhealthy            its health check does not answer well, with that commit
    moved on                the button was drawn for another digest: both are named

Then the deploy runs as any other with no build: the image is kept in the record, so
the build stage is passed by, and prod's own env, secrets and settings apply.
"""

from __future__ import annotations

from deployer.config import Config
from deployer.pipeline import traffic
from deployer.pipeline.ports import COMMIT_LABEL, Platform
from deployer.pipeline.probes import probe_once
from deployer.pipeline.record import DeployRecord
from deployer.pipeline.stages import Deadline, StageFailed
from deployer.store.protocol import Store

HEALTH_TIMEOUT = 10.0  # seconds the source's health may take to answer once


def digest_of(image: str) -> str:
    """`sha256:…` of `repo/image@sha256:…`, or "" for an image named by tag."""
    _, at, digest = image.partition("@")
    return digest if at and digest.startswith("sha256:") else ""


def short(digest: str) -> str:
    return digest[:19] if digest else "(none)"


def take_promoted_image(
    config: Config, platform: Platform, store: Store, record: DeployRecord, deadline: Deadline
) -> str:
    """Fill `record` with what its source environment serves now (see the module
    docstring); a line saying what was taken. StageFailed when it cannot be promoted."""
    source = record.promoted_from
    assert source is not None
    wanted = config.environment(record.environment).promote_from
    if wanted != source:
        raise StageFailed(
            f"{record.environment} is not promoted from {source}"
            + (f" but from {wanted}" if wanted else "; set its `promote_from`")
        )
    for lock in store.locks(source):
        if lock.kind == "deploy":
            running = store.get(lock.holder)
            how = f"{running.state}".replace("_", " ") if running else "running"
            raise StageFailed(
                f"{source} is mid-rollout: deploy {lock.holder} is {how} there; "
                "promote once it has ended"
            )
    where = config.target(source)
    state = platform.services.current(where)
    if state is None:
        raise StageFailed(f"{source} has no service {where.service}: nothing to promote")
    serving = state.serving()
    if len(serving) != 1:
        raise StageFailed(
            f"{source} serves {traffic.describe(traffic.shares(serving))}: promote what "
            "serves 100 %, once one revision does"
        )
    revision = serving[0].revision
    info = next(
        (item for item in platform.services.revisions(where, 50) if item.name == revision), None
    )
    if info is None:
        raise StageFailed(f"{source}'s revision {revision} could not be read back")
    digest, commit = digest_of(info.image), info.labels.get(COMMIT_LABEL, "")
    if not digest:
        raise StageFailed(
            f"{source}'s revision {revision} runs {info.image}, not an image by digest: "
            "there is no exact image to promote"
        )
    if not commit:
        raise StageFailed(
            f"{source}'s revision {revision} has no commit label: it was not deployed by "
            "the deployer, so its commit is unknown"
        )
    if record.promote_digest and record.promote_digest != digest:
        raise StageFailed(
            f"{source} now serves {short(digest)} ({revision}), not {short(record.promote_digest)}"
            " that the button was drawn for: nothing was promoted; promote again to take what "
            "serves now"
        )
    settings = config.environment(source)
    health = probe_once(
        platform.health,
        where.health,
        state.uri,
        commit=commit,
        timeout=min(HEALTH_TIMEOUT, max(1.0, deadline.left())),
        audience=traffic.audience(settings.run.allow_unauthenticated, state.uri),
        failures=1,
    )
    if not health.ok:
        raise StageFailed(
            f"{source} is unhealthy ({where.health.path}: {health.message}): "
            "promote once it is healthy",
            health.body,
        )
    record.image, record.commit, record.promoted_revision = info.image, commit, revision
    record.ref = record.ref or commit
    return (
        f"promoting {source}'s {revision}: image {short(digest)}, commit {commit[:12]}, "
        f"healthy at {where.health.path}"
    )
