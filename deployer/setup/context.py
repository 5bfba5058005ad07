"""What every step reads: the project, the config, the inputs, and Google's clients.

Clients are built on first use (`google_clients.google_client`, so the sandbox's
address applies) and closed by `close()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from deployer.adapters.google_clients import google_client
from deployer.config import Config
from deployer.setup.wanted import Wanted, wanted

C = TypeVar("C")


@dataclass
class Setup:
    project: str
    region: str
    config: Config
    config_text: str  # stored as the secret deployer-config
    secret_values: dict[str, str]  # secret id -> value, from stdin or --secrets-file
    image: str | None  # the deployer's image for the worker job (`--image`)
    dry_run: bool = False
    front_url: str | None = None  # known once the front is deployed (`setup/front.py`)
    _clients: dict[type[Any], Any] = field(default_factory=dict, repr=False)
    _wanted: Wanted | None = field(default=None, repr=False)

    def client(self, kind: type[C]) -> C:
        """One client of `kind` for the whole run."""
        if kind not in self._clients:
            self._clients[kind] = google_client(kind)
        found: C = self._clients[kind]
        return found

    @property
    def wanted(self) -> Wanted:
        """The bindings the config asks for in this project."""
        if self._wanted is None:
            self._wanted = wanted(self.config, self.project, self.region)
        return self._wanted

    def close(self) -> None:
        for client in self._clients.values():
            client.transport.close()
        self._clients.clear()
