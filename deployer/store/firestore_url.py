"""Where the Firestore store lives, as `DEPLOYER_STORE` names it:

    firestore                           project from GOOGLE_CLOUD_PROJECT, else ADC's
    firestore://PROJECT                 that project
    firestore://PROJECT/PREFIX          under deployers/PREFIX (deployers or tests sharing a project)
    firestore:///PREFIX                 the environment's project, under deployers/PREFIX
    ...?database=NAME                   a named database instead of "(default)"

With `FIRESTORE_EMULATOR_HOST` set, the client talks to the emulator instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from deployer.errors import RefusedError

_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_PROJECT = re.compile(r"^[a-z][a-z0-9.:-]{0,99}$")
_DATABASE = re.compile(r"^[a-z0-9()-]{1,63}$")


@dataclass(frozen=True)
class FirestoreLocation:
    """Where the store lives: project (None: from the environment), database and prefix."""

    project: str | None = None
    database: str | None = None
    prefix: str = ""


def parse_firestore_url(url: str) -> FirestoreLocation:
    """`firestore`, `firestore://PROJECT[/PREFIX][?database=NAME]` or `firestore:///PREFIX`."""
    if url == "firestore":
        return FirestoreLocation()
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    prefix = parts.path.removeprefix("/")
    database = query.pop("database", [None])[-1]
    problem = ""
    if parts.scheme != "firestore" or parts.fragment or query:
        problem = "it is not firestore://PROJECT/PREFIX?database=NAME"
    elif parts.netloc and not _PROJECT.match(parts.netloc):
        problem = f"{parts.netloc!r} is not a project id"
    elif prefix and not _PREFIX.match(prefix):
        problem = f"the prefix {prefix!r} must be one segment of letters, digits, '-' and '_'"
    elif database is not None and not _DATABASE.match(database):
        problem = f"{database!r} is not a database id"
    if problem:
        raise RefusedError(
            f"DEPLOYER_STORE={url!r}: {problem}. Without a store there are no locks, "
            "so nothing is deployed."
        )
    return FirestoreLocation(parts.netloc or None, database or None, prefix)
