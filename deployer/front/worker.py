"""`deployer worker DEPLOY_ID`: run (or resume) one saved deploy, telling its Slack thread.

This is what the Cloud Run job execution runs in production (`args=["worker",
DEPLOY_ID]`), and what the inline dispatcher runs on a thread of the serving
process. The record was saved by the front, with its thread's channel; the run
takes the deploy's lock over, picks up from the last stage output saved, and
sends the thread through the outbox as it goes. At the end it frees the
environment for the next deploy waiting in its queue.

Exit status: 0 once the deploy has reached an end, whatever the end (a failed
deploy is finished work), or when another run owns it; anything else (a crash,
the store unreachable, SIGKILL) is non-zero, which asks the job to retry.
"""

from __future__ import annotations

import logging
import threading

from deployer.engine import Engine
from deployer.errors import ConfigError
from deployer.front.dispatch import Dispatcher, dispatcher_from_environment
from deployer.front.github_deployments import github_deployments
from deployer.front.outbox import Outbox
from deployer.front.thread import Courier, SlackThread, open_thread
from deployer.front.waiters import Waiters
from deployer.logs import log_events
from deployer.pipeline.events import Listener, fan_out
from deployer.pipeline.lease import run_alive
from deployer.pipeline.record import DeployRecord

log = logging.getLogger(__name__)


OTHERS_SLICE = 5.0  # seconds one pass over other threads' due messages may take
OTHERS_INTERVAL = 2.0  # seconds between two passes


def _drain_others(engine: Engine, outbox: Outbox, deploy_id: str, done: threading.Event) -> None:
    """While the run lasts, send what is due in other deploys' threads (announcements, the
    queue's news, a parent nobody posted), unless a live run sends its own.

    Queues exist only while a deploy holds its environment, so the worker holding it
    is there to tell the waiters' threads within seconds; the sweep does the rest.
    """
    while True:
        try:
            outbox.drain_due(
                OTHERS_SLICE,
                lambda other: other == deploy_id or run_alive(engine.store, other),
            )
        except Exception:  # the sweep sends it
            log.exception("slack: draining the other threads failed")
        if done.wait(OTHERS_INTERVAL):
            return


def worker_outbox(engine: Engine) -> Outbox:
    """The outbox a worker sends its thread through (SLACK_BOT_TOKEN at SLACK_API_URL)."""
    from deployer.front.context import outbox_chat
    from deployer.front.settings import FrontSettings

    chat = outbox_chat(FrontSettings.from_environment())
    return Outbox(engine.store, chat, engine.config.deployer.outbox_deadline)


def _thresholds(engine: Engine, environment: str) -> dict[str, float]:
    """The analysis thresholds of `environment`, for the chart of its deploys' threads."""
    settings = engine.config.environments.get(environment)
    return settings.analysis.thresholds() if settings and settings.analysis else {}


def run_deploy(
    deploy_id: str,
    engine: Engine | None = None,
    outbox: Outbox | None = None,
    progress: Listener | None = None,
    dispatcher: Dispatcher | None = None,
) -> DeployRecord:
    """Run the saved record `deploy_id` to its end with the Slack thread (and log) listeners.

    Then the first deploy waiting for the environment is dispatched with `dispatcher`
    (default: the one `DEPLOYER_DISPATCH` names).
    """
    engine = engine or Engine.from_environment()
    record = engine.store.get(deploy_id)
    if record is None:
        raise ConfigError(f"no deploy {deploy_id} in the store")
    outbox = outbox or worker_outbox(engine)
    # Whatever requests left for Slack (announcements, queue news, a parent nobody
    # posted) goes out now, beside the deploy, from this worker that may call Slack.
    ended = threading.Event()
    others = threading.Thread(
        target=_drain_others,
        args=(engine, outbox, deploy_id, ended),
        name="slack-due",
        daemon=True,
    )
    others.start()
    courier = None
    if record.slack_channel:
        if outbox.get(deploy_id) is None:
            open_thread(outbox, record.slack_channel, record)
        courier = Courier(outbox, deploy_id)
    thread = SlackThread(outbox, record, courier, _thresholds(engine, record.environment))
    listeners: list[Listener] = [thread, log_events]
    if progress is not None:
        listeners.append(progress)
    # GitHub hears first, so that a status it could not take is told before the end.
    github = github_deployments(engine, record, fan_out(*listeners), outbox.link)
    if github is not None:
        listeners.insert(0, github)
    try:
        done = engine.resume(deploy_id, fan_out(*listeners))
    finally:
        if courier is not None:
            thread.flush_pending()
            courier.flush()
        ended.set()
        others.join(OTHERS_SLICE + 5)
    if done.state.finished:
        if dispatcher is None:
            dispatcher = dispatcher_from_environment(
                lambda next_id: run_deploy(next_id, engine, outbox),
                engine.store,
                outbox,
                config=engine.config,
            )
        Waiters(engine.config, engine.store, outbox, dispatcher, send=True).start_next(
            done.environment
        )
    return done
