"""Listing secrets and versions: the filters the sandbox understands.

A filter is space-separated terms, ANDed: `name:x`, `name=x`, `labels.k:v` and
`labels.k:*` for secrets; `state:ENABLED` (any state's name) for versions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from google.cloud.secretmanager_v1.types import resources

from deployer_sandbox.common.rpc import invalid

State = resources.SecretVersion.State


def _filter_terms(text: str) -> Iterable[tuple[str, str, str]]:
    """(field, operator, value) for each space-separated `field:value` / `field=value` term."""
    for term in text.split():
        match = re.fullmatch(r"([A-Za-z_.\-0-9]+)([:=])(.*)", term)
        if match is None:
            raise invalid(f"Invalid filter [{text}]: cannot parse [{term}].")
        yield match[1], match[2], match[3].strip('"')


def matches_secret(secret: resources.Secret, text: str) -> bool:
    """The subset of the list filter syntax the sandbox supports: name and labels terms, ANDed."""
    for key, op, value in _filter_terms(text):
        if key == "name":
            short = str(secret.name).rsplit("/", 1)[-1]
            if not (value in short if op == ":" else value == short):
                return False
        elif key.startswith("labels."):
            label = secret.labels.get(key.removeprefix("labels."))
            if label is None or (value not in ("*", label) if op == ":" else value != label):
                return False
        else:
            raise invalid(f"Unsupported filter field [{key}] in the sandbox.")
    return True


def matches_version(version: resources.SecretVersion, text: str) -> bool:
    """Supports `state:ENABLED`-style terms only."""
    for key, _, value in _filter_terms(text):
        if key != "state":
            raise invalid(f"Unsupported filter field [{key}] in the sandbox.")
        if State(version.state).name != value.upper():
            return False
    return True
