"""Slack's Web API rate limits, kept as token buckets: what the sandbox's Slack sink enforces.

Slack evaluates limits "per API method per workspace/team per app"; the sandbox
has one workspace and one app, so each method has one bucket, except
`chat.postMessage`, which also has one per channel. A bucket holds `burst`
calls and refills at the published rate; a call finding one of its buckets
empty is answered 429 with `Retry-After` (whole seconds, at least 1) and is
not performed.

Where Slack publishes a floor ("20+ per minute", "hundreds", "several hundred"),
the floor is enforced: a client that keeps to these limits keeps to Slack's.
The one number Slack leaves out, how long a burst `chat.postMessage` allows in
a channel, is a choice (3, see POST_PER_CHANNEL).

`scale` speeds time up for tests: refill rates are multiplied by it (bursts
stay as they are), so at `scale=20` a channel takes about 20 posts a second.
`scale <= 0` turns every limit off. `Retry-After` stays whole seconds, as
Slack sends it: in scaled mode a client may wait longer than it needs to.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RATE_LIMITS_DOC = "https://docs.slack.dev/apis/web-api/rate-limits"
_WHOLE = 1 - 1e-9  # a call's token, give or take float rounding of the refill


@dataclass(frozen=True)
class Limit:
    """One bucket's rule: `per_minute` calls a minute, `burst` of them at once."""

    tier: str
    per_minute: float
    burst: int
    per: str = "workspace"  # or "channel": one bucket per channel

    def to_json(self, scale: float) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "per": self.per,
            "per_minute": self.per_minute,
            "burst": self.burst,
            "scaled_per_minute": self.per_minute * scale if scale > 0 else None,
        }


# Slack's tiers (RATE_LIMITS_DOC, "Overview"): "Tier 1: 1+ per minute", "Tier 2:
# 20+ per minute", "Tier 3: 50+ per minute", "Tier 4: 100+ per minute", and
# "Rate limit windows are per minute": a whole minute's calls may come at once.
TIER_1 = Limit("Tier 1", 1, 1)
TIER_2 = Limit("Tier 2", 20, 20)
TIER_3 = Limit("Tier 3", 50, 50)
TIER_4 = Limit("Tier 4", 100, 100)
TIERS = (TIER_1, TIER_2, TIER_3, TIER_4)
# auth.test and chat.getPermalink: "This method allows hundreds of requests per
# minute." (their method pages, "Rate limiting"); hundreds is at least 200.
HUNDREDS = Limit("special", 200, 200)
# chat.postMessage, its method page: "It will generally allow an app to post 1
# message per second to a specific channel. There are limits governing your
# app's relationship with the entire workspace above that, limiting posting to
# several hundred messages per minute. Generous burst behavior is also granted."
# RATE_LIMITS_DOC: "Posting messages: 1 per second. Short bursts >1 allowed."
# The burst is not quantified anywhere: 3 (a parent and two quick replies).
POST_PER_CHANNEL = Limit("special", 60, 3, per="channel")
POST_PER_WORKSPACE = Limit("special", 300, 300)

