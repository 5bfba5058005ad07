"""Slack Web API sink and control endpoint (stub; being written)."""
from __future__ import annotations
from deployer.sandbox.faults import Faults


class SandboxHttp:
    def __init__(self, faults: Faults, host: str = "127.0.0.1", port: int = 0) -> None:
        self.url = "http://127.0.0.1:0"

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass
