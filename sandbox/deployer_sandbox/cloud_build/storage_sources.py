"""Builds from `Source.storage_source`: an archive in the sandbox's Cloud Storage, unpacked.

StorageSource (cloudbuild.proto): "This object must be a zipped (`.zip`) or gzipped
archive file (`.tar.gz`) containing source to build"; "If the generation is omitted,
the latest generation will be used"; the build's `source_provenance
.resolved_storage_source` is "A copy of the build's source.storage_source, if exists,
with any generations resolved". `gcloud builds submit` uploads a .tgz there.

A missing object fails the build in FETCHSOURCE, in the words of Cloud Build's fetcher
("Failed to fetch gs://B/O ...", quoting the storage library's "storage: object doesn't
exist"). Archives unpack into a content-addressed store, like git trees:

    <root>/trees/storage-<sha256 of the archive>/   the archive's files, never modified
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from deployer_sandbox.cloud_build.sources import SourceError

# (bucket, object, generation or 0) -> the object's bytes and its generation, or None.
ReadObject = Callable[[str, str, int], tuple[bytes, int] | None]


def fetch_archive(
    read: ReadObject | None, bucket: str, name: str, generation: int
) -> tuple[bytes, int]:
    """The archive's bytes and generation; `SourceError` as the fetcher says a miss."""
    found = read(bucket, name, generation) if read is not None else None
    if found is None:
        url = f"gs://{bucket}/{name}" + (f"#{generation}" if generation else "")
        raise SourceError(
            f"Failed to fetch {url}, will no longer retry: storage: object doesn't exist"
        )
    return found


def unpack(trees: Path, data: bytes, label: str) -> Path:
    """The archive's files (tar, gzipped or not, or zip) in a directory of their own."""
    final = trees / f"storage-{hashlib.sha256(data).hexdigest()}"
    if final.is_dir():
        return final
    staging = Path(tempfile.mkdtemp(prefix=".storage-", dir=trees))
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.extractall(staging)
        else:
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    # The data filter refuses absolute paths, links out of the tree, devices.
                    tar.extractall(staging, filter="data")
            except tarfile.TarError as error:
                raise SourceError(f"{label} is not a .zip or .tar.gz archive: {error}") from None
        try:
            staging.rename(final)
        except OSError:
            if not final.is_dir():  # another build unpacked the same archive first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final
