"""Which projects exist in the sandbox, and their numbers.

The sandbox has no CreateProject: every well-formed project ID names a project
the caller owns. A project comes into being, with a number, the first time any
of Service Usage, IAM or Resource Manager names it by ID; from then on it can
be named by its number too. A malformed ID, or a number no project was given,
names nothing (Google answers PERMISSION_DENIED for those: it does not tell a
caller whether a project it may not see exists).

    project ID   6-30 of [a-z0-9-], a letter first, no hyphen last
                 (https://cloud.google.com/resource-manager/docs/creating-managing-projects,
                 "Project ID requirements")
    number       12 digits, derived from the ID so that it is stable across runs
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from deployer_sandbox.common.protos import now

PROJECT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
_NUMBER = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class Project:
    project_id: str
    number: str
    create_time: Timestamp


def number_of(project_id: str) -> str:
    """The 12-digit number the sandbox gives `project_id`, the same on every run."""
    digest = int(hashlib.sha256(project_id.encode()).hexdigest(), 16)
    return str(100_000_000_000 + digest % 900_000_000_000)


class Projects:
    """Thread-safe registry of the projects named so far."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Project] = {}
        self._by_number: dict[str, Project] = {}

    def find(self, reference: str) -> Project | None:
        """The project a project ID or number names (an ID brings it into being), or None."""
        with self._lock:
            if _NUMBER.fullmatch(reference):
                return self._by_number.get(reference)
            if not PROJECT_ID.fullmatch(reference):
                return None
            project = self._by_id.get(reference)
            if project is None:
                project = Project(reference, number_of(reference), now())
                self._by_id[reference] = project
                self._by_number[project.number] = project
            return project

    def known(self) -> list[Project]:
        """Every project named so far, by ID."""
        with self._lock:
            return [self._by_id[key] for key in sorted(self._by_id)]
