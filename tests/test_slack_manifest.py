"""`deployer slack-manifest`: the Slack app a team pastes, checked against the code it serves.

the output        YAML Slack reads: /deploy and interactivity at URL/slack/events, the
                  scopes, no Socket Mode, no org-wide install
the scopes        exactly what the Web API methods the deployer calls need: METHOD_SCOPES
                  below is the table, and every slack_sdk WebClient method named in
                  deployer/ must be in it
the URLs          a signed `/deploy help` and a button click POSTed to the manifest's own
                  URLs answer 200 (real HTTP to `deployer serve`, and main.py through
                  functions-framework); the GitHub webhook's URL answers a signed ping
refusals          a URL Slack could not call: exit 2, one line on stderr, nothing on stdout
"""

from __future__ import annotations

import ast
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import functions_framework
import httpx
import pytest
import yaml
from deployer_sandbox.harness.sandbox import Sandbox
from deployer_sandbox.slack.workspace import DEFAULT_SCOPES
from slack_sdk import WebClient

from deployer import cli
from deployer.front import grammar
from tests.engine_world import World, empty_world_fixture  # noqa: F401
from tests.front_requests import (
    WireRequest,
    block_action,
    github_event,
    send_flask,
    slash_command,
)
from tests.front_world import FrontWorld, make_front, served

BASE = "https://europe-west1-acme.cloudfunctions.net/deployer"

# Each slack_sdk WebClient method the deployer may call, and the bot scopes it needs, from
# each method's page ("Required scopes": api.slack.com/methods/<method>) and the scope's
# page (api.slack.com/scopes/<scope>). A method that needs no scope maps to none.
METHOD_SCOPES: dict[str, frozenset[str]] = {
    # api.slack.com/methods/chat.postMessage: chat:write; chat:write.public to post into a
    # public channel the bot has not joined (threads go to the environment's channel).
    "chat_postMessage": frozenset({"chat:write", "chat:write.public"}),
    # api.slack.com/methods/chat.update: chat:write.
    "chat_update": frozenset({"chat:write"}),
    # api.slack.com/methods/chat.getPermalink: no scope required.
    "chat_getPermalink": frozenset(),
    # api.slack.com/methods/conversations.info: channels:read (public), groups:read (private).
    "conversations_info": frozenset({"channels:read", "groups:read"}),
    # api.slack.com/methods/conversations.history: channels:history, groups:history.
    "conversations_history": frozenset({"channels:history", "groups:history"}),
    # api.slack.com/methods/usergroups.users.list: usergroups:read.
    "usergroups_users_list": frozenset({"usergroups:read"}),
    # files.getUploadURLExternal and files.completeUploadExternal: files:write.
    "files_upload_v2": frozenset({"files:write"}),
    # api.slack.com/methods/auth.test: no scope required (`deployer check` may call it).
    "auth_test": frozenset(),
}
# The slash command itself needs `commands` (api.slack.com/scopes/commands).
COMMAND_SCOPES = frozenset({"commands"})

REPO = Path(__file__).resolve().parents[1]


