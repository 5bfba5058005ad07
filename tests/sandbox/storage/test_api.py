"""The sandbox's Cloud Storage, through google-cloud-storage over its JSON API, and the
Cloud Build and Artifact Registry calls `deployer setup` makes beside it."""

from __future__ import annotations

import os
import time

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import artifactregistry_v1, storage
from google.cloud.devtools import cloudbuild_v1

from tests.conftest import REGION, GoogleClients


@pytest.fixture
def client(gcp: Sandbox, project: str) -> storage.Client:
    os.environ["STORAGE_EMULATOR_HOST"] = gcp.storage_url
    return storage.Client(project=project)


def test_a_bucket_is_made_once_and_read_back(client: storage.Client, project: str) -> None:
    name = f"{project}_cloudbuild"
    assert client.lookup_bucket(name) is None

    made = client.create_bucket(name, location="US")

    assert (made.name, client.get_bucket(name).location) == (name, "US")
    with pytest.raises(exceptions.Conflict, match="already own it"):
        client.create_bucket(name)
    with pytest.raises(exceptions.Conflict, match="not available"):
        storage.Client(project=f"{project}-other").create_bucket(name)


@pytest.mark.parametrize("size", [5_000, 9 * 1024 * 1024], ids=["multipart", "resumable"])
def test_an_object_round_trips_with_its_checksums(client: storage.Client, size: int) -> None:
    bucket = client.create_bucket(f"b-{time.monotonic_ns()}")
    data = os.urandom(size)

    blob = bucket.blob("source/a b.tgz")
    blob.upload_from_string(data, content_type="application/gzip", if_generation_match=0)

    found = bucket.get_blob("source/a b.tgz")
    assert found is not None
    assert (found.size, found.content_type, found.generation) == (
        size,
        "application/gzip",
        blob.generation,
    )
    assert found.download_as_bytes() == data  # the client checks X-Goog-Hash too
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("source/a b.tgz").upload_from_string(b"again", if_generation_match=0)


def test_missing_buckets_and_objects_answer_404_in_gcs_words(client: storage.Client) -> None:
    bucket = client.create_bucket(f"b-{time.monotonic_ns()}")
    assert bucket.get_blob("nothing") is None
    with pytest.raises(exceptions.NotFound, match="No such object"):
        bucket.blob("nothing").download_as_bytes()
    with pytest.raises(exceptions.NotFound, match="bucket does not exist"):
        client.bucket("no-such-bucket-here").blob("x").upload_from_string(b"x")


def test_a_build_from_a_missing_object_fails_fetching_its_source(
    gcp: Sandbox, google_clients: GoogleClients, project: str
) -> None:
    builds = google_clients(cloudbuild_v1.CloudBuildClient)
    parent = f"projects/{project}/locations/{REGION}"
    source = cloudbuild_v1.StorageSource(bucket=f"{project}_cloudbuild", object_="source/x.tgz")
    build = cloudbuild_v1.Build(
        source=cloudbuild_v1.Source(storage_source=source),
        steps=[cloudbuild_v1.BuildStep(name="gcr.io/cloud-builders/docker", args=["version"])],
    )

    operation = builds.create_build(
        request={"parent": parent, "project_id": project, "build": build}
    )
    with pytest.raises(exceptions.GoogleAPICallError):
        operation.result(timeout=30)

    ended = builds.get_build(name=f"{parent}/builds/{operation.metadata.build.id}")
    assert ended.status == cloudbuild_v1.Build.Status.FAILURE
    assert (
        ended.failure_info.type_ == cloudbuild_v1.Build.FailureInfo.FailureType.FETCH_SOURCE_FAILED
    )
    assert (
        "gs://" in ended.failure_info.detail and "object doesn't exist" in ended.failure_info.detail
    )


def test_a_build_unpacks_its_storage_source(
    gcp: Sandbox, google_clients: GoogleClients, client: storage.Client, project: str
) -> None:
    import io
    import tarfile

    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        text = b"FROM scratch\nCOPY hello.txt /\n"
        for name, data in (("Dockerfile", text), ("hello.txt", b"hi\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    bucket = client.create_bucket(f"{project}_cloudbuild")
    blob = bucket.blob("source/s.tgz")
    blob.upload_from_string(packed.getvalue(), content_type="application/gzip")
    builds = google_clients(cloudbuild_v1.CloudBuildClient)
    image = f"{REGION}-docker.pkg.dev/{project}/deployer/hello:one"
    build = cloudbuild_v1.Build(
        source=cloudbuild_v1.Source(
            storage_source=cloudbuild_v1.StorageSource(bucket=bucket.name, object_="source/s.tgz")
        ),
        steps=[
            cloudbuild_v1.BuildStep(
                name="gcr.io/cloud-builders/docker", args=["build", "-t", image, "."]
            )
        ],
        images=[image],
    )
    parent = f"projects/{project}/locations/{REGION}"

    done = builds.create_build(
        request={"parent": parent, "project_id": project, "build": build}
    ).result(timeout=60)

    assert done.status == cloudbuild_v1.Build.Status.SUCCESS
    resolved = done.source_provenance.resolved_storage_source
    assert (resolved.object_, resolved.generation) == ("source/s.tgz", blob.generation)
    assert done.results.images[0].digest.startswith("sha256:")


def test_a_docker_repository_is_created_once(google_clients: GoogleClients, project: str) -> None:
    registry = google_clients(artifactregistry_v1.ArtifactRegistryClient)
    parent = f"projects/{project}/locations/{REGION}"
    with pytest.raises(exceptions.NotFound):
        registry.get_repository(name=f"{parent}/repositories/deployer")
    wanted = artifactregistry_v1.Repository(format_=artifactregistry_v1.Repository.Format.DOCKER)

    made = registry.create_repository(
        parent=parent, repository_id="deployer", repository=wanted
    ).result(timeout=10)

    assert made.name == f"{parent}/repositories/deployer"
    assert registry.get_repository(name=made.name).format_ == wanted.format_
    with pytest.raises(exceptions.AlreadyExists):
        registry.create_repository(parent=parent, repository_id="deployer", repository=wanted)
    with pytest.raises(exceptions.InvalidArgument):
        registry.create_repository(parent=parent, repository_id="Bad_Name", repository=wanted)
