"""What every step reads: the project, the config, the inputs, and Google's clients.

Clients are built on first use (`google_clients.google_client`, so the sandbox's
address applies) and closed by `close()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from deployer.adapters.google_clients import google_client
from deployer.config import Config
from deployer.setup.names import FRONT_FUNCTION
from deployer.setup.wanted import Wanted, wanted

C = TypeVar("C")


@dataclass
class Setup:
    project: str
    region: str
    config: Config
    config_text: str  # stored as the secret deployer-config
    secret_values: dict[str, str]  # secret id -> value, from stdin or --secrets-file
    image: str | None  # the deployer's image: `--image`, else the `image` step's build
    dry_run: bool = False
    front_url: str | None = None  # known once the front is deployed (`setup/front.py`)
    front: str = FRONT_FUNCTION  # `--front`: a function, or a Cloud Run service (FRONT_RUN)
    image_given: bool = False  # `--image`: setup builds no image of its own
    # secret id -> the version number the `secrets` step stored or found, which the front
    # and the worker job are pinned to (a secret in env is read once, at start: pinned,
    # a change reaches them as a change setup makes, not at some instance's next start).
    stored_versions: dict[str, str] = field(default_factory=dict)
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
            self._wanted = wanted(
                self.config, self.project, self.region, self.front, self.image_given
            )
        return self._wanted

    def version_of(self, secret: str) -> str:
        """The version to pin `secret` to: what the `secrets` step stored (or `latest`, in a
        dry run that would store a new one)."""
        return self.stored_versions.get(secret, "latest")

    def close(self) -> None:
        for client in self._clients.values():
            client.transport.close()
        self._clients.clear()
