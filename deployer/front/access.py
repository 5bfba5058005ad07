"""Who may do what, per environment, from the config's allow-lists.

Identity is always an ID (Slack user, channel and user-group IDs; GitHub
`owner/name`), never a display name, which anyone can change. An environment
with empty allow-lists accepts nobody: access is granted, never assumed.
"""

from __future__ import annotations

from collections.abc import Callable

from deployer.config import Config

UserGroupMembers = Callable[[str], set[str]]
"""user-group ID -> the user IDs in it (Slack `usergroups.users.list`)."""


def slack_denial(
    config: Config, environment: str, user: str, channel: str, members: UserGroupMembers
) -> str | None:
    """Why `user` in `channel` may not change `environment`, or None when they may."""
    allow = config.environment(environment).allow
    if not (allow.slack_users or allow.slack_usergroups or allow.slack_channels):
        return f"Nobody may deploy `{environment}` from Slack yet: its allow-list is empty."
    if allow.slack_channels and channel not in allow.slack_channels:
        places = ", ".join(f"<#{c}>" for c in allow.slack_channels)
        return f"`{environment}` is deployed from {places}, not from this channel."
    if not (allow.slack_users or allow.slack_usergroups):
        return None
    if user in allow.slack_users:
        return None
    for group in allow.slack_usergroups:
        if user in members(group):
            return None
    return f"You are not on the list of people who may deploy `{environment}`."


def github_denial(config: Config, environment: str, repository: str) -> str | None:
    """Why releases of `repository` may not deploy `environment`, or None when they may."""
    releases = config.releases
    if releases is None or repository not in releases.repositories:
        return f"releases of {repository} are not configured to deploy"
    allowed = config.environment(environment).allow.github_repositories
    if allowed and repository not in allowed:
        return f"{repository} may not deploy {environment}"
    return None


def slack_admin_denial(
    config: Config, environment: str, user: str, members: UserGroupMembers
) -> str | None:
    """Why `user` may not force `environment`'s locks open, or None when they may."""
    admins = config.environment(environment).allow.admins
    if user in admins:
        return None
    for group in admins:
        if group.startswith("S") and user in members(group):
            return None
    if not admins:
        return f"Nobody may force `{environment}` open from Slack: it names no admins."
    return f"Only `{environment}`'s admins may force its locks open."
