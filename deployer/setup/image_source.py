"""The deployer's own build context, packed as `gcloud builds submit .` packs it: the
repository root's files that the root `.dockerignore` keeps (read by the same matcher the
preflight uses, `dockerfiles.context.BuildContext`), as a gzipped tar.

The archive is deterministic, so the same checkout always gives the same bytes and the
same hash (which names the upload and the image's tag, making a second setup a no-op):

    order        paths sorted
    metadata     mtime 0, uid/gid 0, no user or group names
    modes        0o755 for directories and executables, 0o644 for other files
    gzip         mtime 0, no file name in the header
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from deployer.dockerfiles.context import BuildContext

# The checkout setup runs from (the worker's image holds no Dockerfile: setup runs from a clone).
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PackedSource:
    """The context as one archive, and the short hash naming it."""

    data: bytes
    files: int

    @property
    def digest(self) -> str:
        """The first 16 hex digits of the archive's sha256."""
        return hashlib.sha256(self.data).hexdigest()[:16]


def _entry(root: Path, relative: str) -> tuple[tarfile.TarInfo, bytes | None]:
    path = root / relative
    info = tarfile.TarInfo(relative)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if path.is_symlink():
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
        return info, None
    if path.is_dir():
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        return info, None
    data = path.read_bytes()
    info.size = len(data)
    info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
    return info, data


def pack_context(root: Path = REPOSITORY_ROOT) -> PackedSource:
    """The build context of `root/Dockerfile`, as a deterministic .tgz."""
    context = BuildContext(root)
    raw = io.BytesIO()
    count = 0
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for relative in context.files():
            info, data = _entry(root, relative)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
            count += data is not None
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as zipped:
        zipped.write(raw.getvalue())
    return PackedSource(packed.getvalue(), count)
