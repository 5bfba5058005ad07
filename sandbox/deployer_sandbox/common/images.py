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

import os
import threading
import time
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
        self._uploaded: dict[tuple[str, str], float] = {}  # first push, epoch seconds
        self._sizes: dict[tuple[str, str], int] = {}

    def push(self, image: Image, tags: list[str]) -> None:
        with self._lock:
            key = (image.repository, image.digest)
            self._by_digest[key] = image
            self._uploaded.setdefault(key, time.time())
            for tag in tags:
                self._tags[(image.repository, tag)] = image.digest

    def get(self, repository: str, digest: str) -> Image | None:
        """The image pushed to `repository` with `digest`, or None."""
        with self._lock:
            return self._by_digest.get((repository, digest))

    def in_repository(self, prefix: str) -> list[Image]:
        """Every image whose repository starts with `prefix`, oldest upload first."""
        with self._lock:
            found = [
                image for (repo, _), image in self._by_digest.items() if repo.startswith(prefix)
            ]
            return sorted(found, key=lambda image: self._uploaded[(image.repository, image.digest)])

    def tags_of(self, image: Image) -> list[str]:
        """The tags pointing at `image` now, sorted."""
        with self._lock:
            return sorted(
                tag
                for (repo, tag), digest in self._tags.items()
                if repo == image.repository and digest == image.digest
            )

    def uploaded_at(self, image: Image) -> float:
        """When `image` was first pushed (epoch seconds)."""
        with self._lock:
            return self._uploaded.get((image.repository, image.digest), 0.0)

    def size_of(self, image: Image) -> int:
        """The bytes of the image's files (its tree, or its folder), counted once."""
        key = (image.repository, image.digest)
        with self._lock:
            if key in self._sizes:
                return self._sizes[key]
        total = 0
        for folder, _, names in os.walk(image.context):
            for name in names:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    continue  # a file that went away while counting
        with self._lock:
            self._sizes[key] = total
        return total

    def delete(self, repository: str, digest: str) -> bool:
        """Forget the image and every tag pointing at it; whether it was there. Revisions
        already running it keep running (their files stay), new ones cannot pull it."""
        with self._lock:
            key = (repository, digest)
            if self._by_digest.pop(key, None) is None:
                return False
            self._uploaded.pop(key, None)
            self._sizes.pop(key, None)
            for tag_key in [k for k, v in self._tags.items() if k[0] == repository and v == digest]:
                del self._tags[tag_key]
            return True

    def resolve(self, reference: str) -> Image | None:
        """The image a reference names, or None when nothing was pushed under it."""
        repository, tag, digest = split_reference(reference)
        with self._lock:
            if digest is None and tag is not None:
                digest = self._tags.get((repository, tag))
            if digest is None:
                return None
            return self._by_digest.get((repository, digest))
