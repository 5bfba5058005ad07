"""Cloud Run's long-running operations: read one, or wait for it to end.

read   GetOperation; None when the operation cannot be read (expired, not served)
wait   WaitOperation (REST `operations.wait`): Cloud Run answers the moment the
       operation ends, or after the timeout asked for; no polling delay, no
       polling quota. A server that does not serve it, or answers at once without
       waiting, is not asked again: the caller polls with backoff instead.
"""

from __future__ import annotations

import time

from google.api_core import exceptions
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import duration_pb2

CALL_TIMEOUT = 30.0
WAIT_SLICE = 10.0  # seconds one WaitOperation may block before the caller looks again


class CloudRunOperations:
    """The operations of one `ServicesClient`."""

    def __init__(self, services: run_v2.ServicesClient) -> None:
        self._services = services
        self.can_wait = True  # until Cloud Run shows it does not serve WaitOperation

    def read(self, name: str, timeout: float) -> operations_pb2.Operation | None:
        """The operation, or None when it cannot be read (expired, or not served)."""
        if not name:
            return None
        try:
            found: operations_pb2.Operation = self._services.get_operation(
                operations_pb2.GetOperationRequest(name=name),
                timeout=max(0.5, min(timeout, CALL_TIMEOUT)),
            )
        except (exceptions.NotFound, exceptions.MethodNotImplemented):
            return None
        return found

    def wait(self, name: str, left: float) -> None:
        """Block until the operation `name` ends, or at most `WAIT_SLICE` (or `left`) seconds."""
        wait = max(0.1, min(left, WAIT_SLICE))
        started = time.monotonic()
        try:
            found = self._services.wait_operation(
                operations_pb2.WaitOperationRequest(
                    name=name,
                    timeout=duration_pb2.Duration(seconds=int(wait), nanos=int(wait % 1 * 1e9)),
                ),
                timeout=wait + CALL_TIMEOUT,
            )
        except exceptions.MethodNotImplemented:
            self.can_wait = False  # poll instead
            return
        except (exceptions.DeadlineExceeded, exceptions.NotFound, exceptions.ServiceUnavailable):
            return  # the caller reads the service again, then waits again
        # The generated transport declares no deserializer for WaitOperation
        # (run_v2/services/services/transports/grpc.py: `response_deserializer=None`):
        # the answer arrives as the Operation's bytes.
        done = (
            found.done
            if isinstance(found, operations_pb2.Operation)
            else operations_pb2.Operation.FromString(found).done
        )
        if not done and time.monotonic() - started < wait / 2:
            # A server that answers at once without waiting: asking it in a loop would
            # hammer it.
            self.can_wait = False
