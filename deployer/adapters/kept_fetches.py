"""Shallow fetches of one commit, kept a little while for the next read of the same commit.

A deploy's preflight reads the build config at its commit, then exports the whole tree
for the Dockerfile lint; `deployer check` does the same. Both are served from one fetch
(depth 1, blobs included) instead of one each: a git process costs tens of
milliseconds, and a fetch several of them. A commit's content never changes, so a
fetch is reused by (remote URL, commit) for `KEEP` seconds. At most `MOST` are kept, the
least recently used dropped first, never while being read; each lives in a temporary
folder, removed when dropped (or when the process exits).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

KEEP = 120.0  # seconds a fetch is reused after its last read
MOST = 4  # fetches kept at once


@dataclass
class _Kept:
    folder: str
    used_at: float
    readers: int = 0
    ready: threading.Event = field(default_factory=threading.Event)
    failed: bool = False


class KeptFetches:
    """Fetched repositories by (URL, commit), shared by the threads of one process."""

    def __init__(self, keep: float = KEEP, most: int = MOST) -> None:
        self._keep = keep
        self._most = most
        self._kept: dict[tuple[str, str], _Kept] = {}
        self._lock = threading.Lock()
        # What is still kept when this goes (the process exits) is removed then.
        weakref.finalize(self, _remove_all, self._kept)

    @contextlib.contextmanager
    def repository(
        self, url: str, commit: str, fetch: Callable[[str], None], wait: float
    ) -> Iterator[str]:
        """The folder of a bare repository holding `commit` of `url`: kept from an earlier
        fetch, or filled now by `fetch(folder)` (its errors are the caller's; a failed fetch
        is not kept). `wait`: how long to wait for another thread fetching the same."""
        key = (url, commit)
        with self._lock:
            self._drop_old(time.monotonic())
            kept = self._kept.get(key)
            mine = kept is None
            if kept is None:
                kept = _Kept(tempfile.mkdtemp(prefix="deployer-source-"), 0.0)
                self._kept[key] = kept
            kept.readers += 1
        try:
            if mine:
                try:
                    fetch(kept.folder)
                except BaseException:
                    kept.failed = True
                    raise
                finally:
                    kept.ready.set()
            elif not kept.ready.wait(wait) or kept.failed:
                # The other fetch failed or is slow: fetch on our own, kept by nobody.
                with tempfile.TemporaryDirectory(prefix="deployer-source-") as own:
                    fetch(own)
                    yield own
                return
            yield kept.folder
        finally:
            with self._lock:
                kept.readers -= 1
                kept.used_at = time.monotonic()
                if kept.failed and self._kept.get(key) is kept:
                    del self._kept[key]
                if kept.failed and kept.readers == 0:
                    shutil.rmtree(kept.folder, ignore_errors=True)
                self._drop_old(time.monotonic())

    def _drop_old(self, now: float) -> None:
        """Drop what is idle and old, then the least recently used over `MOST` (lock held)."""
        idle = sorted(
            ((kept.used_at, key) for key, kept in self._kept.items() if kept.readers == 0),
        )
        for used_at, key in idle:
            if now - used_at > self._keep or len(self._kept) > self._most:
                shutil.rmtree(self._kept.pop(key).folder, ignore_errors=True)


def _remove_all(kept: dict[tuple[str, str], _Kept]) -> None:
    for entry in kept.values():
        shutil.rmtree(entry.folder, ignore_errors=True)
    kept.clear()
