"""Cloud Build v1 (stub; being written)."""
from __future__ import annotations
from pathlib import Path
import grpc
from deployer.sandbox.faults import Faults
from deployer.sandbox.images import ImageStore
from deployer.sandbox.operations import Operations


class CloudBuild:
    def __init__(self, operations: Operations, images: ImageStore, faults: Faults, workdir: Path) -> None:
        pass

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler("google.devtools.cloudbuild.v1.CloudBuild", {})

    def close(self) -> None:
        pass
