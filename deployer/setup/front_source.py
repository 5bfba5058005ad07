"""The front function's source: one zip made from this checkout, the same bytes every time.

    main.py            the entry points (`deployer_http`)
    deployer/          the package, without __pycache__ and compiled files
    requirements.txt   the deployer's pinned runtime dependencies, from uv.lock:
                       `uv export --frozen --no-dev --no-hashes --no-emit-project
                       --package deployer --format requirements-txt`

Entries are sorted and stamped with one fixed time, so the same checkout gives the same
zip and the same hash: `source_hash` is what the function's `deployer-source` label holds,
and a second setup with an unchanged checkout uploads nothing.

The checkout is the deployer package's parent folder (where main.py and uv.lock are);
an installed wheel has neither, and setup says to run it from a checkout.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import deployer
from deployer.setup.steps import SetupFailed

STEP = "front"
# A fixed time for every entry (zip's epoch is 1980): the bytes depend on content only.
_STAMP = (1980, 1, 1, 0, 0, 0)
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
EXPORT = (
    "export",
    "--frozen",
    "--no-dev",
    "--no-hashes",
    "--no-emit-project",
    "--package",
    "deployer",
    "--format",
    "requirements-txt",
)


@dataclass(frozen=True)
class Source:
    archive: bytes

    @property
    def source_hash(self) -> str:
        """The first 16 hex digits of the zip's sha256 (a label value: short, lowercase)."""
        return hashlib.sha256(self.archive).hexdigest()[:16]


def repository_root() -> Path:
    """The checkout setup runs from: the folder holding the deployer package."""
    return Path(deployer.__file__).resolve().parent.parent


def _uv() -> str | None:
    """The uv binary: `uv run` sets UV; else the one on PATH; else the `uv` package's."""
    found = os.environ.get("UV") or shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    try:
        located: str = find_uv_bin()
    except FileNotFoundError:
        return None
    return located


def requirements(root: Path) -> bytes:
    """requirements.txt of the deployer's locked runtime dependencies."""
    uv = _uv()
    if uv is None:
        raise SetupFailed(
            STEP,
            "uv is not installed: the function's requirements come from uv.lock",
            "Install uv (https://docs.astral.sh/uv/) or run setup through `uv run deployer setup`",
        )
    done = subprocess.run([uv, *EXPORT], cwd=root, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        problem = " ".join(done.stderr.decode(errors="replace").split())[:200]
        raise SetupFailed(
            STEP,
            f"uv export failed: {problem}",
            "Run `uv lock` in the checkout if uv.lock is out of date, then setup again",
        )
    return done.stdout


def _files(root: Path) -> list[tuple[str, bytes]]:
    files = [("main.py", (root / "main.py").read_bytes())]
    for path in (root / "deployer").rglob("*"):
        relative = path.relative_to(root)
        if not path.is_file() or _SKIPPED_DIRS & set(relative.parts):
            continue
        if path.name.endswith(_SKIPPED_SUFFIXES):
            continue
        files.append((relative.as_posix(), path.read_bytes()))
    files.append(("requirements.txt", requirements(root)))
    return sorted(files)


def build_source(root: Path | None = None) -> Source:
    """The zip of the front's function, from the checkout at `root` (default: this one)."""
    root = root or repository_root()
    if not (root / "main.py").is_file() or not (root / "uv.lock").is_file():
        raise SetupFailed(
            STEP,
            f"{root} holds no main.py and uv.lock: the deployer is not a checkout here",
            "Run setup from a clone of the deployer's repository (uv run deployer setup ...)",
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _files(root):
            entry = zipfile.ZipInfo(name, date_time=_STAMP)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data)
    return Source(buffer.getvalue())
