"""Cloud Run Admin v2 (stub; being written)."""
from __future__ import annotations
from pathlib import Path
import grpc
from deployer.sandbox.faults import Faults
from deployer.sandbox.images import ImageStore
from deployer.sandbox.operations import Operations
from deployer.sandbox.secret_manager import SecretManager


class CloudRun:
    def __init__(self, operations: Operations, images: ImageStore, secrets: SecretManager, faults: Faults, workdir: Path) -> None:
        pass

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        return []

    def close(self) -> None:
        pass