def printed(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`deployer slack-manifest ARGV`: exit status, stdout, stderr."""
    status = cli.main(["slack-manifest", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def manifest_for(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    status, out, err = printed("--url", url, *extra, capsys=capsys)
    assert (status, err) == (0, "")
    document: dict[str, Any] = yaml.safe_load(out)
    return document


def webclient_methods_called() -> dict[str, list[str]]:
    """Every slack_sdk WebClient method named in deployer/, with the files naming it."""
    methods = {
        name
        for name in dir(WebClient)
        if not name.startswith("_") and callable(getattr(WebClient, name))
    }
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / "deployer").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in methods:
                found.setdefault(node.attr, []).append(str(path.relative_to(REPO)))
    return found


# --- what the manifest says ---


def test_the_manifest_names_the_command_its_urls_and_the_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    document = manifest_for(BASE + "/", capsys)

    assert document["display_information"]["name"] == "deployer"
    assert document["features"]["bot_user"]["display_name"] == "deployer"
    (command,) = document["features"]["slash_commands"]
    assert command["command"] == "/deploy"
    assert command["url"] == f"{BASE}/slack/events"
    assert command["description"]
    assert command["should_escape"] is False
    # Every command of the grammar is in the hint Slack shows while typing.
    heads = {
        line.split()[1]
        for line in (grammar.__doc__ or "").splitlines()
        if line.strip().startswith("/deploy ") and not line.split()[1].startswith("[")
    }
    assert heads == {
        "help",
        "status",
        "history",
        "rollback",
        "lock",
        "unlock",
        "promote",
        "approve",
        "reject",
    }
    hint = command["usage_hint"]
    assert all(head in hint.split() for head in heads), hint
    assert hint.startswith("[SERVICE] ENV [REF]")

    settings = document["settings"]
    assert settings["interactivity"] == {
        "is_enabled": True,
        "request_url": f"{BASE}/slack/events",
    }
    assert settings["org_deploy_enabled"] is False
    assert settings["socket_mode_enabled"] is False
    assert "event_subscriptions" not in settings  # the deployer reads no events


def test_the_name_and_the_limits_slack_sets(capsys: pytest.CaptureFixture[str]) -> None:
    document = manifest_for(BASE, capsys, "--name", "Acme Deployer (prod)")
    assert document["display_information"]["name"] == "Acme Deployer (prod)"
    # Slack: a bot's display name is a-z, 0-9, `-`, `_` and `.`, at most 80 characters.
    assert document["features"]["bot_user"]["display_name"] == "acme-deployer-prod"

    status, out, err = printed("--url", BASE, "--name", "x" * 36, capsys=capsys)
    assert (status, out) == (2, "")
    assert err == "deployer: --name must be 1 to 35 characters (Slack's limit)\n"


def test_the_sandbox_front_may_be_named_over_plain_http(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for url in ("http://127.0.0.1:8080", "http://localhost:9000/"):
        document = manifest_for(url, capsys)
        base = url.rstrip("/")
        assert document["settings"]["interactivity"]["request_url"] == f"{base}/slack/events"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://deployer.example.com", "got http://deployer.example.com"),
        ("ftp://127.0.0.1/x", "got ftp://127.0.0.1"),
        ("deployer.example.com", "got no URL"),
        ("https://", "got no URL"),
        ("", "got no URL"),
        ("https://deployer.example.com:port", "got no URL"),
        ("http://127.0.0.2:8080", "got http://127.0.0.2"),
    ],
)
def test_a_url_slack_could_not_call_is_refused(
    url: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = printed("--url", url, capsys=capsys)
    assert (status, out) == (2, "")
    assert err == (
        "deployer: --url must be the front's https:// URL (http:// only on 127.0.0.1 or "
        f"localhost); {said}\n"
    )


def test_credentials_in_the_url_are_refused_and_never_echoed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for url in ("https://me:hunter2@deployer.example.com", f"{BASE}?token=hunter2"):
        status, out, err = printed("--url", url, capsys=capsys)
        assert (status, out) == (2, "")
        assert err == "deployer: --url takes no query, fragment or credentials\n"
        assert "hunter2" not in err


def test_the_console_script_prints_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deployer.cli", "slack-manifest", "--url", BASE],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the template comes from the package, not the working folder
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert yaml.safe_load(done.stdout)["features"]["slash_commands"][0]["command"] == "/deploy"


# --- the scopes, against the code ---


def test_the_code_calls_only_methods_whose_scopes_are_known() -> None:
    called = webclient_methods_called()
    unknown = {method: files for method, files in called.items() if method not in METHOD_SCOPES}
    assert not unknown, (
        f"Slack Web API methods called without a known scope: {unknown}; add each to "
        "METHOD_SCOPES (from api.slack.com/methods/<method>) and its scopes to "
        "deployer/slack_manifest.yaml"
    )
    # The table lists nothing the code no longer calls (auth.test aside: it needs nothing).
    assert set(METHOD_SCOPES) - set(called) <= {"auth_test"}


def test_the_manifest_asks_for_exactly_the_scopes_those_methods_need(
    capsys: pytest.CaptureFixture[str],
) -> None:
    needed = set(COMMAND_SCOPES)
    for method in webclient_methods_called():
        needed |= METHOD_SCOPES[method]
    scopes = manifest_for(BASE, capsys)["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}  # no user token
    assert len(scopes["bot"]) == len(set(scopes["bot"]))
    assert set(scopes["bot"]) == needed
    # The sandbox's bot token holds what the app asks for, so the tests run as it would.
    assert set(scopes["bot"]) == DEFAULT_SCOPES


# --- the URLs, against the front ---


@pytest.fixture
def front(empty_world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    with served(make_front(empty_world, gcp), repo_root) as ready:
        yield ready


def _post(url: str, request: WireRequest) -> httpx.Response:
    """POST a signed request to `url`, the whole URL the manifest gave Slack."""
    return httpx.post(url, content=request.body, headers=request.headers, timeout=10)


def _help(front: FrontWorld) -> WireRequest:
    url = front.sandbox.http.mint_response_url(channel=front.channel, user=front.user)
    return slash_command(
        front.signing_secret, "help", user=front.user, channel=front.channel, response_url=url
    )


def _click(front: FrontWorld) -> WireRequest:
    """A click on Cancel under a thread whose deploy this store never held."""
    ts = "1700000000.000100"
    url = front.sandbox.http.mint_response_url(
        channel=front.channel, user=front.user, message_ts=ts
    )
    unknown = f"d-m3k2x1-{uuid.uuid4().hex[:6]}"
    return block_action(
        front.signing_secret,
        "deploy_cancel",
        unknown,
        user=front.user,
        channel=front.channel,
        message_ts=ts,
        response_url=url,
    )


def test_slack_reaches_the_front_at_the_manifest_urls(
    front: FrontWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    """`deployer serve` over real HTTP, at the URLs a manifest made for it names."""
    document = manifest_for(front.env["_SERVE_URL"], capsys)
    command_url = document["features"]["slash_commands"][0]["url"]
    buttons_url = document["settings"]["interactivity"]["request_url"]

    answer = _post(command_url, _help(front))
    assert answer.status_code == 200, answer.text
    assert "How to use" in answer.json()["text"]
    answer = _post(buttons_url, _click(front))
    assert answer.status_code == 200, answer.text
    # The click was handled: its author is told, through the click's response URL.
    told = [m["text"] for m in front.messages() if m.get("user_target") == front.user]
    assert told == ["That deploy is no longer known here."]

    # The GitHub webhook the README names, beside it.
    ping = github_event(front.env["GITHUB_WEBHOOK_SECRET"], "ping", {"zen": "Keep it simple."})
    assert _post(f"{front.env['_SERVE_URL']}/github/webhook", ping).status_code == 200


def test_the_function_answers_at_the_manifest_paths(
    front: FrontWorld, repo_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """main.py's `deployer_http` (the Cloud Functions entry point), at the same paths."""
    for name, value in front.env.items():
        monkeypatch.setenv(name, value)
    app = functions_framework.create_app("deployer_http", str(repo_root / "main.py"))
    client = app.test_client()
    document = manifest_for("https://deployer-abc123-ew.a.run.app", capsys)
    command_path = urlsplit(document["features"]["slash_commands"][0]["url"]).path
    buttons_path = urlsplit(document["settings"]["interactivity"]["request_url"]).path

    request = _help(front)
    answer = send_flask(client, WireRequest("POST", command_path, request.headers, request.body))
    assert answer.status == 200, answer.text
    assert "How to use" in answer.json()["text"]
    request = _click(front)
    answer = send_flask(client, WireRequest("POST", buttons_path, request.headers, request.body))
    assert answer.status == 200, answer.text
