"""The sandbox's Artifact Registry: images that builds push and revisions run.

Two kinds of image:
- built (`root=True`): what `docker build` made, a real directory tree holding exactly
  what COPY, ADD and RUN put in it, with the image's config (WORKDIR, ENV, ENTRYPOINT,
  CMD, USER). A revision sees the tree at the image's own paths.
- host images (`root=False`): a folder run in place with the sandbox's interpreter,
  which tests and the harness push directly (the deployer's own worker image).

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
    context: Path  # root=True: the image's filesystem tree; else the folder it runs in
    cmd: tuple[str, ...]  # CMD (host images: the whole command; "python" = the sandbox's)
    env: Mapping[str, str] = field(default_factory=dict)  # the image's ENV, PATH included
    commit: str | None = None
    root: bool = False  # whether `context` is a root filesystem (a built image)
    entrypoint: tuple[str, ...] = ()  # ENTRYPOINT: Cloud Run's `command` replaces it
    workdir: str = "/"  # WORKDIR, a path inside the image
    user: str | None = None  # USER, noted: processes run as the sandbox's user
    exposed: tuple[str, ...] = ()  # EXPOSE, documentation only (as on Cloud Run)

    @property
    def argv(self) -> tuple[str, ...]:
        """What the container runs when nothing overrides it: ENTRYPOINT + CMD."""
        return self.entrypoint + self.cmd

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
