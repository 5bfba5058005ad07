"""What setup prints at its end: what to paste into Slack and GitHub.

The URLs are the front's (`Setup.front_url`); until setup deploys the front, a
placeholder stands there, said as such.
"""

from __future__ import annotations

PLACEHOLDER = "https://FRONT_URL"


def paste_lines(front_url: str | None) -> list[str]:
    """The closing instructions."""
    url = (front_url or PLACEHOLDER).rstrip("/")
    lines = []
    if front_url is None:
        lines.append(
            f"The front is not deployed by setup yet: {PLACEHOLDER} stands for its URL "
            "(the function's, once deployed)."
        )
    lines += [
        "Slack: at https://api.slack.com/apps, Create New App, From an app manifest, paste",
        f"  the output of: deployer slack-manifest --url {url}",
        "  then Install to Workspace; give the bot token and signing secret to setup again",
        "  on standard input (SLACK_BOT_TOKEN=..., SLACK_SIGNING_SECRET=...).",
        "GitHub: Settings, Webhooks, Add webhook:",
        f"  Payload URL   {url}/github/webhook",
        "  Content type  application/json",
        "  Secret        the GITHUB_WEBHOOK_SECRET given to setup (secret github-webhook-secret)",
        "  Events        Releases only",
    ]
    return lines
