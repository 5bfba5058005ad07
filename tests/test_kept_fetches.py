"""The kept fetches a preflight's reads of one commit share (`adapters/kept_fetches.py`):
one fetch serves the build config read and the tree's export; a failed fetch is never
kept; nothing is dropped while it is read; old ones go."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from deployer.adapters.kept_fetches import KeptFetches


class Fetches:
    """A fetch that writes the commit's one file, counting how often it ran."""

    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.count = 0
        self.fail = fail
        self.delay = delay

    def __call__(self, folder: str) -> None:
        self.count += 1
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("remote hung up")
        (Path(folder) / "HEAD").write_text("ref\n")


def test_two_reads_of_one_commit_fetch_once_and_another_commit_fetches_again() -> None:
    kept, fetches = KeptFetches(), Fetches()
    with kept.repository("https://example.test/a.git", "c1", fetches, 5) as first:
        assert (Path(first) / "HEAD").exists()
    with kept.repository("https://example.test/a.git", "c1", fetches, 5) as again:
        assert again == first
    with kept.repository("https://example.test/a.git", "c2", fetches, 5):
        pass
    assert fetches.count == 2


def test_a_failed_fetch_is_not_kept() -> None:
    kept = KeptFetches()
    with (
        pytest.raises(RuntimeError),
        kept.repository("https://example.test/a.git", "c1", Fetches(fail=True), 5),
    ):
        pass
    working = Fetches()
    with kept.repository("https://example.test/a.git", "c1", working, 5) as folder:
        assert (Path(folder) / "HEAD").exists()
    assert working.count == 1


def test_readers_racing_for_one_commit_share_one_fetch() -> None:
    kept, fetches = KeptFetches(), Fetches(delay=0.2)
    seen: list[str] = []

    def read() -> None:
        with kept.repository("https://example.test/a.git", "c1", fetches, 5) as folder:
            seen.append((Path(folder) / "HEAD").read_text())

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fetches.count == 1 and seen == ["ref\n"] * 4


def test_old_and_surplus_fetches_go_but_never_while_read() -> None:
    kept, fetches = KeptFetches(keep=0.05, most=1), Fetches()
    with kept.repository("https://example.test/a.git", "c1", fetches, 5) as held:
        # Another commit over the limit: c1 is being read, so it stays.
        with kept.repository("https://example.test/a.git", "c2", fetches, 5):
            pass
        assert Path(held).exists()
    time.sleep(0.1)
    with kept.repository("https://example.test/a.git", "c3", fetches, 5):
        pass
    assert not Path(held).exists()  # idle and old: removed
