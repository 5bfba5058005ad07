"""The sandbox GitHub's answers: its JSON error bodies, type checks of request bodies as
GitHub's schema validation words them, and the URLs its documents carry."""

from __future__ import annotations

import json
import zlib
from typing import Any

from deployer_sandbox.github.state import Repository

Response = tuple[int, dict[str, str], bytes]

_JSON = "application/json; charset=utf-8"
DOCS = "https://docs.github.com/rest"


class Answer(Exception):
    """An error answer: GitHub's JSON error body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, **extra}
        if status >= 400:  # the 202 "Merged branch response" is a message alone
            self.body["documentation_url"] = DOCS
            self.body["status"] = str(status)


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": _JSON, **(headers or {})}, json.dumps(body).encode()


def public(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if not key.startswith("_")}


def invalid(what: str) -> Answer:
    return Answer(422, f"Invalid request.\n\n{what}")


def check_types(body: dict[str, Any], types: dict[str, tuple[type, ...]]) -> None:
    for name, allowed in types.items():
        if name not in body or (body[name] is None and type(None) in allowed):
            continue
        value = body[name]
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            kind = " or ".join(_TYPE_NAMES[t] for t in allowed if t is not type(None))
            raise invalid(f"For 'properties/{name}', {json.dumps(value)} is not a {kind}.")


_TYPE_NAMES = {str: "string", bool: "boolean", list: "array", dict: "object", type(None): "null"}


class Urls:
    """The URLs answers carry, from the API's base URL as the caller reached it."""

    def __init__(self, base: str, repository: Repository) -> None:
        self.base = base.rstrip("/")
        self.repository_url = f"{self.base}/repos/{repository.full_name}"
        self._repository = repository

    def deployment(self, deployment_id: int) -> str:
        return f"{self.repository_url}/deployments/{deployment_id}"

    def repository(self) -> dict[str, Any]:
        owner, _, name = self._repository.full_name.partition("/")
        return {
            "id": zlib.crc32(self._repository.full_name.lower().encode()),
            "name": name,
            "full_name": self._repository.full_name,
            "owner": {"login": owner, "type": "Organization"},
            "private": True,
            "default_branch": self._repository.default_branch,
            "url": self.repository_url,
            "deployments_url": f"{self.repository_url}/deployments",
        }
