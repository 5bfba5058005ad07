"""Artifact Registry resource names, as the sandbox reads them, and the errors about them.

    repository    projects/P/locations/L/repositories/R  <->  L-docker.pkg.dev/P/R
    docker image  {repository}/dockerImages/IMAGE@sha256:HEX
    version       {repository}/packages/IMAGE/versions/sha256:HEX
    tag           {repository}/packages/IMAGE/tags/TAG

IMAGE is the image's path in the repository, one name segment: its slashes are
escaped (`a%2Fb`), as the `Tag.name` comment of
`google.cloud.artifactregistry_v1.types.tag` says ("If the package part contains
slashes, the slashes are escaped"). The sandbox refuses an unescaped one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from deployer_sandbox.common.rpc import RpcError, invalid, not_found

_REPOSITORY = (
    r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/repositories/(?P<repo>[^/]+)"
)
_DIGEST = r"sha256:[0-9a-f]{64}"
_PARENT = re.compile(f"^{_REPOSITORY}$")
_DOCKER_IMAGE = re.compile(f"^{_REPOSITORY}/dockerImages/(?P<path>[^/@]+)@(?P<digest>{_DIGEST})$")
_VERSION = re.compile(f"^{_REPOSITORY}/packages/(?P<path>[^/]+)/versions/(?P<digest>{_DIGEST})$")
_TAG = re.compile(f"^{_REPOSITORY}/packages/(?P<path>[^/]+)/tags/(?P<tag>[^/]+)$")


def entity_not_found() -> RpcError:
    """NOT_FOUND in the words Google's APIs use for a resource that is not there."""
    return not_found("Requested entity was not found.")


@dataclass(frozen=True)
class Repository:
    project: str
    location: str
    repo: str

    @property
    def name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/repositories/{self.repo}"

    @property
    def uri(self) -> str:
        """Where docker pushes to and pulls from: `L-docker.pkg.dev/P/R`."""
        return f"{self.location}-docker.pkg.dev/{self.project}/{self.repo}"

    def image_path(self, image_repository: str) -> str | None:
        """The image's path in this repository (`backend`, `team/api`), or None."""
        prefix = self.uri + "/"
        return (
            image_repository.removeprefix(prefix) if image_repository.startswith(prefix) else None
        )

    def docker_image_name(self, path: str, digest: str) -> str:
        return f"{self.name}/dockerImages/{quote(path, safe='')}@{digest}"

    def version_name(self, path: str, digest: str) -> str:
        return f"{self.name}/packages/{quote(path, safe='')}/versions/{digest}"


@dataclass(frozen=True)
class ImageName:
    """A docker image, a version or a tag: its repository, its image path, and the rest."""

    repository: Repository
    path: str  # unescaped
    digest: str = ""  # versions and docker images
    tag: str = ""  # tags

    @property
    def image_repository(self) -> str:
        """The image store's repository of the image: `L-docker.pkg.dev/P/R/PATH`."""
        return f"{self.repository.uri}/{self.path}"


def _repository(match: re.Match[str]) -> Repository:
    return Repository(match["project"], match["location"], match["repo"])


def parse_parent(parent: str) -> Repository:
    match = _PARENT.match(parent)
    if match is None:
        raise invalid(f"Invalid parent {parent!r}: expected projects/*/locations/*/repositories/*.")
    return _repository(match)


def parse_docker_image(name: str) -> ImageName:
    match = _DOCKER_IMAGE.match(name)
    if match is None:
        raise invalid(
            f"Invalid docker image name {name!r}: expected projects/*/locations/*/repositories/*"
            "/dockerImages/IMAGE@sha256:DIGEST, with the image path's slashes escaped as %2F."
        )
    return ImageName(_repository(match), unquote(match["path"]), digest=match["digest"])


def parse_version(name: str) -> ImageName:
    match = _VERSION.match(name)
    if match is None:
        raise invalid(
            f"Invalid version name {name!r}: expected projects/*/locations/*/repositories/*"
            "/packages/PACKAGE/versions/sha256:DIGEST, with the package's slashes escaped as %2F."
        )
    return ImageName(_repository(match), unquote(match["path"]), digest=match["digest"])


def parse_tag(name: str) -> ImageName:
    match = _TAG.match(name)
    if match is None:
        raise invalid(
            f"Invalid tag name {name!r}: expected projects/*/locations/*/repositories/*"
            "/packages/PACKAGE/tags/TAG, with the package's slashes escaped as %2F."
        )
    return ImageName(_repository(match), unquote(match["path"]), tag=unquote(match["tag"]))
