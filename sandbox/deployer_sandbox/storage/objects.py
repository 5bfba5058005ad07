"""Cloud Storage's state: buckets and the current generation of each object. Thread-safe.

    bucket   name (global, as Google's are), project, location, created
    object   bucket, name, generation (a microsecond clock, as GCS numbers them), bytes,
             content type, md5 and crc32c (what the JSON API reports, base64)

Only the live generation of an object is kept (buckets here have no versioning). A
precondition `ifGenerationMatch` is checked as the JSON API checks it: 0 means "only if
no live object exists" (cloud.google.com/storage/docs/request-preconditions).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass

import google_crc32c

DEFAULT_LOCATION = "US"


class StorageError(Exception):
    """An answer that is not a success: its HTTP status, JSON API `reason` and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass(frozen=True)
class Bucket:
    name: str
    project: str
    location: str
    created: float


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    name: str
    generation: int
    data: bytes
    content_type: str
    created: float

    @property
    def md5(self) -> str:
        """`md5Hash`: the base64 of the MD5 digest."""
        return base64.b64encode(hashlib.md5(self.data).digest()).decode()

    @property
    def crc32c(self) -> str:
        """`crc32c`: base64 of the big-endian CRC32C ("encoded using base64 in big-endian
        byte order", the JSON API's Objects resource)."""
        checksum = google_crc32c.Checksum(self.data)  # type: ignore[no-untyped-call]
        return base64.b64encode(checksum.digest()).decode()  # type: ignore[no-untyped-call]


def bucket_not_found() -> StorageError:
    return StorageError(404, "notFound", "The specified bucket does not exist.")


def object_not_found(bucket: str, name: str) -> StorageError:
    return StorageError(404, "notFound", f"No such object: {bucket}/{name}")


class ObjectStore:
    """Every bucket and object of the sandbox's Cloud Storage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}
        self._objects: dict[tuple[str, str], StoredObject] = {}
        self._clock = 0

    def create_bucket(self, name: str, project: str, location: str = "") -> Bucket:
        with self._lock:
            found = self._buckets.get(name)
            if found is not None:
                # Bucket names are one global namespace; the JSON API's two wordings of 409.
                if found.project == project:
                    raise StorageError(
                        409,
                        "conflict",
                        "Your previous request to create the named bucket succeeded and you "
                        "already own it.",
                    )
                raise StorageError(
                    409,
                    "conflict",
                    "The requested bucket name is not available. The bucket namespace is "
                    "shared by all users of the system. Please select a different name and "
                    "try again.",
                )
            bucket = Bucket(name, project, (location or DEFAULT_LOCATION).upper(), time.time())
            self._buckets[name] = bucket
            return bucket

    def bucket(self, name: str) -> Bucket:
        with self._lock:
            found = self._buckets.get(name)
        if found is None:
            raise bucket_not_found()
        return found

    def put(
        self,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        if_generation_match: int | None = None,
    ) -> StoredObject:
        """Store a new live generation of `bucket/name` (the bucket must exist)."""
        with self._lock:
            if bucket not in self._buckets:
                raise bucket_not_found()
            current = self._objects.get((bucket, name))
            if if_generation_match is not None and if_generation_match != (
                current.generation if current else 0
            ):
                raise StorageError(
                    412,
                    "conditionNotMet",
                    "At least one of the pre-conditions you specified did not hold.",
                )
            stored = StoredObject(bucket, name, self._generation(), data, content_type, time.time())
            self._objects[(bucket, name)] = stored
            return stored

    def get(self, bucket: str, name: str) -> StoredObject:
        with self._lock:
            if bucket not in self._buckets:
                raise bucket_not_found()
            found = self._objects.get((bucket, name))
        if found is None:
            raise object_not_found(bucket, name)
        return found

    def read(self, bucket: str, name: str, generation: int = 0) -> tuple[bytes, int] | None:
        """The bytes and generation of `gs://bucket/name` (at `generation` when not 0), or None."""
        with self._lock:
            found = self._objects.get((bucket, name))
        if found is None or (generation and found.generation != generation):
            return None
        return found.data, found.generation

    def _generation(self) -> int:
        # Microseconds since the epoch, strictly increasing, as GCS's generations look.
        self._clock = max(self._clock + 1, int(time.time() * 1_000_000))
        return self._clock
