"""What setup prints at its end: what to paste into Slack and GitHub.

The URLs are the front's (`Setup.front_url`, as Google answered it); in a dry run,
before the front exists, a placeholder stands there, said as such.
"""

from __future__ import annotations

PLACEHOLDER = "https://FRONT_URL"


def paste_lines(front_url: str | None, slack_stored: bool = False) -> list[str]:
    """The closing instructions (`slack_stored`: the app's token and signing secret are
    in Secret Manager already, so the app exists: only a changed URL is worth pasting)."""
    url = (front_url or PLACEHOLDER).rstrip("/")
    lines = []
    if front_url is None:
        lines.append(
            f"The front is not deployed yet: {PLACEHOLDER} stands for its URL "
            "(setup prints it once it deploys the front)."
        )
    if slack_stored:
        lines += [
            f"Slack: if the app's request URLs are not {url}/slack/events, paste over its",
            f"  App Manifest the output of: deployer slack-manifest --url {url}",
        ]
    else:
        lines += [
            "Slack: at https://api.slack.com/apps, Create New App, From an app manifest, paste",
            f"  the output of: deployer slack-manifest --url {url}",
            "  then Install to Workspace; give the bot token and signing secret to setup again",
            "  (SLACK_BOT_TOKEN=..., SLACK_SIGNING_SECRET=... on standard input or in the file).",
        ]
    lines += [
        "GitHub: Settings, Webhooks, Add webhook:",
        f"  Payload URL   {url}/github/webhook",
        "  Content type  application/json",
        "  Secret        the GITHUB_WEBHOOK_SECRET given to setup (secret github-webhook-secret)",
        "  Events        Releases only",
    ]
    return lines
