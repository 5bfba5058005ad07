"""What every process the sandbox runs (revisions, job tasks, functions) finds in its
environment from the platform, over its container's own:

    GCE_METADATA_HOST, GCE_METADATA_IP   the metadata server (google-auth's credentials)
    DEPLOYER_GCP_EMULATOR_HOST           the sandbox's gRPC address (every Google API)
    SLACK_API_URL                        the Slack Web API sink
    DEPLOYER_GITHUB_API_URL              GitHub's REST API (deployments)
    STORAGE_EMULATOR_HOST                Cloud Storage's JSON API (google-cloud-storage's own
                                         variable)
    FIRESTORE_EMULATOR_HOST              the Firestore emulator, when the sandbox's own
                                         process has it set (read at each start)

On Google, a process finds googleapis.com, slack.com and api.github.com by DNS; here these
variables are that DNS, so what setup or a deploy writes into a service or a job never
holds a sandbox address. The ports are bound after the servers are made: `bind` fills
them in, and the mapping is read live at each start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

# Read from the sandbox's own environment when a process starts: the emulator may be
# started after the sandbox (a test's fixture).
_PASSED_ON = ("FIRESTORE_EMULATOR_HOST",)


class PlatformEnv(Mapping[str, str]):
    """The platform's variables, fixed ones and those passed on from this process."""

    def __init__(self, fixed: Mapping[str, str]) -> None:
        self._fixed = dict(fixed)

    def bind(
        self, grpc_address: str, slack_api_url: str, github_api_url: str, storage_url: str
    ) -> None:
        """The sandbox's addresses, once its ports are bound."""
        self._fixed.update(
            DEPLOYER_GCP_EMULATOR_HOST=grpc_address,
            SLACK_API_URL=slack_api_url,
            DEPLOYER_GITHUB_API_URL=github_api_url,
            STORAGE_EMULATOR_HOST=storage_url,
        )

    def _current(self) -> dict[str, str]:
        passed = {name: os.environ[name] for name in _PASSED_ON if os.environ.get(name)}
        return {**self._fixed, **passed}

    def __getitem__(self, name: str) -> str:
        return self._current()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())
