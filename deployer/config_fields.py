"""The field types every part of `deployer.toml` shares: names as Google and Slack spell
them, durations, and the frozen, closed model every table is (`deployer.config`)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from deployer import run_names

# Names Cloud Run sets itself or refuses in a revision's environment.
RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})
RESERVED_ENV_PREFIXES = ("CLOUD_RUN_", "X_GOOGLE_")

EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# Lower-case ASCII only: `PROD` or a Cyrillic look-alike never names an environment.
EnvironmentName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,29}$")]
# A Cloud Run service id; config also checks the names its candidates get (run_names).
ServiceKey = Annotated[
    str, StringConstraints(pattern=rf"^[a-z][a-z0-9-]{{0,{run_names.SERVICE_ID_MAX - 1}}}$")
]
ProjectId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")]
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]+-[a-z]+[0-9]+$")]
SlackUser = Annotated[str, StringConstraints(pattern=r"^[UW][A-Z0-9]{2,}$")]
SlackUserGroup = Annotated[str, StringConstraints(pattern=r"^S[A-Z0-9]{2,}$")]
SlackChannel = Annotated[str, StringConstraints(pattern=r"^[CGD][A-Z0-9]{2,}$")]
Repository = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")]
Seconds = Annotated[float, Field(gt=0, le=24 * 3600)]

_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def _duration_seconds(value: object) -> object:
    """ "30m", "1h30m", "90s" as seconds; numbers (seconds) pass through unchanged."""
    if not isinstance(value, str):
        return value
    found = _DURATION.match(value.strip())
    if found is None or not any(found.groups()):
        raise ValueError(
            f'{value!r} is not a duration; write seconds (1800) or e.g. "30m", "1h30m"'
        )
    hours, minutes, seconds = (int(found[unit] or 0) for unit in ("h", "m", "s"))
    return hours * 3600 + minutes * 60 + seconds


# Seconds, or a duration written as people say it ("30m", "2h").
Duration = Annotated[Seconds, BeforeValidator(_duration_seconds)]

REPOSITORY_PATH = re.compile(r"^[A-Za-z0-9._ -][A-Za-z0-9._/ -]{0,399}$")
CONNECTED_REPOSITORY = re.compile(
    r"^projects/[^/]+/locations/[^/]+/connections/[^/]+/repositories/[^/]+$"
)
SECRET_REF = re.compile(r"^(?P<secret>[A-Za-z0-9_-]{1,255})(?::(?P<version>latest|[1-9][0-9]*))?$")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
