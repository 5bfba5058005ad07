"""Reading Cloud Build requests as the API does: build validation, parents, names, list filters.

Every problem answers INVALID_ARGUMENT with the API's wording (UNIMPLEMENTED for
the source kinds the sandbox does not build: repo_source, storage_source_manifest). A `connected_repository` source is
checked here for its form; that the repository exists, where the build runs, is
checked against RepositoryManager's records (`check_connected_repository`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from google.cloud.devtools import cloudbuild_v1 as cb

from deployer_sandbox.cloud_build.repositories import Repositories
from deployer_sandbox.cloud_build.repository_store import parse_repository_name
from deployer_sandbox.cloud_build.substitutions import check_substitutions
from deployer_sandbox.common.rpc import failed_precondition, invalid, unimplemented

MAX_TIMEOUT_S = 24 * 3600
_PARENT = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")
_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/builds/([^/]+)$")
_TRIGGER = re.compile(r"^projects/([^/]+)/locations/([^/]+)/triggers/([^/]+)$")


def check_build(build: cb.Build) -> None:
    """Raise INVALID_ARGUMENT (or UNIMPLEMENTED for other sources) as CreateBuild would."""
    check_steps(build)
    check_source(build)
    check_logging(build)
    check_substitutions(build)


def check_steps(build: cb.Build) -> None:
    """INVALID_ARGUMENT for a problem with the build's timeout or steps."""
    raw = cb.Build.pb(build)
    if raw.HasField("timeout") and not 0 <= raw.timeout.seconds <= MAX_TIMEOUT_S:
        raise invalid("invalid build: timeout must be between 0s and 24h")
    if not build.steps:
        raise invalid("invalid build: invalid .steps field: no build steps are specified")
    known = {"-"}
    for index, step in enumerate(build.steps):
        label = f'build step #{index} - "{step.id}"' if step.id else f"build step #{index}"
        if not step.name:
            raise invalid(
                f"invalid build: invalid .steps field: build step {index} must specify name"
            )
        for dependency in step.wait_for:
            if dependency not in known:
                raise invalid(
                    f'invalid build: invalid .steps field: {label} depends on "{dependency}", '
                    "which has not been defined"
                )
        if step.id in known:
            raise invalid(f"invalid build: invalid .steps field: {label}: the ID is not unique")
        if step.id:
            known.add(step.id)
        for entry in step.env:
            if "=" not in entry:
                raise invalid(
                    f'invalid build: invalid .steps field: {label}: the Env entry "{entry}" '
                    'must be of the form "KEY=VALUE"'
                )


def check_logging(build: cb.Build) -> None:
    """A build that names its own service account must say where its logs go: Google's
    default logs bucket is not one that account may write. Cloud Build's words, as builds
    and triggers print them ("Your build failed to run: if 'build.service_account' is
    specified, ...", cert-manager/cert-manager#8851, in28minutes/course-material#11)."""
    if not build.service_account:
        return
    options = build.options
    own_bucket = (
        options.default_logs_bucket_behavior
        == cb.BuildOptions.DefaultLogsBucketBehavior.REGIONAL_USER_OWNED_BUCKET
    )
    logged_elsewhere = options.logging in (
        cb.BuildOptions.LoggingMode.CLOUD_LOGGING_ONLY,
        cb.BuildOptions.LoggingMode.NONE,
    )
    if not (build.logs_bucket or own_bucket or logged_elsewhere):
        raise invalid(
            "if 'build.service_account' is specified, the build must either (a) specify "
            "'build.logs_bucket', (b) use the REGIONAL_USER_OWNED_BUCKET "
            "build.options.default_logs_bucket_behavior option, or (c) use either "
            "CLOUD_LOGGING_ONLY / NONE logging options"
        )


def check_source(build: cb.Build) -> None:
    """INVALID_ARGUMENT for a malformed source; UNIMPLEMENTED for the kinds not served."""
    source = cb.Source.pb(build.source)
    kind = source.WhichOneof("source")
    if kind not in (None, "git_source", "connected_repository", "storage_source"):
        raise unimplemented(
            "The sandbox builds Source.git_source (a local repository path or file:// "
            "URL), Source.connected_repository (a 2nd-gen repository) or "
            f"Source.storage_source (an archive in its Cloud Storage); {kind} is not served."
        )
    if kind == "storage_source":
        # StorageSource.object: "Required. Cloud Storage object containing the source."
        if not build.source.storage_source.bucket:
            raise invalid("invalid build: .source.storage_source.bucket must be set")
        if not build.source.storage_source.object_:
            raise invalid("invalid build: .source.storage_source.object must be set")
    if kind == "git_source":
        if not build.source.git_source.url:
            raise invalid("invalid build: .source.git_source.url must be set")
        if build.source.git_source.dir_.startswith("/"):
            raise invalid("invalid build: .source.git_source.dir must be a relative path")
    if kind == "connected_repository":
        connected = build.source.connected_repository
        if not connected.repository:
            # "Required. Name of the Google Cloud Build repository"
            raise invalid("invalid build: .source.connected_repository.repository must be set")
        parse_repository_name(connected.repository, "invalid build: .source.connected_repository")
        if not connected.revision:
            # "Required. The revision to fetch from the Git repository such as a branch, a
            # tag, a commit SHA, or any Git ref."
            raise invalid("invalid build: .source.connected_repository.revision must be set")
        if connected.dir_.startswith("/"):
            # "Directory, relative to the source root": a relative path, as GitSource.dir.
            raise invalid("invalid build: .source.connected_repository.dir must be a relative path")


