"""Step `image`: the deployer's own image, built with Cloud Build from this checkout's root
`Dockerfile`, as `gcloud builds submit --tag IMAGE .` builds it; the worker job runs it.

    IMAGE        REGION-docker.pkg.dev/P/deployer/deployer, tagged src-<hash of the source>
    1. source    the build context packed as a deterministic .tgz (`setup/image_source.py`)
    2. look      Artifact Registry's GetTag src-<hash>: there already -> `unchanged`, its
                 digest (nothing is uploaded or built: a second setup is a no-op)
    3. registry  the docker repository `deployer` in the region, created when missing
    4. upload    gs://P_cloudbuild/source/deployer-<hash>.tgz (the bucket gcloud stages
                 sources in, created in US when missing, as gcloud creates it)
    5. build     CreateBuild in projects/P/locations/REGION: storage_source, one step
                 `docker build -t IMAGE:src-<hash> .` with DOCKER_BUILDKIT=1 (the
                 Dockerfile uses `RUN --mount`), images=[IMAGE:src-<hash>], then GetBuild
                 until it ends -> IMAGE@sha256:... (build.results.images)

`--image` names an image instead: the step says `given` and builds nothing. A dry run
uploads and builds nothing: it says what it would build (or `unchanged` when the tag
exists), and the worker job plans with the tag. A failed build stops setup with the
build's failure and its log URL.
"""

from __future__ import annotations

import time
from typing import Any

from google.api_core import exceptions
from google.cloud import artifactregistry_v1
from google.cloud.devtools import cloudbuild_v1
from google.protobuf import duration_pb2

from deployer.adapters.google_clients import storage_client
from deployer.adapters.polling import operation_result
from deployer.setup import roles
from deployer.setup.context import Setup
from deployer.setup.image_source import REPOSITORY_ROOT, PackedSource, pack_context
from deployer.setup.steps import CALL_TIMEOUT, OPERATION_TIMEOUT, Outcome, SetupFailed, StepResult

STEP = "image"
REPOSITORY = "deployer"  # the Artifact Registry repository (README's "In production")
IMAGE_NAME = "deployer"
BUILDER = "gcr.io/cloud-builders/docker"
# Cloud Build's own default timeout is 10 minutes; a cold dependency install may need more.
BUILD_TIMEOUT_S = 1200
_Status = cloudbuild_v1.Build.Status
_TERMINAL = {
    _Status.SUCCESS,
    _Status.FAILURE,
    _Status.INTERNAL_ERROR,
    _Status.TIMEOUT,
    _Status.CANCELLED,
    _Status.EXPIRED,
}
_FIRST_POLL, _MAX_POLL = 0.05, 2.0


def image_repository(project: str, region: str) -> str:
    """Where the deployer's image is pushed: `REGION-docker.pkg.dev/P/deployer/deployer`."""
    return f"{region}-docker.pkg.dev/{project}/{REPOSITORY}/{IMAGE_NAME}"


def source_bucket(project: str) -> str:
    """The bucket `gcloud builds submit` stages sources in: `[PROJECT_ID]_cloudbuild`."""
    return f"{project}_cloudbuild"


def _repository_name(setup: Setup) -> str:
    return f"projects/{setup.project}/locations/{setup.region}/repositories/{REPOSITORY}"


def _tagged_digest(setup: Setup, tag: str) -> str | None:
    """The digest Artifact Registry's tag `tag` of the image points at, if it exists."""
    client = setup.client(artifactregistry_v1.ArtifactRegistryClient)
    name = f"{_repository_name(setup)}/packages/{IMAGE_NAME}/tags/{tag}"
    try:
        found = client.get_tag(name=name, timeout=CALL_TIMEOUT)
    except exceptions.NotFound:
        return None
    # Tag.version: ".../packages/P/versions/sha256:..." (artifactregistry_v1 types/tag.py).
    return str(found.version).rsplit("/", 1)[-1] or None


def _ensure_repository(setup: Setup) -> bool:
    """Create the docker repository when missing; whether it was created."""
    client = setup.client(artifactregistry_v1.ArtifactRegistryClient)
    try:
        client.get_repository(name=_repository_name(setup), timeout=CALL_TIMEOUT)
        return False
    except exceptions.NotFound:
        pass
    repository = artifactregistry_v1.Repository(
        format_=artifactregistry_v1.Repository.Format.DOCKER,
        description="The deployer's own image (deployer setup)",
    )
    try:
        operation = client.create_repository(
            parent=f"projects/{setup.project}/locations/{setup.region}",
            repository_id=REPOSITORY,
            repository=repository,
            timeout=CALL_TIMEOUT,
        )
        operation_result(operation, OPERATION_TIMEOUT)
    except exceptions.AlreadyExists:
        return False  # made between our read and our create
    return True


