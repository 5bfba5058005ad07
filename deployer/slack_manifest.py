"""`deployer slack-manifest --url URL [--name NAME]`: the Slack app, as a manifest to paste.

    template        deployer/slack_manifest.yaml (the command, interactivity, bot scopes)
    --url URL       the front's base URL, joined to each request path the template names
                    (`/slack/events`): https, or http on 127.0.0.1 / localhost (the sandbox)
    --name NAME     the app's name (default "deployer"); the bot's display name is NAME in
                    the characters Slack allows there
    refused         a URL of another scheme or host, with a query, fragment or credentials;
                    a name that is empty or longer than Slack allows: a DeployerError, and
                    nothing is printed

Slack reads the manifest at api.slack.com/apps, "Create New App", "From an app manifest"
(api.slack.com/reference/manifests).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import yaml

from deployer.errors import DeployerError

TEMPLATE = "slack_manifest.yaml"
DEFAULT_NAME = "deployer"
# @slack/web-api, src/types/request/manifest.ts: display_information.name is at most 35
# characters; bot_user.display_name at most 80, of `a-z`, `0-9`, `-`, `_` and `.`.
MAX_NAME = 35
_BOT_NAME_REFUSED = re.compile(r"[^a-z0-9._-]+")
# Slack calls only https request URLs; plain http is for the sandbox on this machine.
_LOOPBACK = ("127.0.0.1", "localhost")


def template() -> dict[str, Any]:
    """The manifest template shipped with the package, parsed."""
    text = resources.files("deployer").joinpath(TEMPLATE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def base_url(url: str) -> str:
    """`url` without its trailing `/`, once it is one Slack can call (or the sandbox's).

    A refusal names the scheme and host it found, never the whole URL: it could hold
    credentials."""
    usage = "--url must be the front's https:// URL (http:// only on 127.0.0.1 or localhost)"
    try:
        parts = urlsplit(url.strip())
        host, _port = parts.hostname, parts.port  # reading the port checks it is a number
    except ValueError:
        raise DeployerError(f"{usage}; got no URL") from None
    loopback = parts.scheme == "http" and host in _LOOPBACK
    if not host or not (parts.scheme == "https" or loopback):
        found = f"{parts.scheme}://{host}" if parts.scheme and host else "no URL"
        raise DeployerError(f"{usage}; got {found}")
    if parts.query or parts.fragment or parts.username is not None:
        raise DeployerError("--url takes no query, fragment or credentials")
    return url.strip().rstrip("/")


def bot_display_name(name: str) -> str:
    """`name` as Slack allows a bot user's display name: lower case, a-z 0-9 . _ -."""
    shown = _BOT_NAME_REFUSED.sub("-", name.lower()).strip("-")
    return shown[:80] or DEFAULT_NAME


def _checked_name(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME:
        raise DeployerError(f"--name must be 1 to {MAX_NAME} characters (Slack's limit)")
    return name


def manifest(url: str, name: str = DEFAULT_NAME) -> dict[str, Any]:
    """The app's manifest: the template, with `url` before every request path, and `name`."""
    base, name = base_url(url), _checked_name(name)
    document = template()
    document["display_information"]["name"] = name
    document["features"]["bot_user"]["display_name"] = bot_display_name(name)
    for command in document["features"]["slash_commands"]:
        command["url"] = base + command["url"]
    interactivity = document["settings"]["interactivity"]
    interactivity["request_url"] = base + interactivity["request_url"]
    return document


def render(document: dict[str, Any]) -> str:
    """The manifest as YAML, in the template's order of keys."""
    # Wide enough that no line is folded: each value stays on its own line.
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=4096)
