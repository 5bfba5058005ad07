"""HTTP health probes behind the pipeline's `Health` port.

A candidate is healthy after `consecutive` good answers in a row: the expected
status, the expected JSON, and the version field equal to the commit just
built (so a stale revision answering "healthy" does not pass). `failures` bad
answers in a row, or the timeout, end the check early with the last answer.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from deployer.adapters import synthetic_requests
from deployer.adapters.id_tokens import GoogleIdTokens, IdTokenUnavailable
from deployer.config import HealthCheck
from deployer.pipeline.ports import HealthOutcome, Progress
from deployer.redaction import CLIPPED, redact

IdTokens = Callable[[str], str]
"""audience (the service's URL) -> an ID token for it; raises IdTokenUnavailable."""

_EXCERPT = 300


# Cloud Run's front door: 401 for a token it cannot read, 403 for a caller not let in.
_REFUSED = (401, 403)


def _refused_hint(audience: str) -> str:
    if not audience:
        return (
            " (Cloud Run refused the call: is the service still private? A change of who "
            "may invoke it can take minutes to apply)"
        )
    return (
        f" (Cloud Run refused the ID token for {audience}: the prober's account needs "
        "roles/run.invoker on the service; a fresh grant can take minutes to apply)"
    )


def judge(status: int, body: bytes, check: HealthCheck, commit: str) -> str:
    """Why an answer is not healthy, or "" when it is."""
    if status != check.expect_status:
        return f"HTTP {status}, expected {check.expect_status}"
    if not check.expect_json and not check.version_field:
        return ""
    try:
        answer: Any = json.loads(body)
    except ValueError:
        return "answer is not JSON"
    if not isinstance(answer, dict):
        return "answer is not a JSON object"
    for key, expected in check.expect_json.items():
        if answer.get(key) != expected:
            return f"{key} is {answer.get(key)!r}, expected {expected!r}"
    if check.version_field:
        found: Any = answer
        for part in check.version_field.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if found != commit:
            return f"{check.version_field} is {found!r}, expected {commit[:12]}"
    return ""


class HttpHealth:
    """`Health` by plain HTTP GETs, with an ID token for the audience when one is named."""

    def __init__(self, id_tokens: IdTokens | None = None) -> None:
        self._id_tokens = id_tokens or GoogleIdTokens()
        self._known: tuple[str, ...] = ()

    def redacting(self, known: Sequence[str]) -> HttpHealth:
        # A copy, so a subclass stays itself; the original keeps quoting as before.
        redacting = copy.copy(self)
        redacting._known = (*self._known, *known)
        return redacting

    def check(
        self,
        url: str,
        check: HealthCheck,
        commit: str,
        timeout: float,
        audience: str,
        progress: Progress,
    ) -> HealthOutcome:
        outcome = self._probe(url, check, commit, timeout, audience, self._quoting(progress))
        return replace(
            outcome,
            body=redact(outcome.body, self._known),
            message=redact(outcome.message, self._known),
        )

    def sample(
        self, urls: Sequence[str], count: int, audience: str, timeout: float
    ) -> list[tuple[int | None, float]]:
        headers = {"User-Agent": "deployer-synthetic"}
        if audience:
            try:
                headers["Authorization"] = "Bearer " + self._id_tokens(audience)
            except IdTokenUnavailable:
                return []  # nothing sent: the step waits for real traffic, or fails closed
        return synthetic_requests.send(_get, urls, count, headers, timeout)

    def _quoting(self, progress: Progress) -> Progress:
        return lambda line: progress(redact(line, self._known))

    def _probe(
        self,
        url: str,
        check: HealthCheck,
        commit: str,
        timeout: float,
        audience: str,
        progress: Progress,
    ) -> HealthOutcome:
        deadline = time.monotonic() + timeout
        headers = {"User-Agent": "deployer-health-check"}
        if audience:
            try:
                headers["Authorization"] = "Bearer " + self._id_tokens(audience)
            except IdTokenUnavailable as none:
                # Nothing was probed: the check fails with the reason, and the deploy
                # ends as any failed check ends it (traffic untouched, or rolled back).
                return HealthOutcome(False, 0, None, "", str(none))
        attempts = good = bad = 0
        status: int | None = None
        body = b""
        problem = "no answer yet"
        landed = ""
        while True:
            attempts += 1
            left = deadline - time.monotonic()
            status, body, error, final = _get(
                url, headers, max(0.05, min(check.request_timeout, left))
            )
            # urllib follows redirects (HTTPRedirectHandler) without a word: remember where
            # the answer came from, so that a redirected health path is named as such.
            landed = final if final and final != url else ""
            verdict = error or judge(status or 0, body, check, commit)
            at_door = status in _REFUSED and check.expect_status not in _REFUSED
            if at_door:
                verdict += _refused_hint(audience)
            if not verdict:
                good, bad = good + 1, 0
                if good >= check.consecutive:
                    return HealthOutcome(True, attempts, status, _excerpt(body), "", landed)
            else:
                if verdict != problem:
                    progress(f"{urlsplit(url).path}: {verdict}")
                # Cloud Run's own door refusing is not the revision failing: a fresh grant
                # (or a just-changed policy) can take minutes to reach it, so such answers
                # are tried again until the timeout rather than counted as failures.
                good, bad, problem = 0, bad + (0 if at_door else 1), verdict
                if bad >= check.failures:
                    return HealthOutcome(False, attempts, status, _excerpt(body), problem, landed)
            left = deadline - time.monotonic()
            if left <= 0:
                return HealthOutcome(
                    False, attempts, status, _excerpt(body), f"timed out: {problem}", landed
                )
            time.sleep(min(check.interval, left))


def _get(url: str, headers: dict[str, str], timeout: float) -> tuple[int | None, bytes, str, str]:
    """(status, body, error, the URL that answered): error is "" when an HTTP answer arrived."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read(64 * 1024), "", str(answer.url)
    except urllib.error.HTTPError as answer:
        return answer.code, answer.read(64 * 1024), "", str(answer.url or url)
    except TimeoutError:
        return None, b"", f"no answer within {timeout:.1f} s", ""
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            return None, b"", f"no answer within {timeout:.1f} s", ""
        return None, b"", f"cannot connect: {reason}", ""


def _excerpt(body: bytes) -> str:
    """The answer's start, quoted in a failure: redacted before it is cut, so that no
    credential is cut to a part the patterns no longer recognise."""
    text = redact(body.decode("utf-8", "replace").strip())
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + CLIPPED