def _upload(setup: Setup, client: Any, packed: PackedSource) -> cloudbuild_v1.StorageSource:
    """The archive in the staging bucket (the bucket made when missing), as a StorageSource."""
    name = source_bucket(setup.project)
    bucket = client.lookup_bucket(name, timeout=CALL_TIMEOUT)
    if bucket is None:
        try:
            # gcloud makes its staging bucket in the US multi-region, whatever the build's
            # region (terraform-google-bootstrap#167: "it will be always created in the
            # 'US' location").
            bucket = client.create_bucket(name, location="US", timeout=CALL_TIMEOUT)
        except exceptions.Conflict:
            bucket = client.get_bucket(name, timeout=CALL_TIMEOUT)  # 403 if another's
    object_name = f"source/deployer-{packed.digest}.tgz"
    blob = bucket.get_blob(object_name, timeout=CALL_TIMEOUT)
    if blob is None:
        blob = bucket.blob(object_name)
        try:
            blob.upload_from_string(
                packed.data,
                content_type="application/gzip",
                if_generation_match=0,
                timeout=CALL_TIMEOUT,
            )
        except exceptions.PreconditionFailed:
            blob.reload(timeout=CALL_TIMEOUT)  # uploaded meanwhile: the same bytes
    return cloudbuild_v1.StorageSource(
        bucket=name, object_=object_name, generation=int(blob.generation or 0)
    )


def _wanted_build(
    source: cloudbuild_v1.StorageSource, reference: str, project: str
) -> cloudbuild_v1.Build:
    return cloudbuild_v1.Build(
        source=cloudbuild_v1.Source(storage_source=source),
        steps=[
            cloudbuild_v1.BuildStep(
                name=BUILDER,
                env=["DOCKER_BUILDKIT=1"],
                args=["build", "-t", reference, "."],
            )
        ],
        images=[reference],
        timeout=duration_pb2.Duration(seconds=BUILD_TIMEOUT_S),
        tags=["deployer-setup"],
        # As deployer-builder@ (its grants in `roles.py`), not Cloud Build's default
        # account, whose rights differ by project age (the July 2024 change). A build with
        # its own account must send its logs somewhere that account may write: Cloud
        # Logging ("if 'build.service_account' is specified, the build must ... use either
        # CLOUD_LOGGING_ONLY / NONE logging options").
        service_account=roles.resource(roles.BUILDER, project),
        options=cloudbuild_v1.BuildOptions(
            logging=cloudbuild_v1.BuildOptions.LoggingMode.CLOUD_LOGGING_ONLY
        ),
    )


def _build(setup: Setup, build: cloudbuild_v1.Build) -> cloudbuild_v1.Build:
    """Run `build` in the setup's region and follow it to its end."""
    client = setup.client(cloudbuild_v1.CloudBuildClient)
    parent = f"projects/{setup.project}/locations/{setup.region}"
    operation = client.create_build(
        request={"parent": parent, "project_id": setup.project, "build": build},
        timeout=CALL_TIMEOUT,
    )
    started: cloudbuild_v1.Build = operation.metadata.build
    deadline = time.monotonic() + BUILD_TIMEOUT_S + 60
    delay = _FIRST_POLL
    while True:
        found = client.get_build(name=f"{parent}/builds/{started.id}", timeout=CALL_TIMEOUT)
        if found.status in _TERMINAL:
            return found
        if time.monotonic() >= deadline:
            raise SetupFailed(
                STEP,
                f"build {started.id} did not end within {BUILD_TIMEOUT_S} s",
                f"Follow it at {started.log_url}, then run setup again",
            )
        time.sleep(delay)
        delay = min(delay * 1.5, _MAX_POLL)


def _failed(build: cloudbuild_v1.Build) -> SetupFailed:
    status = _Status(build.status).name
    why = build.failure_info.detail or build.status_detail or status
    return SetupFailed(
        STEP,
        f"Cloud Build's build {build.id} of the deployer's image ended {status}: {why}",
        f"Read its log at {build.log_url}; fix what it says and run setup again "
        "(or give --image to use an image built elsewhere)",
    )


def _short(digest: str) -> str:
    return digest[: len("sha256:") + 12] + "…"


def ensure_image(setup: Setup) -> StepResult:
    if setup.image:
        return StepResult(STEP, Outcome.UNCHANGED, f"given: {setup.image}")
    if not (REPOSITORY_ROOT / "Dockerfile").is_file():
        raise SetupFailed(
            STEP,
            f"no Dockerfile at {REPOSITORY_ROOT}: setup builds the deployer's image from a "
            "clone of its repository",
            "Run setup from a clone of the deployer's repository, or give --image",
        )
    packed = pack_context()
    tag = f"src-{packed.digest}"
    image = image_repository(setup.project, setup.region)
    digest = _tagged_digest(setup, tag)
    if digest is not None:
        setup.image = f"{image}@{digest}"
        return StepResult(STEP, Outcome.UNCHANGED, f"{_short(digest)} built from this checkout")
    if setup.dry_run:
        setup.image = f"{image}:{tag}"  # what the worker job would run, for its plan
        return StepResult(
            STEP,
            Outcome.PLANNED,
            f"build {image}:{tag} from this checkout ({packed.files} files) with Cloud Build",
        )
    storage = storage_client(setup.project)  # refused before anything is made, if it must be
    created = _ensure_repository(setup)
    source = _upload(setup, storage, packed)
    reference = f"{image}:{tag}"
    built = _build(setup, _wanted_build(source, reference, setup.project))
    if built.status != _Status.SUCCESS:
        raise _failed(built)
    pushed = [i for i in built.results.images if i.name == reference]
    if not pushed or not pushed[0].digest:
        raise SetupFailed(
            STEP,
            f"build {built.id} succeeded but pushed no {reference}",
            f"Read its log at {built.log_url}, then run setup again",
        )
    setup.image = f"{image}@{pushed[0].digest}"
    made = f"created repository {REPOSITORY}; " if created else ""
    return StepResult(
        STEP, Outcome.CHANGED, f"{made}built {_short(pushed[0].digest)} in build {built.id}"
    )
