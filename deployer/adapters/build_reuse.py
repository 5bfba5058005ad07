"""Finding a successful build of the same commit and effective build config, to reuse.

Every build the deployer submits carries a tag naming its effective config
(`build_request.config_tag`: source and commit, steps, images, options, the
substitutions as sent, its tags bar the deploy's id). A later deploy of the same
commit with the same config asks Cloud Build for the newest SUCCESS build with that
tag, with one filtered ListBuilds call.

Why Cloud Build's own history and not the deployer's store: it is where the build
and its image digest are recorded in the first place, so it survives a lost or
fresh store, and it sees builds made by another deployer that shares the project.
The filter runs on Cloud Build's side, so the call stays cheap however many
builds the project has. `tags="..."` and `status="..."` are ListBuilds filters
Cloud Build documents ("Filtering build results using queries").

Builds started through a trigger are never reused: the trigger brings its own
config, which can change without the deployer seeing it, and a trigger's build
carries the trigger's tags, not ours.
"""

from __future__ import annotations

import re

from google.api_core import exceptions
from google.cloud.devtools import cloudbuild_v1

from deployer.adapters.build_outcome import read_outcome
from deployer.adapters.build_request import (
    CONFIG_TAG_PREFIX,
    build_parent,
    our_substitutions,
    prepare_build,
)
from deployer.config import ServiceConfig
from deployer.pipeline.ports import BuildRejected, EarlierBuild

# How many matching builds to look through: the newest that fits is the one reused.
_LOOKED_AT = 5
# A deploy id as `record.new_deploy_id` makes it, kept as a build tag.
_DEPLOY_ID = re.compile(r"^d-[0-9a-z]+-[0-9a-f]{6}$")


def config_tag_for(service: ServiceConfig, config: cloudbuild_v1.Build, commit: str) -> str:
    """The config tag a build of `config` at `commit` gets when the deployer submits it."""
    prepared = prepare_build(service, config, commit, "", our_substitutions(service, commit))
    return next(tag for tag in prepared.tags if tag.startswith(CONFIG_TAG_PREFIX))


def find_earlier_build(
    client: cloudbuild_v1.CloudBuildClient,
    service: ServiceConfig,
    config: cloudbuild_v1.Build,
    commit: str,
    timeout: float,
) -> EarlierBuild | None:
    """The newest successful build of `commit` with the same effective config, or None.

    BuildRejected when Cloud Build cannot be asked.
    """
    if service.source.trigger:
        return None
    tag = config_tag_for(service, config, commit)
    request = cloudbuild_v1.ListBuildsRequest(
        parent=build_parent(service),
        project_id=service.project,
        filter=f'tags="{tag}" AND status="SUCCESS"',
        page_size=_LOOKED_AT,
    )
    try:
        page = next(iter(client.list_builds(request=request, timeout=timeout).pages), None)
    except exceptions.GoogleAPICallError as error:
        code = error.grpc_status_code
        reason = f"{code.name if code is not None else type(error).__name__}: {error.message}"
        raise BuildRejected(f"Cloud Build did not list earlier builds: {reason}") from None
    for build in page.builds if page is not None else []:
        outcome = read_outcome(service, build)
        # The filter chose them; what they say of themselves is checked all the same.
        if not outcome.ok or tag not in build.tags or outcome.commit not in (None, commit):
            continue
        assert outcome.image is not None
        deploy_id = next((t for t in build.tags if _DEPLOY_ID.match(t)), "")
        return EarlierBuild(build.id, build.log_url, outcome.image, deploy_id)
    return None
