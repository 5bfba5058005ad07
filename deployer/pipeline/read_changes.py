"""Reading "what changes" once the candidate passed health, before traffic moves.

Both revisions are read back from Cloud Run (what serves, and the candidate as it
was created); the commits between them from the source repository. Nothing read
here can fail the deploy: what cannot be read is said instead.
"""

from __future__ import annotations

from deployer.config import ServiceConfig
from deployer.pipeline.changes import SUBJECTS, Changes, compare, first_deploy
from deployer.pipeline.ports import CommitLog, Platform, RolloutRefused, SourceProblem

# Reading the commit log gets at most this long: a slow remote delays no deploy more.
LOG_TIMEOUT = 20.0


def read_changes(
    platform: Platform,
    service: ServiceConfig,
    source: ServiceConfig,
    serving_revision: str | None,
    candidate_revision: str,
    commit: str,
    timeout: float,
) -> Changes | str:
    """What the candidate changes against `serving_revision` (None: nothing served); a
    sentence saying why it could not be read otherwise.

    `service`: where the revisions run (Cloud Run); `source`: the service whose source
    and builds the commits come from (its project finds a connected repository)."""
    if not serving_revision:
        return first_deploy(commit)
    services = platform.services
    try:
        serving = services.revision_spec(service, serving_revision)
        candidate = services.revision_spec(service, candidate_revision)
    except RolloutRefused as error:
        return f"what changes could not be read: {error}"
    if serving is None or candidate is None:
        missing = serving_revision if serving is None else candidate_revision
        return f"what changes could not be read: Cloud Run has no revision {missing}"
    log: CommitLog | None = None
    problem = ""
    if serving.commit:
        try:
            log = platform.sources.commit_log(
                source, serving.commit, commit, SUBJECTS, min(LOG_TIMEOUT, max(1.0, timeout))
            )
        except SourceProblem as error:
            problem = f"the commit log could not be read: {error}"
    return compare(serving, candidate, commit, log, problem)
