"""Secret Manager resource names: parsing, the naming rules and the API's wording about them.

    projects/P[/locations/L]                                  a parent
    projects/P[/locations/L]/secrets/S                        a secret (S: 1-255 of [a-zA-Z0-9_-])
    projects/P[/locations/L]/secrets/S/versions/N|latest      a version (N from 1)

Besides malformed names, the errors that name a resource live here too: not
found, in the wrong state, already existing, or written since its etag was read.
"""

from __future__ import annotations

import re

from deployer_sandbox.common.rpc import (
    RpcError,
    aborted,
    already_exists,
    failed_precondition,
    invalid,
    not_found,
)

_PARENT = r"projects/[^/]+(?:/locations/[^/]+)?"
_PARENT_RE = re.compile(rf"^{_PARENT}$")
_SECRET_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")
_SECRET = rf"{_PARENT}/secrets/[a-zA-Z0-9_-]{{1,255}}"
_SECRET_RE = re.compile(rf"^{_SECRET}$")
_VERSION_RE = re.compile(rf"^(?P<secret>{_SECRET})/versions/(?P<version>[1-9][0-9]*|latest)$")


def is_secret_name(name: str) -> bool:
    """Whether `name` names a secret (not one of its versions)."""
    return _SECRET_RE.match(name) is not None


def check_parent(parent: str) -> None:
    """INVALID_ARGUMENT unless `parent` is `projects/P` or `projects/P/locations/L`."""
    if not _PARENT_RE.match(parent):
        raise invalid(
            f"The provided parent [{parent}] does not match the expected format "
            "[projects/*] or [projects/*/locations/*]."
        )


def check_secret_id(secret_id: str) -> None:
    """INVALID_ARGUMENT unless `secret_id` follows the naming rules."""
    if not _SECRET_ID_RE.match(secret_id):
        raise invalid(
            f"The provided Secret ID [{secret_id}] does not match the expected format: "
            "1 to 255 letters, digits, hyphens and underscores."
        )


def check_secret_name(name: str) -> None:
    """INVALID_ARGUMENT unless `name` names a secret."""
    if not is_secret_name(name):
        raise invalid(
            f"The provided Secret ID [{name}] does not match the expected format "
            "[projects/*/secrets/*]"
        )


def parse_version(name: str) -> tuple[str, str]:
    """(secret name, version number or "latest") of a version name, or INVALID_ARGUMENT."""
    match = _VERSION_RE.match(name)
    if match is None:
        raise invalid(
            f"The provided Secret Version ID [{name}] does not match the expected format "
            "[projects/*/secrets/*/versions/*]"
        )
    return match["secret"], match["version"]


def check_numbered_version(name: str) -> None:
    """INVALID_ARGUMENT for a well-formed `latest` alias where a version number is required."""
    if _VERSION_RE.match(name) and name.endswith("/versions/latest"):
        raise invalid(
            f"The provided Secret Version ID [{name}] does not match the expected format "
            "[projects/*/secrets/*/versions/*]: a version number is required."
        )


def check_etag(given: str, current: str) -> None:
    """ABORTED when the request carries an etag that is no longer the resource's."""
    if given and given != current:
        raise aborted(
            f"The etag provided in the request [{given}] does not match the current etag of "
            "the resource."
        )


def secret_exists(name: str) -> RpcError:
    """ALREADY_EXISTS for a secret created twice."""
    return already_exists(f"Secret [{name}] already exists.")


def secret_not_found(name: str) -> RpcError:
    """NOT_FOUND for a secret."""
    return not_found(f"Secret [{name}] not found.")


def no_versions(secret_name: str) -> RpcError:
    """NOT_FOUND for `latest` of a secret that is missing or has no versions."""
    return not_found(f"Secret [{secret_name}] not found or has no versions.")


def version_not_found(name: str) -> RpcError:
    """NOT_FOUND for a numbered version."""
    return not_found(f"Secret Version [{name}] not found.")


def version_in_state(name: str, state: str) -> RpcError:
    """FAILED_PRECONDITION for a version whose state (`DISABLED`, `DESTROYED`) forbids the call."""
    return failed_precondition(f"Secret Version [{name}] is in {state} state.")
