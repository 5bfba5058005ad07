"""What `deployer check` found: one `ok`, `warn` or `FAIL` per check, by environment."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """A check's verdict; FAIL means a deploy would stop."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked and what was found."""

    status: Status
    subject: str
    message: str


@dataclass(frozen=True)
class EnvironmentReport:
    """One environment's checks, under a title naming its service."""

    environment: str
    title: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class CheckReport:
    """The config's check, then each environment's."""

    config: Check
    environments: tuple[EnvironmentReport, ...] = ()
    deployer: tuple[Check, ...] = ()  # the deployer's own setup (its worker job)

    def all(self) -> list[Check]:
        """Every check, in the order they are shown."""
        return [self.config, *self.deployer, *(c for e in self.environments for c in e.checks)]

    @property
    def failed(self) -> bool:
        """Whether any check failed: a deploy would stop."""
        return any(check.status == Status.FAIL for check in self.all())


def plural(count: int, noun: str) -> str:
    """`1 secret`, `2 secrets`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
