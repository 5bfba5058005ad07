"""The sandbox's Artifact Registry: images that builds push and revisions run.

An image is the extracted source tree a build produced plus what its Dockerfile
says about running it (the exec-form CMD and the ENV baked in by build args).
Revisions refer to images by digest (`repo@sha256:...`) or by tag (`repo:tag`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Image:
    repository: str  # REGION-docker.pkg.dev/PROJECT/REPOSITORY/NAME
    digest: str  # sha256:<64 hex>
    context: Path  # directory the container runs in
    cmd: tuple[str, ...]  # exec-form CMD; "python" means the sandbox's interpreter
    env: Mapping[str, str] = field(default_factory=dict)  # ENV baked in at build time
    commit: str | None = None

    @property
    def uri(self) -> str:
        return f"{self.repository}@{self.digest}"


def split_reference(reference: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    repository, _, digest = reference.partition("@")
    tag = None
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = repository.rpartition(":")
    if not digest and tag is None:
        tag = "latest"
    return repository, tag, digest or None


class ImageStore:
    """Thread-safe registry of pushed images by digest and by tag."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_digest: dict[tuple[str, str], Image] = {}
        self._tags: dict[tuple[str, str], str] = {}

    def push(self, image: Image, tags: list[str]) -> None:
        with self._lock:
            self._by_digest[(image.repository, image.digest)] = image
            for tag in tags:
                self._tags[(image.repository, tag)] = image.digest

    def resolve(self, reference: str) -> Image | None:
        """The image a reference names, or None when nothing was pushed under it."""
        repository, tag, digest = split_reference(reference)
        with self._lock:
            if digest is None and tag is not None:
                digest = self._tags.get((repository, tag))
            if digest is None:
                return None
            return self._by_digest.get((repository, digest))
