"""Proto-plus helpers the sandbox's Cloud Build and Secret Manager share: copies and the time."""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

M = TypeVar("M")


def now() -> Timestamp:
    """The current time as a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def clone(message: M) -> M:
    """A detached deep copy of a proto-plus message, so a response never aliases stored state."""
    cls: Any = type(message)
    copied: M = cls.deserialize(cls.serialize(message))
    return copied
