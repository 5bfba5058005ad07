"""`deployer worker DEPLOY_ID`: run (or resume) one saved deploy, telling its Slack thread.

This is what the Cloud Run job execution runs in production (`args=["worker",
DEPLOY_ID]`), and what the inline dispatcher runs on a thread of the serving
process. The record was saved by the front, with its thread's channel and ts;
the pipeline picks up from the last stage output it saved.
"""

from __future__ import annotations

from deployer.engine import Engine
from deployer.errors import ConfigError
from deployer.front.ports import Chat
from deployer.logs import log_events
from deployer.pipeline.events import Listener, fan_out
from deployer.pipeline.record import DeployRecord


def run_deploy(
    deploy_id: str,
    engine: Engine | None = None,
    chat: Chat | None = None,
    progress: Listener | None = None,
) -> DeployRecord:
    """Run the saved record `deploy_id` to its end with the Slack thread (and log) listeners."""
    from deployer.adapters.slack_chat import SlackChat
    from deployer.front.thread import SlackThread

    engine = engine or Engine.from_environment()
    record = engine.store.get(deploy_id)
    if record is None:
        raise ConfigError(f"no deploy {deploy_id} in the store")
    listeners: list[Listener] = [SlackThread(chat or SlackChat(), record), log_events]
    if progress is not None:
        listeners.append(progress)
    return engine.resume(deploy_id, fan_out(*listeners))
