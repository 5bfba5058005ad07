"""The build cache, as Docker's: a layer per instruction, found again by its cache key.

Each instruction's key is hash(parent key, the instruction after expansion, the content
of what it reads): COPY's sources, a RUN's bind-mount sources (BuildKit's cache keys,
docs.docker.com/build/cache/invalidation/). A RUN whose key is known is not run again:
the stage's tree as it stood after it (a snapshot) is restored, and the log says
CACHED as BuildKit does. RUN cache mounts (`--mount=type=cache`) are directories that
outlive every build, so uv's and pip's caches stay warm.

The cache lives in `$DEPLOYER_SANDBOX_CACHE` (default `~/.cache/deployer-sandbox`) and
is shared by every sandbox and test run on the machine:

    layers/<key>/           a stage's tree after a RUN, never modified once in place
    mounts/<id>/            a cache mount's directory

Snapshots are written beside their place and renamed into it, so two builds (two
pytest-xdist workers) never see half a snapshot; the first to finish wins.

`StageFs` is a stage's filesystem in a build: a cached RUN only points it at the
snapshot, and the tree is copied out of the cache when something needs to change it
(BuildKit also resolves a cached chain without unpacking it). Copies out of snapshots
and earlier stages are hard links (fast: a warm build copies no bytes); every change
replaces files rather than writing into them, and before a RUN, which may write into
any file, the tree is made a copy of its own (`unshare`), so a snapshot never changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from deployer_sandbox.cloud_build.image_trees import clone_tree, remove_tree

CACHE_ENV = "DEPLOYER_SANDBOX_CACHE"


def cache_dir() -> Path:
    """The persistent cache directory of this machine (created)."""
    configured = os.environ.get(CACHE_ENV)
    path = Path(configured) if configured else Path.home() / ".cache" / "deployer-sandbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(parent: str, *parts: str) -> str:
    """The key of an instruction: its parent's key and what it does and reads."""
    digest = hashlib.sha256(parent.encode())
    for part in parts:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


class LayerCache:
    """Snapshots of stage trees by cache key, and cache-mount directories."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_dir()
        self._layers = self.root / "layers"
        self._mounts = self.root / "mounts"
        self._layers.mkdir(parents=True, exist_ok=True)
        self._mounts.mkdir(parents=True, exist_ok=True)

    def snapshot(self, key: str) -> Path | None:
        """The tree cached under `key`, if any."""
        path = self._layers / key
        return path if path.is_dir() else None

    def save(self, key: str, tree: Path) -> None:
        """Copy `tree` into the cache under `key` (atomically; an existing entry wins)."""
        if self.snapshot(key) is not None:
            return
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=self._layers))
        try:
            clone_tree(tree, staging / "tree")
            # rename(2) onto an existing, non-empty directory fails: another build saved
            # the same key first, and theirs is as good.
            with contextlib.suppress(OSError):
                (staging / "tree").rename(self._layers / key)
        finally:
            remove_tree(staging)

    @property
    def bases(self) -> Path:
        """Where base images are laid down, once each (`BaseImage.laid_down`)."""
        return self.root / "bases"

    def mount_dir(self, mount_id: str) -> Path:
        """The persistent directory of a cache mount (`id`, else its target)."""
        path = self._mounts / hashlib.sha256(mount_id.encode()).hexdigest()[:32]
        path.mkdir(parents=True, exist_ok=True)
        return path


class StageFs:
    """A stage's tree in one build: materialized in `tree` only when something changes it."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self._snapshot: Path | None = None
        self._pending: list[Callable[[Path], None]] = []
        self.shared = False  # whether the tree has files hard-linked to other trees

    def restore(self, snapshot: Path) -> None:
        """The stage's tree is now `snapshot` (copied out only when needed)."""
        self._snapshot, self._pending = snapshot, []

    def change(self, operation: Callable[[Path], None]) -> None:
        """Apply `operation(tree)` now, or when the tree is next materialized."""
        if self._snapshot is not None:
            self._pending.append(operation)
        else:
            operation(self.tree)

    def materialize(self) -> Path:
        """The stage's own tree, with every change applied."""
        if self._snapshot is not None:
            remove_tree(self.tree)
            clone_tree(self._snapshot, self.tree, link=True)
            self.shared = True
            pending, self._snapshot, self._pending = self._pending, None, []
            for operation in pending:
                operation(self.tree)
        return self.tree

    def unshare(self) -> Path:
        """The stage's tree, materialized, with files of its own only (before a RUN)."""
        tree = self.materialize()
        if self.shared:
            own = tree.with_name(tree.name + ".own")
            remove_tree(own)
            clone_tree(tree, own)
            remove_tree(tree)
            own.rename(tree)
            self.shared = False
        return tree

    def fork(self, tree: Path) -> StageFs:
        """A new stage starting from this one (`FROM <stage>`), with its own tree."""
        forked = StageFs(tree)
        if self._snapshot is not None and not self._pending:
            forked.restore(self._snapshot)
        else:
            clone_tree(self.materialize(), tree, link=True)
            forked.shared = True
        return forked

    def readable(self) -> Path:
        """A tree to read the stage from: the snapshot itself while nothing changed it."""
        if self._snapshot is not None and not self._pending:
            return self._snapshot
        return self.materialize()
