"""The front's settings, read once from the environment (PRODUCT.md names them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

MAX_BODY_BYTES = (
    1024 * 1024
)  # Slack and GitHub bodies are far smaller; anything bigger is refused unread


@dataclass(frozen=True)
class FrontSettings:
    slack_signing_secret: str | None
    slack_bot_token: str | None
    github_webhook_secret: str | None
    slack_api_url: str | None
    dispatch: str  # "inline", or the Cloud Run job's full resource name
    max_body_bytes: int = MAX_BODY_BYTES

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> FrontSettings:
        """Settings from SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN, GITHUB_WEBHOOK_SECRET, SLACK_API_URL, DEPLOYER_DISPATCH."""
        return cls(
            slack_signing_secret=environ.get("SLACK_SIGNING_SECRET") or None,
            slack_bot_token=environ.get("SLACK_BOT_TOKEN") or None,
            github_webhook_secret=environ.get("GITHUB_WEBHOOK_SECRET") or None,
            slack_api_url=environ.get("SLACK_API_URL") or None,
            dispatch=environ.get("DEPLOYER_DISPATCH") or "inline",
        )
