"""Who may do what, per environment, from the config's allow-lists.

The user groups the lists name are read from Slack and trusted for a minute.
Identity is always an ID (Slack user, channel and user-group IDs; GitHub
`owner/name`), never a display name, which anyone can change. An environment
with empty allow-lists accepts nobody: access is granted, never assumed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from deployer.config import Config
from deployer.front.ports import ChatError

log = logging.getLogger(__name__)

MEMBERS_TTL = 60.0  # seconds a user group's members are trusted

UserGroupMembers = Callable[[str], set[str]]
"""user-group ID -> the user IDs in it (Slack `usergroups.users.list`); raises
GroupUnreadable when Slack will not say."""

# Why Slack will not list a group's members, and what to do about it
# (api.slack.com/methods/usergroups.users.list, "Errors").
_UNREADABLE = {
    "plan_upgrade_required": "user groups are not available on this workspace's plan",
    "paid_teams_only": "user groups are not available on this workspace's plan",
    "missing_scope": "the app lacks the `usergroups:read` scope",
    "not_allowed_token_type": "the bot token may not read user groups",
    "team_access_not_granted": "the app is not installed in the group's workspace",
    "no_such_subteam": "the user group does not exist (check its ID in the config)",
}


class GroupUnreadable(Exception):
    """Slack did not list a user group's members (`error`: its code; "" when it did not answer)."""

    def __init__(self, group: str, error: str) -> None:
        super().__init__(f"{group}: {error or 'no answer'}")
        self.group = group
        self.error = error

    def advice(self) -> str:
        """What a person is told: why the group cannot be read, and the way around it."""
        why = _UNREADABLE.get(self.error)
        if why is None:
            return (
                f"Slack did not say who is in user group `{self.group}` just now; "
                "try again in a moment."
            )
        return (
            f"The deployer cannot read user group `{self.group}`: {why}. "
            "List the people in the environment's `allow.slack_users` instead."
        )


class GroupMembers:
    """Slack user-group members (`usergroups.users.list`), cached briefly.

    A cache miss costs one call inside the request, bounded by the chat's short timeout
    and never retried; an error is never cached (the next request asks again).
    """

    def __init__(
        self, list_users: Callable[[str, str], Iterable[str]], ttl: float = MEMBERS_TTL
    ) -> None:
        self._list_users = list_users
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, set[str]]] = {}
        self._lock = threading.Lock()

    def __call__(self, group: str, team_id: str = "") -> set[str]:
        """The members of `group` (in workspace `team_id`); GroupUnreadable when Slack does
        not say (nothing is granted then, and the person learns why)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get((team_id, group))
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            members = set(self._list_users(group, team_id))
        except ChatError as error:
            log.warning("usergroups.users.list %s failed: %s", group, error)
            raise GroupUnreadable(group, error.error) from error
        with self._lock:
            self._cache[(team_id, group)] = (now, members)
        return members


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
    unreadable: GroupUnreadable | None = None
    for group in allow.slack_usergroups:
        try:
            if user in members(group):
                return None
        except GroupUnreadable as error:
            unreadable = unreadable or error
    if unreadable is not None:
        return unreadable.advice()
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


FORCE_UNLOCK = ("force `{env}` open", "force its locks open")
BREAK_GLASS = ("break glass in `{env}`", "deploy with `--break-glass`")


def slack_admin_denial(
    config: Config,
    environment: str,
    user: str,
    members: UserGroupMembers,
    doing: tuple[str, str] = FORCE_UNLOCK,
) -> str | None:
    """Why `user` may not do what only `environment`'s admins may (`doing`: FORCE_UNLOCK,
    BREAK_GLASS), or None when they may."""
    admins = config.environment(environment).allow.admins
    if user in admins:
        return None
    for group in admins:
        try:
            if group.startswith("S") and user in members(group):
                return None
        except GroupUnreadable as error:
            return error.advice()
    if not admins:
        return f"Nobody may {doing[0].format(env=environment)} from Slack: it names no admins."
    return f"Only `{environment}`'s admins may {doing[1]}."


def slack_approver_denial(
    config: Config, environment: str, user: str, members: UserGroupMembers
) -> str | None:
    """Why `user` may not approve or reject `environment`'s deploys, or None when they may:
    they are one of its `approval.approvers`, by user ID or through a user group."""
    approval = config.environment(environment).approval
    if approval is None:
        return f"Deploys to `{environment}` need no approval."
    if user in approval.approvers:
        return None
    for group in approval.approvers:
        try:
            if group.startswith("S") and user in members(group):
                return None
        except GroupUnreadable as error:
            return error.advice()
    return f"Only `{environment}`'s approvers may approve or reject its deploys."
