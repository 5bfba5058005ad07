"""Secret Manager v1 (stub; being written)."""
from __future__ import annotations
from typing import Any
import grpc


class SecretManager:
    def __init__(self) -> None:
        pass

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler("google.cloud.secretmanager.v1.SecretManagerService", {})

    def access(self, name: str) -> tuple[str, bytes]:
        raise NotImplementedError
