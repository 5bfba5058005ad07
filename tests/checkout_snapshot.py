"""A copy of this checkout for setup's front to build its function from: the files
others edit while tests run do not change the source between two runs of one test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.setup import front_source

# What the function's zip is made of, and what `uv export` reads.
FILES = ("main.py", "uv.lock", "pyproject.toml", "README.md", "sandbox/pyproject.toml")


def copy_checkout(root: Path, into: Path) -> Path:
    """A copy of the checkout at `root` in `into`, as far as the front's source goes."""
    shutil.copytree(
        root / "deployer", into / "deployer", ignore=shutil.ignore_patterns("__pycache__")
    )
    (into / "sandbox").mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy(root / name, into / name)
    return into


@pytest.fixture(scope="session")
def checkout_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_checkout(front_source.repository_root(), tmp_path_factory.mktemp("checkout"))


@pytest.fixture(autouse=True)
def _front_from_snapshot(
    checkout_snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Setup builds the front's function from the snapshot (tests may point it elsewhere)."""
    monkeypatch.setattr(front_source, "repository_root", lambda: checkout_snapshot)
    yield checkout_snapshot
