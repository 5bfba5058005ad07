"""Proto-plus helpers every emulated API shares: copies, the time and etags."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

M = TypeVar("M")


def now() -> Timestamp:
    """The current time as a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def clone(message: M) -> M:
    """A detached deep copy of a proto-plus message, so a response never aliases stored state
    and another thread may hold it."""
    cls: Any = type(message)
    copied: M = cls.deserialize(cls.serialize(message))
    return copied


def new_etag() -> str:
    """A new etag, for every write: opaque and quoted, as Google's APIs hand them out."""
    return f'"{uuid.uuid4().hex}"'
