"""`deployer check`: what Slack must allow for an environment's threads and access rules.

    token        Slack takes SLACK_BOT_TOKEN (`auth.test`), once a run: the workspace and
                 the bot it is; refused (`invalid_auth`, revoked...) fails
    channel      the bot can post the threads into the environment's channel: a member,
                 or a public channel (with `chat:write.public`); a private channel it
                 is not in refuses it (`channel_not_found`)
    files        with `[analysis]`, the bot may upload the chart (`files:write`)
    user groups  every group the allow-lists name can be read (`usergroups.users.list`:
                 `plan_upgrade_required` on free workspaces, `missing_scope` without
                 `usergroups:read`)

Sources: api.slack.com/methods/chat.postMessage ("Errors": not_in_channel,
channel_not_found; the chat:write.public scope), api.slack.com/methods/conversations.info,
api.slack.com/methods/usergroups.users.list.
"""

from __future__ import annotations

from deployer.check_results import Check, Status
from deployer.config import Environment
from deployer.front.access import GroupUnreadable
from deployer.front.ports import Chat, ChatError


def check_channel(chat: Chat, settings: Environment) -> Check:
    """Whether the bot can post the environment's threads where they go."""
    if settings.channel is None:
        return Check(
            Status.OK,
            "slack channel",
            "none configured: each thread goes where its command was typed",
        )
    where = f"<#{settings.channel}> ({settings.channel})"
    try:
        view = chat.channel_info(settings.channel)
    except ChatError as error:
        if error.error in ("channel_not_found", "not_in_channel"):
            return Check(
                Status.FAIL,
                "slack channel",
                f"the bot cannot see {where}: a private channel must invite it "
                "(`/invite @` and the deployer's app, there)",
            )
        return Check(Status.WARN, "slack channel", f"could not read {where}: {error}")
    info = view.channel
    if info.get("is_member"):
        return Check(Status.OK, "slack channel", f"the bot is a member of {where}")
    if info.get("is_private"):
        return Check(
            Status.FAIL,
            "slack channel",
            f"the bot is not in the private channel {where}: `/invite` it there",
        )
    if view.scopes is not None and "chat:write.public" in view.scopes:
        return Check(
            Status.OK,
            "slack channel",
            f"{where} is public: the bot posts there without joining (chat:write.public)",
        )
    if view.scopes is not None:
        return Check(
            Status.FAIL,
            "slack channel",
            f"the bot is not in {where} and lacks the `chat:write.public` scope: Slack would "
            "answer not_in_channel. Add the scope (in the app manifest) or `/invite` it there",
        )
    return Check(
        Status.WARN,
        "slack channel",
        f"the bot is not in {where}: it posts there only with the `chat:write.public` "
        "scope (in the app manifest); or invite it",
    )


def check_chart_scope(chat: Chat, settings: Environment) -> Check | None:
    """Whether the bot may upload the analysis chart into the thread (`files:write`,
    api.slack.com/methods/files.getUploadURLExternal); None without analysis, or when the
    token's scopes cannot be read."""
    if settings.analysis is None or settings.channel is None:
        return None
    try:
        scopes = chat.channel_info(settings.channel).scopes
    except ChatError:
        return None  # the channel's own check says why
    if scopes is None:
        return None
    if "files:write" in scopes:
        return Check(Status.OK, "slack files", "the bot may attach the analysis chart")
    return Check(
        Status.WARN,
        "slack files",
        "the bot lacks the `files:write` scope: threads get the analysis as text, without "
        "its chart. Add the scope (in the app manifest) and reinstall the app",
    )


def check_usergroups(chat: Chat, settings: Environment) -> Check | None:
    """Whether every user group the allow-lists name can be read (None: none named)."""
    groups = [*settings.allow.slack_usergroups]
    groups += [group for group in settings.allow.admins if group.startswith("S")]
    if not groups:
        return None
    sizes = []
    for group in dict.fromkeys(groups):
        try:
            sizes.append(f"{group} ({len(chat.usergroup_members(group))} members)")
        except ChatError as error:
            advice = GroupUnreadable(group, error.error).advice()
            return Check(Status.FAIL, "slack user groups", advice)
    return Check(Status.OK, "slack user groups", "readable: " + ", ".join(sizes))


# Tokens Slack refuses outright (docs.slack.dev/reference/methods/auth.test, "Errors"):
# the app was uninstalled or the token revoked, the workspace gone, or a mistyped token.
_REFUSED = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)


def check_bot_token(chat: Chat) -> Check:
    """Whether Slack takes SLACK_BOT_TOKEN (`auth.test`): the workspace and the bot it is."""
    subject = "slack token"
    try:
        bot = chat.identity()
    except ChatError as error:
        if error.error in _REFUSED:
            return Check(
                Status.FAIL,
                subject,
                f"Slack refuses SLACK_BOT_TOKEN ({error.error}): no thread could be posted. "
                "Copy the Bot User OAuth Token (OAuth & Permissions) into the slack-bot-token "
                "secret: `gcloud secrets versions add slack-bot-token --data-file=-`",
            )
        return Check(Status.WARN, subject, f"auth.test did not answer: {error}")
    who = f"bot @{bot.user} ({bot.user_id}" + (f", {bot.bot_id})" if bot.bot_id else ")")
    if not bot.bot_id:
        return Check(
            Status.WARN,
            subject,
            f"{who} in {bot.team} ({bot.team_id}) is not a bot token: the deployer posts as "
            "its app's bot (`xoxb-...`)",
        )
    return Check(Status.OK, subject, f"{who} in workspace {bot.team} ({bot.team_id})")
