"""Everything a request needs, built once per process (a Cloud Function instance, `deployer serve`)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deployer.adapters.slack_chat import SlackChat
from deployer.adapters.slack_client import slack_web_client
from deployer.config import Config
from deployer.engine import Engine
from deployer.front.dispatch import Dispatcher, dispatcher_from_environment
from deployer.front.outbox import Outbox
from deployer.front.ports import Chat
from deployer.front.settings import FrontSettings
from deployer.store.protocol import Store

if TYPE_CHECKING:
    from deployer.front.slack_app import SlackFront

# A request gives Slack at most this long per call (the outbox retries later, never here).
REQUEST_SLACK_TIMEOUT = 0.8
# A worker's calls may take longer: it waits on nobody.
WORKER_SLACK_TIMEOUT = 5.0

# The variables a context is built from: when one changes (tests do), a new context is built.
CONTEXT_VARIABLES = (
    "DEPLOYER_CONFIG",
    "DEPLOYER_STORE",
    "DEPLOYER_DISPATCH",
    "DEPLOYER_GCP_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "SLACK_API_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "GITHUB_WEBHOOK_SECRET",
)


@dataclass
class FrontContext:
    settings: FrontSettings
    config: Config
    store: Store
    engine: Engine
    chat: Chat  # answers through response URLs, user groups: short, never retried
    dispatcher: Dispatcher
    outbox: Outbox  # every thread message, kept before it is sent
    # Its bolt app, built by the first Slack request (`slack_app.slack_front`): kept here,
    # it lives and dies with the context it serves, and no other context can get it.
    slack: SlackFront | None = field(default=None, init=False, repr=False, compare=False)


def outbox_chat(settings: FrontSettings, timeout: float = WORKER_SLACK_TIMEOUT) -> SlackChat:
    """Slack for an outbox: one try per call, bounded by `timeout`; the outbox retries."""
    return SlackChat(
        slack_web_client(
            settings.slack_bot_token, settings.slack_api_url, retries=False, timeout=timeout
        )
    )


def front_context(
    settings: FrontSettings,
    engine: Engine,
    dispatch: str | None = None,
    host: str | None = None,
) -> FrontContext:
    """The front over `engine`, talking to Slack as `settings` say, dispatching to `dispatch`
    (default: `settings.dispatch`); `host`: the sandbox, when the jobs API is there."""
    from deployer.front.worker import run_deploy

    chat = outbox_chat(settings, REQUEST_SLACK_TIMEOUT)
    outbox = Outbox(engine.store, chat, engine.config.deployer.outbox_deadline)
    worker_outbox = Outbox(
        engine.store, outbox_chat(settings), engine.config.deployer.outbox_deadline
    )
    dispatchers: list[Dispatcher] = []  # the inline runs dispatch the next waiter with it
    dispatcher = dispatcher_from_environment(
        lambda deploy_id: run_deploy(deploy_id, engine, worker_outbox, None, dispatchers[0]),
        engine.store,
        worker_outbox,
        dispatch if dispatch is not None else settings.dispatch,
        engine.config,
        host,
    )
    dispatchers.append(dispatcher)
    return FrontContext(settings, engine.config, engine.store, engine, chat, dispatcher, outbox)


def front_context_from_environment() -> FrontContext:
    """Config, store, engine, chat and dispatcher from the environment variables."""
    return front_context(FrontSettings.from_environment(), Engine.from_environment())


_built: dict[tuple[str | None, ...], FrontContext] = {}
_building = threading.Lock()


def current_context() -> FrontContext:
    """The process's context for the environment as it is now; built on first use."""
    key = tuple(os.environ.get(name) for name in CONTEXT_VARIABLES)
    with _building:
        context = _built.get(key)
        if context is None:
            context = _built[key] = front_context_from_environment()
        return context


def close_contexts() -> None:
    """Stop taking deploys in every built context; the running ones finish."""
    with _building:
        contexts = list(_built.values())
        _built.clear()
    for context in contexts:
        close = getattr(context.dispatcher, "close", None)
        if callable(close):
            close()
