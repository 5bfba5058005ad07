"""The sandbox's Slack Web API methods: each reads its arguments and answers as Slack does.

The `chat.*` methods are in `slack.chat`, the `conversations.*` ones in
`slack.conversations`, the `files.*` ones of an external upload in `slack.files`; where the bot may act (membership and scopes) is in
`slack.access`, and how arguments are read in `slack.arguments`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from deployer_sandbox.slack.access import require_scope
from deployer_sandbox.slack.arguments import Params, flag, text_param
from deployer_sandbox.slack.chat import delete, permalink, post_ephemeral, post_message, update
from deployer_sandbox.slack.conversations import conversations_info, history
from deployer_sandbox.slack.files import complete_upload, get_upload_url
from deployer_sandbox.slack.workspace import (
    BOT_ID,
    BOT_USER_ID,
    BOT_USER_NAME,
    TEAM_DOMAIN,
    TEAM_ID,
    TEAM_NAME,
    SlackError,
    SlackWorkspace,
)

Handler = Callable[[SlackWorkspace, Params], dict[str, Any]]


def auth_test(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`auth.test`: who the bot is."""
    return {
        "url": f"https://{TEAM_DOMAIN}.slack.com/",
        "team": TEAM_NAME,
        "user": BOT_USER_NAME,
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def users_info(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`users.info`: a member's record."""
    user = ws.user(text_param(params, "user") or "")
    if user is None:
        raise SlackError("user_not_found")
    return {"user": json.loads(json.dumps(user))}


def usergroup_users(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`usergroups.users.list`: a user group's members.

    `team_id` ("encoded team id where the user group exists, required if org token is
    used") may name only this workspace: another is `team_access_not_granted` (the app is
    not installed there), the stricter reading of a case the method page leaves open.
    """
    require_scope(ws, "usergroups:read")
    team = text_param(params, "team_id")
    if team and team != TEAM_ID:
        raise SlackError("team_access_not_granted")
    group = ws.usergroup(text_param(params, "usergroup") or "")
    if group is None:
        raise SlackError("no_such_subteam")
    if not group["enabled"] and not flag(params.get("include_disabled")):
        raise SlackError("no_such_subteam")
    return {"users": list(group["users"])}


HANDLERS: dict[str, Handler] = {
    "auth.test": auth_test,
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.postEphemeral": post_ephemeral,
    "chat.delete": delete,
    "users.info": users_info,
    "conversations.info": conversations_info,
    "conversations.history": history,
    "usergroups.users.list": usergroup_users,
    "chat.getPermalink": permalink,
    "files.getUploadURLExternal": get_upload_url,
    "files.completeUploadExternal": complete_upload,
}
METHODS = tuple(HANDLERS)