def check_connected_repository(
    build: cb.Build, project: str, location: str, repositories: Repositories | None
) -> None:
    """For a `connected_repository` source: the repository exists, in the build's project
    and location. INVALID_ARGUMENT, NOT_FOUND, or FAILED_PRECONDITION (disabled connection)."""
    if not cb.Source.pb(build.source).HasField("connected_repository"):
        return
    name = build.source.connected_repository.repository
    parsed = parse_repository_name(name, "invalid build: .source.connected_repository")
    if parsed.location != location:
        # Repositories are regional and a build fetches one from its own region; the
        # stricter reading refuses a build elsewhere (a `global` build included).
        raise invalid(
            f"invalid build: repository {name} is in location {parsed.location}; "
            f"the build runs in {location}: create it under "
            f"projects/{project}/locations/{parsed.location}"
        )
    if parsed.project != project:
        raise invalid(
            f"invalid build: repository {name} belongs to project {parsed.project}, "
            f"not to the build's project {project}"
        )
    if repositories is None:
        raise failed_precondition("This sandbox serves no 2nd-gen repositories.")
    repositories.served(name)


def parse_parent(parent: str, project_id: str) -> tuple[str, str]:
    """(project, location) of a request that has `parent` and/or `project_id`."""
    if parent:
        match = _PARENT.match(parent)
        if match is None:
            raise invalid(f"parent {parent!r} must look like projects/PROJECT/locations/LOCATION")
        if project_id and project_id != match.group(1):
            raise invalid(f"project_id {project_id!r} does not match parent {parent!r}")
        return match.group(1), match.group(2)
    if not project_id:
        raise invalid("project_id is required")
    return project_id, "global"


def build_name(name: str, project_id: str, build_id: str) -> str:
    """The full name a Get/CancelBuild request means, by `name` or by `project_id` and `id`."""
    if name:
        match = _NAME.match(name)
        if match is None:
            raise invalid(f"name {name!r} must look like projects/P/locations/L/builds/ID")
        if build_id and build_id != match.group(3):
            raise invalid(f"id {build_id!r} does not match name {name!r}")
        return name
    if project_id and build_id:
        return f"projects/{project_id}/locations/global/builds/{build_id}"
    raise invalid("project_id and id are required")


def trigger_reference(name: str, project_id: str, trigger_id: str) -> tuple[str, str]:
    """(`projects/P/locations/L`, trigger) a trigger request means, by `name` or by
    `project_id` and `trigger_id` (in `global`)."""
    if name:
        match = _TRIGGER.match(name)
        if match is None:
            raise invalid(f"name {name!r} must look like projects/P/locations/L/triggers/TRIGGER")
        if project_id and project_id != match.group(1):
            raise invalid(f"project_id {project_id!r} does not match name {name!r}")
        if trigger_id and trigger_id != match.group(3):
            raise invalid(f"trigger_id {trigger_id!r} does not match name {name!r}")
        return f"projects/{match.group(1)}/locations/{match.group(2)}", match.group(3)
    if project_id and trigger_id:
        return f"projects/{project_id}/locations/global", trigger_id
    raise invalid("project_id and trigger_id are required")


def build_filter(text: str) -> Callable[[cb.Build], bool]:
    """A predicate for the ListBuilds filters the sandbox understands: `field="value" AND ...`."""
    terms = []
    for term in re.split(r"\s+AND\s+", text.strip()) if text.strip() else []:
        match = re.fullmatch(r'(\w+)\s*=\s*"?([^"]*)"?', term.strip())
        if match is None or match.group(1) not in ("status", "id", "build_id", "tags", "images"):
            raise invalid(
                f"invalid filter {text!r}: the sandbox filters on status, id, tags, images"
            )
        terms.append((match.group(1), match.group(2)))

    def keep(build: cb.Build) -> bool:
        for field, value in terms:
            actual: list[str] = {
                "status": [cb.Build.Status(build.status).name],
                "id": [build.id],
                "build_id": [build.id],
                "tags": list(build.tags),
                "images": list(build.images),
            }[field]
            if value not in actual:
                return False
        return True

    return keep