# Each method the sink serves, with the rate limit its Slack reference page gives
# under "Rate limits" / "Rate limiting" (https://api.slack.com/methods/<method>,
# moving to https://docs.slack.dev/reference/methods/<method>); Slack's own
# java-slack-sdk (com.slack.api.methods.MethodsRateLimits) assigns the same:
#   auth.test              special: "allows hundreds of requests per minute"
#                          https://docs.slack.dev/reference/methods/auth.test
#   chat.postMessage       special: 1 a second per channel, several hundred a minute
#                          https://docs.slack.dev/reference/methods/chat.postMessage
#   chat.update            Tier 3   https://api.slack.com/methods/chat.update
#   chat.postEphemeral     Tier 4   https://api.slack.com/methods/chat.postEphemeral
#   chat.delete            Tier 3   https://api.slack.com/methods/chat.delete
#   users.info             Tier 4   https://api.slack.com/methods/users.info
#   conversations.info     Tier 3   https://api.slack.com/methods/conversations.info
#   conversations.history  Tier 3   https://docs.slack.dev/reference/methods/conversations.history
#                          ("Tier 3: 50+ per minute"). Since 2025-05-29 apps that are
#                          not Marketplace-approved and distributed to other workspaces
#                          get Tier 1 and 15 messages a page, but "Internal customer-built
#                          applications are not impacted by these changes and continue to
#                          have a rate limit of 1,000 messages per request at 50+ requests
#                          per minute" (https://docs.slack.dev/changelog/2025/05/29/
#                          rate-limit-changes-for-non-marketplace-apps; restated in
#                          .../2025/06/03/rate-limits-clarity). The deployer is an
#                          internal app: Tier 3.
#   usergroups.users.list  Tier 2   https://api.slack.com/methods/usergroups.users.list
#   chat.getPermalink      special: "allows hundreds of requests per minute"
#                          https://docs.slack.dev/reference/methods/chat.getPermalink
#   files.getUploadURLExternal    Tier 4   https://api.slack.com/methods/files.getUploadURLExternal
#   files.completeUploadExternal  Tier 4   https://api.slack.com/methods/files.completeUploadExternal
METHOD_LIMITS: dict[str, tuple[Limit, ...]] = {
    "auth.test": (HUNDREDS,),
    "chat.postMessage": (POST_PER_CHANNEL, POST_PER_WORKSPACE),
    "chat.update": (TIER_3,),
    "chat.postEphemeral": (TIER_4,),
    "chat.delete": (TIER_3,),
    "users.info": (TIER_4,),
    "conversations.info": (TIER_3,),
    "conversations.history": (TIER_3,),
    "usergroups.users.list": (TIER_2,),
    "chat.getPermalink": (HUNDREDS,),
    "files.getUploadURLExternal": (TIER_4,),
    "files.completeUploadExternal": (TIER_4,),
}


class _Bucket:
    def __init__(self, limit: Limit, scale: float, now: float) -> None:
        self.capacity = float(limit.burst)
        self.per_second = limit.per_minute / 60 * scale
        self.tokens = self.capacity
        self.at = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now

    def wait(self) -> float:
        """Seconds until one whole call is available again (refilled)."""
        return max(0.0, 1 - self.tokens) / self.per_second


class SlackRateLimits:
    """Thread-safe token buckets for the Web API methods in `METHOD_LIMITS`."""

    def __init__(
        self,
        scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        limits: dict[str, tuple[Limit, ...]] | None = None,
    ) -> None:
        if not math.isfinite(scale):
            raise ValueError(f"the Slack rate scale must be a finite number, got {scale!r}")
        self.scale = float(scale)
        self._clock = clock
        self._limits = METHOD_LIMITS if limits is None else limits
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, Limit, str], _Bucket] = {}

    @property
    def enforced(self) -> bool:
        return self.scale > 0

    def take(self, method: str, channel: str | None = None) -> int | None:
        """Spend one call of `method` (in `channel`): None when allowed, else Retry-After seconds.

        A refused call spends nothing, in none of its buckets.
        """
        limits = self._limits.get(method, ())
        if not self.enforced or not limits:
            return None
        with self._lock:
            now = self._clock()
            buckets = [self._bucket(method, limit, channel, now) for limit in limits]
            for bucket in buckets:
                bucket.refill(now)
            waits = [bucket.wait() for bucket in buckets if bucket.tokens < _WHOLE]
            if waits:
                return max(1, math.ceil(max(waits) - 1e-9))
            for bucket in buckets:
                bucket.tokens -= 1
            return None

    def _bucket(self, method: str, limit: Limit, channel: str | None, now: float) -> _Bucket:
        key = (method, limit, (channel or "") if limit.per == "channel" else "")
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(limit, self.scale, now)
        return bucket

    def table(self) -> dict[str, Any]:
        """The limits in force, for `GET /_sandbox/rate_limits`."""
        return {
            "scale": self.scale,
            "enforced": self.enforced,
            "source": RATE_LIMITS_DOC,
            "tiers": {tier.tier: tier.to_json(self.scale) for tier in TIERS},
            "methods": {
                method: [limit.to_json(self.scale) for limit in limits]
                for method, limits in self._limits.items()
            },
        }
