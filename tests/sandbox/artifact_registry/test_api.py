"""Artifact Registry v1 in the sandbox, through the real `artifactregistry_v1` client."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import pytest
from deployer_sandbox.common.images import Image
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import artifactregistry_v1

from deployer.adapters.artifact_registry import docker_image_name
from tests.conftest import REGION, GoogleClients

Client = artifactregistry_v1.ArtifactRegistryClient


@pytest.fixture
def client(google_clients: GoogleClients) -> Client:
    return google_clients(Client)


def push(gcp: Sandbox, folder: Path, repository: str, tags: list[str]) -> Image:
    """An image whose files are `folder`'s, pushed under `tags` (the store, in-process)."""
    image = Image(
        repository=repository,
        digest="sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        context=folder,
        cmd=("python", "-m", "app"),
    )
    gcp.images.push(image, tags)
    return image


@pytest.fixture
def repository(project: str) -> tuple[str, str]:
    """(the repository's resource name, its docker host path) in a project of its own."""
    return (
        f"projects/{project}/locations/{REGION}/repositories/apps",
        f"{REGION}-docker.pkg.dev/{project}/apps",
    )


def test_get_docker_image_answers_as_google_does(
    gcp: Sandbox, client: Client, repository: tuple[str, str], tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_bytes(b"x" * 1000)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "data.bin").write_bytes(b"y" * 24)
    before = time.time()
    image = push(gcp, tmp_path, f"{repository[1]}/team/api", ["v1", "latest"])

    # The image path's slash is escaped: the path is one segment of the name.
    name = f"{repository[0]}/dockerImages/team%2Fapi@{image.digest}"
    assert docker_image_name(image.uri) == name
    found = client.get_docker_image(name=name, timeout=10)

    assert found.name == name
    assert found.uri == f"{repository[1]}/team/api@{image.digest}"
    assert sorted(found.tags) == ["latest", "v1"]
    assert found.image_size_bytes == 1024
    assert found.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert before - 1 <= found.upload_time.timestamp() <= time.time() + 1


def test_an_unknown_digest_is_not_found_in_googles_words(
    gcp: Sandbox, client: Client, repository: tuple[str, str], tmp_path: Path
) -> None:
    push(gcp, tmp_path, f"{repository[1]}/api", ["latest"])
    other = "sha256:" + "0" * 64
    with pytest.raises(exceptions.NotFound) as raised:
        client.get_docker_image(name=f"{repository[0]}/dockerImages/api@{other}", timeout=10)
    assert raised.value.message == "Requested entity was not found."


def test_an_unescaped_image_path_or_a_tag_instead_of_a_digest_is_refused(
    gcp: Sandbox, client: Client, repository: tuple[str, str], tmp_path: Path
) -> None:
    image = push(gcp, tmp_path, f"{repository[1]}/team/api", ["latest"])
    for wrong in (f"team/api@{image.digest}", "team%2Fapi:latest", "team%2Fapi"):
        with pytest.raises(exceptions.InvalidArgument) as raised:
            client.get_docker_image(name=f"{repository[0]}/dockerImages/{wrong}", timeout=10)
        assert "%2F" in raised.value.message


def test_list_docker_images_pages_through_one_repository(
    gcp: Sandbox, client: Client, repository: tuple[str, str], tmp_path: Path
) -> None:
    first = push(gcp, tmp_path, f"{repository[1]}/api", ["a"])
    second = push(gcp, tmp_path, f"{repository[1]}/web", ["b"])
    push(gcp, tmp_path, repository[1].replace("/apps", "/elsewhere") + "/api", ["c"])

    pages = client.list_docker_images(
        request=artifactregistry_v1.ListDockerImagesRequest(parent=repository[0], page_size=1),
        timeout=10,
    )
    listed = [page.docker_images for page in pages.pages]

    assert [[image.uri for image in found] for found in listed] == [[first.uri], [second.uri]]


def test_get_tag_names_the_version_it_points_at(
    gcp: Sandbox, client: Client, repository: tuple[str, str], tmp_path: Path
) -> None:
    image = push(gcp, tmp_path, f"{repository[1]}/team/api", ["v1"])
    name = f"{repository[0]}/packages/team%2Fapi/tags/v1"

    found = client.get_tag(name=name, timeout=10)

    assert found.name == name
    assert found.version == f"{repository[0]}/packages/team%2Fapi/versions/{image.digest}"
    with pytest.raises(exceptions.NotFound):
        client.get_tag(name=f"{repository[0]}/packages/team%2Fapi/tags/v2", timeout=10)


def test_a_tagged_version_is_deleted_only_with_force_and_its_tags_go_with_it(
    gcp: Sandbox, client: Client, repository: tuple[str, str], tmp_path: Path
) -> None:
    image = push(gcp, tmp_path, f"{repository[1]}/api", ["v1"])
    version = f"{repository[0]}/packages/api/versions/{image.digest}"

    with pytest.raises(exceptions.FailedPrecondition):
        client.delete_version(name=version, timeout=10)
    assert client.get_docker_image(name=docker_image_name(image.uri), timeout=10).tags == ["v1"]

    client.delete_version(
        request=artifactregistry_v1.DeleteVersionRequest(name=version, force=True), timeout=10
    ).result(timeout=10)

    with pytest.raises(exceptions.NotFound):
        client.get_docker_image(name=docker_image_name(image.uri), timeout=10)
    with pytest.raises(exceptions.NotFound):
        client.get_tag(name=f"{repository[0]}/packages/api/tags/v1", timeout=10)
    with pytest.raises(exceptions.NotFound):
        client.delete_version(name=version, timeout=10)
    assert gcp.images.resolve(image.uri) is None
