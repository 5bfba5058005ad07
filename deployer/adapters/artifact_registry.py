"""Artifact Registry behind the pipeline's `Images` port: does an image still exist?

    check   LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE@sha256:...
            -> GetDockerImage projects/PROJECT/locations/LOCATION/repositories/REPOSITORY/
               dockerImages/IMAGE@sha256:...  -> found, NOT_FOUND, or why it is not known

A reused build's image is checked before a revision is made of it: a cleanup policy
or a person may have deleted it since the build pushed it, and Cloud Run would then
refuse the revision only after the deploy had already skipped its build.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from google.api_core import exceptions
from google.cloud import artifactregistry_v1

from deployer.adapters.google_clients import google_client
from deployer.pipeline.ports import ImageCheck

_CALL_TIMEOUT = 30.0
# An Artifact Registry Docker image by digest (the naming convention in "Repository and
# image names", cloud.google.com/artifact-registry/docs/docker/names).
_IMAGE = re.compile(
    r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[^/]+)/(?P<repository>[^/]+)/"
    r"(?P<path>[^@]+)@(?P<digest>sha256:[0-9a-f]{64})$"
)


def docker_image_name(image: str) -> str | None:
    """The DockerImage resource name of `image` (repository@sha256:...), or None when it is
    not an Artifact Registry image by digest.

    The image's path is one segment of the name: its slashes are escaped, as the
    `Tag.name` comment of `google.cloud.artifactregistry_v1.types.tag` says of the
    package part ("If the package part contains slashes, the slashes are escaped").
    """
    match = _IMAGE.match(image)
    if match is None:
        return None
    return artifactregistry_v1.ArtifactRegistryClient.docker_image_path(
        match["project"],
        match["location"],
        match["repository"],
        f"{quote(match['path'], safe='')}@{match['digest']}",
    )


class ArtifactRegistryImages:
    """`Images` over the Artifact Registry v1 API."""

    def __init__(self, client: artifactregistry_v1.ArtifactRegistryClient | None = None) -> None:
        self._client = client or google_client(artifactregistry_v1.ArtifactRegistryClient)

    def check(self, image: str, timeout: float) -> ImageCheck:
        name = docker_image_name(image)
        if name is None:
            return ImageCheck(False, "not an Artifact Registry image by digest, so not checked")
        try:
            self._client.get_docker_image(
                request=artifactregistry_v1.GetDockerImageRequest(name=name),
                timeout=min(timeout, _CALL_TIMEOUT),
            )
        except exceptions.NotFound:
            # GetDockerImage answers NOT_FOUND for a digest no longer in the repository
            # (and for a repository that is gone).
            return ImageCheck(False, "no longer in Artifact Registry")
        except exceptions.GoogleAPICallError as error:
            code = error.grpc_status_code
            reason = f"{code.name if code is not None else type(error).__name__}: {error.message}"
            return ImageCheck(False, f"Artifact Registry could not say ({reason})")
        return ImageCheck(True, "still in Artifact Registry")
