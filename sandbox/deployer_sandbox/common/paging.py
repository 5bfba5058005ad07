"""Paging for every list method of the sandbox's Google APIs, as Google's APIs page.

A page token is opaque (AIP-158): the sandbox reads back only the tokens it
issued, and any other string is INVALID_ARGUMENT rather than a silent restart
from the first page. A token either holds an offset into the list, or, for a
list that grows while it is read (log entries), the position of the last item
returned, so that the next page neither repeats nor skips items written in
between. A method may bind its tokens to the query that made them; a token
from another query is then INVALID_ARGUMENT too.

A negative `page_size` is INVALID_ARGUMENT, 0 is the method's default, and a
method with a maximum refuses a larger one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from deployer_sandbox.common.rpc import invalid

T = TypeVar("T")

# The wording of a token the sandbox did not issue; `{token}` is the token given.
INVALID_PAGE_TOKEN = "Invalid page token [{token}]."


@dataclass(frozen=True)
class Query:
    """What a method binds its tokens to: the request's parameters other than paging."""

    parameters: object  # JSON-serializable
    mismatch: str  # the error of a token issued for other parameters

    def fingerprint(self) -> str:
        identity = json.dumps(self.parameters, sort_keys=True)
        return hashlib.sha256(identity.encode()).hexdigest()[:16]


def page(
    items: Sequence[T],
    page_size: int,
    page_token: str,
    *,
    default_size: int | None,
    max_size: int | None = None,
    invalid_token: str = INVALID_PAGE_TOKEN,
    query: Query | None = None,
    position: Callable[[T], str] | None = None,
    descending: bool = False,
) -> tuple[list[T], str]:
    """One page of `items` and the token of the next page ("" after the last).

    `default_size` is the size of a page when `page_size` is 0 (None: every item
    left). With `position` (each item's place in `items` as a string that sorts
    as `items` do: ascending, or descending when `descending`), tokens resume
    after the last item returned instead of at an offset.
    """
    if page_size < 0 or (max_size is not None and page_size > max_size):
        if max_size is None:
            raise invalid("page_size must not be negative.")
        raise invalid(f"page_size must be between 0 and {max_size}; got {page_size}.")
    size = page_size or default_size
    start = 0
    if page_token:
        state = _read(page_token, invalid_token, query)
        offset, after = state.get("offset"), state.get("after")
        if position is None and type(offset) is int and offset >= 0:
            start = offset
        elif position is not None and isinstance(after, str):
            start = next(
                (
                    index
                    for index, item in enumerate(items)
                    if (position(item) < after if descending else position(item) > after)
                ),
                len(items),
            )
        else:
            raise invalid(invalid_token.format(token=page_token))
    end = len(items) if size is None else start + size
    found = list(items[start:end])
    if end >= len(items) or not found:
        return found, ""
    following: dict[str, Any] = (
        {"offset": end} if position is None else {"after": position(found[-1])}
    )
    if query is not None:
        following["query"] = query.fingerprint()
    return found, base64.urlsafe_b64encode(json.dumps(following).encode()).decode()


def _read(token: str, invalid_token: str, query: Query | None) -> dict[str, Any]:
    """What a token the sandbox issued holds; INVALID_ARGUMENT for any other string."""
    refused = invalid(invalid_token.format(token=token))
    try:
        state = json.loads(base64.b64decode(token, altchars=b"-_", validate=True))
    except (binascii.Error, ValueError):
        raise refused from None
    if not isinstance(state, dict) or ("query" in state) != (query is not None):
        raise refused
    if query is not None and state["query"] != query.fingerprint():
        raise invalid(query.mismatch)
    return state
