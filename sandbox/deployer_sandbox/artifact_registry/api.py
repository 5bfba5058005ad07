"""Artifact Registry v1 over the sandbox's image store (`common.images`).

Methods: GetDockerImage, ListDockerImages, GetTag, DeleteVersion; CreateRepository and
GetRepository (`repositories.py`). Every image a build pushes (or a test pushes) to
`L-docker.pkg.dev/P/R/IMAGE` is a Docker image of the repository
`projects/P/locations/L/repositories/R`, whether or not that repository was created (any
such path holds what was pushed to it, an empty one lists nothing): only Create and
GetRepository read the repositories' records.

A DockerImage carries what the store knows, as Google fills it in
(`google.cloud.artifactregistry_v1.types.artifact.DockerImage`): name, uri, tags,
image_size_bytes (the bytes of the image's files), upload_time and update_time (the
first push), media_type (what `docker push` uploads). build_time is left unset: the
store does not know when the image was built.

DeleteVersion deletes an image by digest with its tags ("By default, a version that
is tagged may not be deleted. If force=true, the version and any tags pointing to the
version are deleted": `DeleteVersionRequest.force` in `types/version.py`). The
proto names no error for the refusal: the sandbox answers FAILED_PRECONDITION.
"""

from __future__ import annotations

import datetime
from typing import Any

import grpc
from google.cloud.artifactregistry_v1.types import artifact, repository, service, tag, version
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2

from deployer_sandbox.artifact_registry.names import (
    Repository,
    entity_not_found,
    parse_docker_image,
    parse_parent,
    parse_tag,
    parse_version,
)
from deployer_sandbox.artifact_registry.repositories import RepositoryRecords
from deployer_sandbox.common import rpc
from deployer_sandbox.common.images import Image, ImageStore
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.rpc import failed_precondition, invalid, unary

SERVICE = "google.devtools.artifactregistry.v1.ArtifactRegistry"
# What `docker push` uploads for a single-platform image.
MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
# "Maximum page size is 1,000." (ListDockerImagesRequest.page_size)
MAX_PAGE = 1000


class ArtifactRegistry:
    """The gRPC service over `images`; DeleteVersion's operations live in `operations`."""

    def __init__(self, images: ImageStore, operations: Operations) -> None:
        self._images = images
        self._operations = operations
        self.repositories = RepositoryRecords(operations)

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler for `google.devtools.artifactregistry.v1.ArtifactRegistry`."""
        table: list[tuple[str, Any, Any, Any]] = [
            ("GetDockerImage", self._get, artifact.GetDockerImageRequest, artifact.DockerImage),
            (
                "ListDockerImages",
                self._list,
                artifact.ListDockerImagesRequest,
                artifact.ListDockerImagesResponse,
            ),
            ("GetTag", self._get_tag, tag.GetTagRequest, tag.Tag),
            ("DeleteVersion", self._delete, version.DeleteVersionRequest, operations_pb2.Operation),
            (
                "CreateRepository",
                self.repositories.create,
                repository.CreateRepositoryRequest,
                operations_pb2.Operation,
            ),
            (
                "GetRepository",
                self.repositories.get,
                repository.GetRepositoryRequest,
                repository.Repository,
            ),
        ]
        methods = {name: unary(handler, req, resp) for name, handler, req, resp in table}
        return rpc.service(SERVICE, methods)

    def _docker_image(self, repository: Repository, image: Image) -> artifact.DockerImage:
        path = repository.image_path(image.repository) or ""
        uploaded = datetime.datetime.fromtimestamp(self._images.uploaded_at(image), datetime.UTC)
        return artifact.DockerImage(
            name=repository.docker_image_name(path, image.digest),
            uri=image.uri,
            tags=self._images.tags_of(image),
            image_size_bytes=self._images.size_of(image),
            upload_time=uploaded,
            update_time=uploaded,
            media_type=MEDIA_TYPE,
        )

    def _get(self, request: artifact.GetDockerImageRequest) -> artifact.DockerImage:
        wanted = parse_docker_image(request.name)
        image = self._images.get(wanted.image_repository, wanted.digest)
        if image is None:
            raise entity_not_found()
        return self._docker_image(wanted.repository, image)

    def _list(self, request: artifact.ListDockerImagesRequest) -> artifact.ListDockerImagesResponse:
        repository = parse_parent(request.parent)
        if request.order_by:
            # Google sorts by e.g. `update_time desc`; the sandbox lists in upload order only.
            raise invalid(f"order_by {request.order_by!r}: the sandbox lists in upload order only")
        listed = self._images.in_repository(repository.uri + "/")
        found, following = page(
            listed, request.page_size, request.page_token, default_size=None, max_size=MAX_PAGE
        )
        return artifact.ListDockerImagesResponse(
            docker_images=[self._docker_image(repository, image) for image in found],
            next_page_token=following,
        )

    def _get_tag(self, request: tag.GetTagRequest) -> tag.Tag:
        wanted = parse_tag(request.name)
        image = self._images.resolve(f"{wanted.image_repository}:{wanted.tag}")
        if image is None:
            raise entity_not_found()
        return tag.Tag(
            name=request.name,
            version=wanted.repository.version_name(wanted.path, image.digest),
        )

    def _delete(self, request: version.DeleteVersionRequest) -> operations_pb2.Operation:
        wanted = parse_version(request.name)
        image = self._images.get(wanted.image_repository, wanted.digest)
        if image is None:
            raise entity_not_found()
        tags = self._images.tags_of(image)
        if tags and not request.force:
            raise failed_precondition(
                f"Version {request.name} is tagged ({', '.join(tags)}): delete its tags "
                "first, or set force to delete them with it."
            )
        self._images.delete(wanted.image_repository, wanted.digest)
        location = f"projects/{wanted.repository.project}/locations/{wanted.repository.location}"
        name = self._operations.start(location, service.OperationMetadata())
        self._operations.succeed(name, empty_pb2.Empty(), service.OperationMetadata())
        return self._operations.get(name)
