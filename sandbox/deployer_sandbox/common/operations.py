"""`google.longrunning.Operations`: the long-running operations every API here returns.

Cloud Run v2 and Cloud Build v1 both answer mutations with an `Operation` that
their client libraries poll through this one service on the same endpoint.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2
from google.rpc import status_pb2

from deployer_sandbox.common.rpc import RpcError, invalid, not_found, service, unary

CancelHook = Callable[[], None]


def pack(message: Any) -> any_pb2.Any:
    """Pack a proto-plus or protobuf message into `Any` with its real type URL."""
    raw = type(message).pb(message) if hasattr(type(message), "pb") else message
    packed = any_pb2.Any()
    packed.Pack(raw)
    return packed


@dataclass
class _Entry:
    operation: operations_pb2.Operation
    on_cancel: CancelHook | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class Operations:
    """Thread-safe store of operations, and the gRPC service that reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def start(
        self,
        parent: str,
        metadata: Any,
        on_cancel: CancelHook | None = None,
        name: str | None = None,
    ) -> str:
        """Record a new running operation under `parent` and return its name; `name` gives
        the whole name instead, for APIs whose operations live outside their resources
        (Service Usage's `operations/acat.p2-...`)."""
        name = name or f"{parent}/operations/{uuid.uuid4()}"
        operation = operations_pb2.Operation(name=name, done=False, metadata=pack(metadata))
        with self._lock:
            self._entries[name] = _Entry(operation, on_cancel)
        return name

    def set_metadata(self, name: str, metadata: Any) -> None:
        with self._lock:
            self._entries[name].operation.metadata.CopyFrom(pack(metadata))

    def succeed(self, name: str, response: Any, metadata: Any | None = None) -> None:
        """Finish the operation with `response`."""
        self._finish(name, metadata, lambda operation: operation.response.CopyFrom(pack(response)))

    def fail(self, name: str, error: RpcError, metadata: Any | None = None) -> None:
        """Finish the operation with an error status."""
        status = status_pb2.Status(code=error.code.value[0], message=error.message)
        self._finish(name, metadata, lambda operation: operation.error.CopyFrom(status))

    def _finish(
        self,
        name: str,
        metadata: Any | None,
        outcome: Callable[[operations_pb2.Operation], None],
    ) -> None:
        """Set the operation's `outcome` and end it, unless it already ended."""
        with self._lock:
            entry = self._entries[name]
            if entry.operation.done:
                return
            if metadata is not None:
                entry.operation.metadata.CopyFrom(pack(metadata))
            outcome(entry.operation)
            entry.operation.done = True
        entry.finished.set()

    def get(self, name: str) -> operations_pb2.Operation:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                raise not_found(f"Operation {name} not found.")
            snapshot = operations_pb2.Operation()
            snapshot.CopyFrom(entry.operation)
            return snapshot

    def wait(self, name: str, timeout: float | None) -> operations_pb2.Operation:
        """Block until the operation is done or `timeout` passes, then return it."""
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            raise not_found(f"Operation {name} not found.")
        entry.finished.wait(timeout)
        return self.get(name)

    # --- google.longrunning.Operations -------------------------------------------------

    def _get_operation(self, request: operations_pb2.GetOperationRequest) -> Any:
        if not request.name:
            raise invalid("name is required")
        return self.get(request.name)

    def _list_operations(self, request: operations_pb2.ListOperationsRequest) -> Any:
        prefix = request.name.rstrip("/")
        if prefix.endswith("/operations"):
            prefix = prefix[: -len("/operations")]
        with self._lock:
            names = sorted(name for name in self._entries if name.startswith(prefix + "/"))
        return operations_pb2.ListOperationsResponse(operations=[self.get(n) for n in names])

    def _delete_operation(self, request: operations_pb2.DeleteOperationRequest) -> Any:
        with self._lock:
            if self._entries.pop(request.name, None) is None:
                raise not_found(f"Operation {request.name} not found.")
        return empty_pb2.Empty()

    def _cancel_operation(self, request: operations_pb2.CancelOperationRequest) -> Any:
        with self._lock:
            entry = self._entries.get(request.name)
        if entry is None:
            raise not_found(f"Operation {request.name} not found.")
        if entry.on_cancel is not None and not entry.operation.done:
            entry.on_cancel()
        return empty_pb2.Empty()

    def _wait_operation(self, request: operations_pb2.WaitOperationRequest) -> Any:
        timeout = None
        if request.HasField("timeout"):
            timeout = request.timeout.ToTimedelta().total_seconds()
        return self.wait(request.name, timeout)

    def handler(self) -> Any:
        op = operations_pb2
        return service(
            "google.longrunning.Operations",
            {
                "GetOperation": unary(self._get_operation, op.GetOperationRequest, op.Operation),
                "ListOperations": unary(
                    self._list_operations, op.ListOperationsRequest, op.ListOperationsResponse
                ),
                "DeleteOperation": unary(
                    self._delete_operation, op.DeleteOperationRequest, empty_pb2.Empty
                ),
                "CancelOperation": unary(
                    self._cancel_operation, op.CancelOperationRequest, empty_pb2.Empty
                ),
                "WaitOperation": unary(self._wait_operation, op.WaitOperationRequest, op.Operation),
            },
        )
