"""Everything a request needs, built once per process (a Cloud Function instance, `deployer serve`)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from deployer.adapters.slack_chat import SlackChat
from deployer.adapters.slack_client import slack_web_client
from deployer.config import Config
from deployer.engine import Engine
from deployer.front.dispatch import Dispatcher, dispatcher_from_environment
from deployer.front.ports import Chat
from deployer.front.settings import FrontSettings
from deployer.store.protocol import Store

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
    chat: Chat
    dispatcher: Dispatcher


def front_context_from_environment() -> FrontContext:
    """Config, store, engine, chat and dispatcher from the environment variables."""
    from deployer.front.worker import run_deploy

    settings = FrontSettings.from_environment()
    engine = Engine.from_environment()
    chat = SlackChat(slack_web_client(settings.slack_bot_token, settings.slack_api_url))
    return FrontContext(
        settings=settings,
        config=engine.config,
        store=engine.store,
        engine=engine,
        chat=chat,
        dispatcher=dispatcher_from_environment(
            lambda deploy_id: run_deploy(deploy_id, engine, chat), engine.store, chat
        ),
    )


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
