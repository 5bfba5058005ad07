"""Glue between plain Python handlers and a gRPC server.

Handlers take the request message and return the response message. They signal
API errors by raising `RpcError` with the status and message the real API
would give; anything else becomes INTERNAL with a short message, so a client
never sees a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

log = logging.getLogger(__name__)

Handler = Callable[[Any], Any]


class RpcError(Exception):
    """An API error answered to the client as a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.NOT_FOUND, message)


def invalid(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def already_exists(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.ALREADY_EXISTS, message)


def failed_precondition(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.FAILED_PRECONDITION, message)


def aborted(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.ABORTED, message)


def permission_denied(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.PERMISSION_DENIED, message)


def unimplemented(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.UNIMPLEMENTED, message)


def etag_mismatch(name: str) -> RpcError:
    """ABORTED, as Google APIs answer a write carrying a stale etag (AIP-154)."""
    return aborted(
        f"The etag provided does not match the current etag of '{name}': the resource "
        "changed since it was read. Read it again and retry with its etag."
    )


def _codec(message_type: Any) -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    """(deserialize, serialize) for a proto-plus class or a protobuf class."""
    if hasattr(message_type, "deserialize"):  # proto-plus
        return message_type.deserialize, message_type.serialize
    return message_type.FromString, lambda message: message.SerializeToString()


def unary(handler: Handler, request_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
    """A unary-unary method handler that maps `RpcError` to a gRPC status."""
    deserialize, _ = _codec(request_type)
    _, serialize = _codec(response_type)

    def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return handler(request)
        except RpcError as error:
            context.abort(error.code, error.message)
        except Exception:
            log.exception("sandbox handler %s failed", getattr(handler, "__qualname__", handler))
            context.abort(grpc.StatusCode.INTERNAL, "Internal error encountered.")

    return grpc.unary_unary_rpc_method_handler(
        behaviour, request_deserializer=deserialize, response_serializer=serialize
    )


def service(name: str, methods: dict[str, grpc.RpcMethodHandler]) -> grpc.GenericRpcHandler:
    """A generic handler serving `methods` under the fully qualified service `name`."""
    return grpc.method_handlers_generic_handler(name, methods)
