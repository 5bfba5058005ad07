"""What each `/deploy` command and thread button does, inside Slack's 3 seconds.

    text -> grammar.parse -> help / status / history           answered at once
                          -> deploy / rollback / lock / unlock  access -> locks -> act
    button -> claim the click -> access -> cancel / roll back / retry

Every answer is a `SlackMessage` only the person who asked sees (None: nothing
to say). A deploy or rollback is recorded, announced in its thread's parent
message, saved and dispatched; the pipeline runs elsewhere (`Dispatcher`).
Refusals start nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from deployer.config import Config
from deployer.engine import EnvironmentStatus
from deployer.errors import DeployerError
from deployer.front import grammar, messages
from deployer.front.access import slack_denial
from deployer.front.context import FrontContext
from deployer.front.messages import SlackMessage
from deployer.front.thread import post_parent
from deployer.pipeline.record import DeployRecord, Lock, Outcome, Stage

log = logging.getLogger(__name__)

STATUS_WAIT = 2.4  # seconds: what is left of Slack's 3 s after the round trips
MEMBERS_TTL = 60.0  # seconds a user group's members are trusted
PENDING_WINDOW = 15 * 60  # a saved, unstarted record this young still holds its environment

CANCEL, ROLLBACK, RETRY = "deploy_cancel", "deploy_rollback", "deploy_retry"
BUTTONS = (CANCEL, ROLLBACK, RETRY)


class GroupMembers:
    """Slack user-group members (`usergroups.users.list`), cached briefly; empty when unknown."""

    def __init__(
        self, list_users: Callable[[str], Iterable[str]], ttl: float = MEMBERS_TTL
    ) -> None:
        self._list_users = list_users
        self._ttl = ttl
        self._cache: dict[str, tuple[float, set[str]]] = {}
        self._lock = threading.Lock()

    def __call__(self, group: str) -> set[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(group)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            members = set(self._list_users(group))
        except Exception as error:  # unknown members grant nothing
            log.warning("usergroups.users.list %s failed: %s", group, error)
            return set()
        with self._lock:
            self._cache[group] = (now, members)
        return members


class SlackCommands:
    """The chat operations over one front context."""

    def __init__(self, context: FrontContext, members: Callable[[str], set[str]]) -> None:
        self.context = context
        self.members = members
        self._status_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="status")

    # --- slash command ---

    def command(self, text: str, user: str, channel: str) -> SlackMessage | None:
        """Run `/deploy <text>` for `user` in `channel`; the ephemeral answer."""
        config = self.context.config
        parsed = grammar.parse(text, config)
        if isinstance(parsed, grammar.Ignore):
            return None
        if isinstance(parsed, grammar.Reply):
            return messages.reply(parsed.text)
        if isinstance(parsed, grammar.Help):
            return messages.help_message(config)
        if isinstance(parsed, grammar.Status):
            return messages.status_message(self._status(parsed.environment))
        if isinstance(parsed, grammar.History):
            return messages.history_message(
                parsed.environment, self.context.engine.history(parsed.environment, 10)
            )
        denial = slack_denial(config, parsed.environment, user, channel, self.members)
        if denial is not None:
            return messages.denied(denial)
        who = f"slack:{user}"
        engine = self.context.engine
        if isinstance(parsed, grammar.LockEnvironment):
            held = engine.lock(parsed.environment, who, parsed.reason)
            return messages.lock_taken(held) if held.holder == who else messages.locked_out(held)
        if isinstance(parsed, grammar.UnlockEnvironment):
            return messages.unlocked(parsed.environment, engine.unlock(parsed.environment, who))
        blocking = self._blocking_lock(parsed.environment, who)
        if blocking is not None:
            return messages.locked_out(blocking)
        if isinstance(parsed, grammar.Rollback):
            record = engine.new_rollback(parsed.environment, parsed.revision, who)
        else:
            record = engine.new_deploy(parsed.environment, parsed.ref, who, parsed.service)
        return self._start(record, channel)

    # --- buttons ---

    def button(
        self, action_id: str, deploy_id: str, user: str, channel: str
    ) -> SlackMessage | None:
        """A click on a thread's button (the caller claimed the click already)."""
        record = self.context.store.get(deploy_id)
        if record is None or action_id not in BUTTONS:
            return messages.reply("That deploy is no longer known here.")
        denial = slack_denial(self.context.config, record.environment, user, channel, self.members)
        if denial is not None:
            return messages.denied(denial)
        who = f"slack:{user}"
        if action_id == CANCEL:
            return self._cancel(record, who)
        # One rollback / retry per deploy, however often (and by however many) it is clicked.
        if action_id == ROLLBACK:
            if record.previous_revision is None:
                return messages.reply("There is no earlier revision to roll back to.")
            follow_up = self.context.engine.new_rollback(
                record.environment, record.previous_revision, who
            )
        else:
            follow_up = self.context.engine.new_deploy(
                record.environment, record.ref, who, record.service
            )
        blocking = self._blocking_lock(record.environment, who)
        if blocking is not None:
            return messages.locked_out(blocking)
        if not self.context.store.claim(f"slack-{action_id}:{record.id}"):
            return messages.reply("That was done already: see the newer thread in this channel.")
        answer = self._start(follow_up, record.slack_channel or channel)
        self._announce(record, follow_up)
        return answer

    def _cancel(self, record: DeployRecord, who: str) -> SlackMessage | None:
        if record.state.finished:
            return messages.reply(f"This {record.kind} has already ended ({record.state}).")
        health = record.stage(Stage.HEALTH)
        if record.kind == "rollback" or (health and health.outcome == Outcome.SUCCEEDED):
            return messages.reply(
                "Too late to cancel: traffic is already moving. Roll back once it ends."
            )
        self.context.engine.cancel(record.id, who)
        return None

    # --- the shared path of deploys and rollbacks ---

    def _blocking_lock(self, environment: str, who: str) -> Lock | None:
        """Someone else's manual lock, or a deploy that runs (or waits to) in `environment`."""
        for lock in self.context.store.locks(environment):
            if lock.kind == "deploy" or lock.holder != who:
                return lock
        # A dispatched record takes its deploy lock only when its preflight starts.
        for record in self.context.store.history(environment, 5):
            if not record.state.finished and time.time() - record.created_at < PENDING_WINDOW:
                return Lock(environment, "deploy", record.id, record.kind, record.created_at)
        return None

    def _start(self, record: DeployRecord, channel: str) -> SlackMessage | None:
        """Record, announce, save, dispatch: nothing heavier than a Slack post inside 3 s."""
        record.slack_channel = channel
        record.slack_ts = post_parent(self.context.chat, channel, record)
        self.context.store.save(record)
        self.context.dispatcher.dispatch(record.id)
        if record.slack_ts is None:
            return messages.reply(
                f"Started {record.kind} `{record.id}`, but I could not post its thread here. "
                "Follow it with `/deploy status`."
            )
        return None

    def _announce(self, old: DeployRecord, new: DeployRecord) -> None:
        if old.slack_channel is None or old.slack_ts is None or new.slack_ts is None:
            return
        message = messages.follow_up(old, new)
        try:
            self.context.chat.post(old.slack_channel, message, thread_ts=old.slack_ts)
        except Exception as error:  # the new thread stands on its own
            log.warning("could not announce %s in %s's thread: %s", new.id, old.id, error)

    # --- status, bounded ---

    def _status(self, environment: str | None) -> list[EnvironmentStatus]:
        """Each environment's status, read in parallel; what is not back in time says so."""
        engine = self.context.engine
        names = [environment] if environment else sorted(self.context.config.environments)
        futures: list[Future[list[EnvironmentStatus]]] = [
            self._status_pool.submit(engine.status, name) for name in names
        ]
        deadline = time.monotonic() + STATUS_WAIT
        statuses: list[EnvironmentStatus] = []
        for name, future in zip(names, futures, strict=True):
            try:
                statuses += future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                statuses.append(_unanswered(engine.config, name, "no answer in time"))
            except DeployerError as error:
                statuses.append(_unanswered(engine.config, name, str(error)))
        return statuses


def _unanswered(config: Config, environment: str, problem: str) -> EnvironmentStatus:
    settings = config.environment(environment)
    service = config.services[settings.service]
    return EnvironmentStatus(
        environment=environment,
        service=service.service,
        location=f"{service.project}/{service.region}",
        uri="",
        serving=[],
        locks=[],
        last=None,
        health=None,
        problem=problem,
    )
