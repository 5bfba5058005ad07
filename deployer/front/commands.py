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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from deployer import window_gate
from deployer.front import grammar, messages
from deployer.front.access import (
    BREAK_GLASS,
    UserGroupMembers,
    slack_admin_denial,
    slack_denial,
)
from deployer.front.approval_messages import APPROVE_BUTTON, PROMOTE_BUTTON, REJECT_BUTTON
from deployer.front.approvals import vote_from_slack
from deployer.front.context import FrontContext
from deployer.front.intake import (
    Queued,
    Started,
    blocking_manual_lock,
    take_in,
    waiters,
)
from deployer.front.messages import SlackMessage
from deployer.front.queue_requests import (
    promote_request,
    queue_request,
    queue_value,
    superseded,
)
from deployer.front.status_reads import StatusReads, notice_lost
from deployer.pipeline.approval import APPROVE, REJECT
from deployer.pipeline.promotion import digest_of
from deployer.pipeline.record import DeployRecord, Outcome, Stage, State

log = logging.getLogger(__name__)


CANCEL, ROLLBACK, RETRY = "deploy_cancel", "deploy_rollback", "deploy_retry"
BUTTONS = (CANCEL, ROLLBACK, RETRY)  # a thread's buttons; their value is the deploy id
VOTES = {APPROVE_BUTTON: APPROVE, REJECT_BUTTON: REJECT}  # a parked deploy's; value: its id
# Every button the app answers by id; Promote buttons are answered by their prefix
# (PROMOTE_BUTTON + ENV).
ACTIONS = (*BUTTONS, *VOTES, messages.QUEUE)

Answer = SlackMessage | None


@dataclass(frozen=True)
class Asker:
    """Who sent a command, where, and the request's ids."""

    user: str
    channel: str
    trigger_id: str = ""
    response_url: str = ""
    team_id: str = ""

    @property
    def who(self) -> str:
        return f"slack:{self.user}"


class OnEnvironment(Protocol):
    """A command that changes an environment."""

    @property
    def environment(self) -> str: ...


E = TypeVar("E", bound=OnEnvironment)
Runner = Callable[[Any, Asker], Answer]
Act = Callable[[E, Asker, UserGroupMembers], Answer]


class SlackCommands:
    """The chat operations over one front context."""

    def __init__(self, context: FrontContext, members: Callable[[str, str], set[str]]) -> None:
        self.context = context
        self._members = members
        self._statuses = StatusReads(context)
        # One runner per command. Those that change something first check who asks, and
        # act once per request; the rest answer anyone at once.
        self._runners: dict[type, Runner] = {
            grammar.Ignore: lambda parsed, asker: None,
            grammar.Reply: lambda parsed, asker: messages.reply(parsed.text),
            grammar.Help: self._help,
            grammar.Status: self._status_command,
            grammar.History: self._history,
            grammar.LockEnvironment: self._guarded(self._lock),
            grammar.UnlockEnvironment: self._guarded(self._unlock),
            grammar.Rollback: self._guarded(self._rollback),
            grammar.Deploy: self._guarded(self._deploy),
            grammar.Promote: self._guarded(self._promote),
            grammar.Approve: lambda parsed, asker: self._vote(parsed.deploy_id, APPROVE, "", asker),
            grammar.Reject: lambda parsed, asker: self._vote(
                parsed.deploy_id, REJECT, parsed.reason, asker
            ),
        }

    def members_in(self, team_id: str) -> UserGroupMembers:
        """User-group lookups in the asker's workspace (`team_id`: Enterprise Grid needs it)."""
        return lambda group: self._members(group, team_id)

    # --- slash command ---

    def command(
        self,
        text: str,
        user: str,
        channel: str,
        trigger_id: str = "",
        response_url: str = "",
        team_id: str = "",
    ) -> SlackMessage | None:
        """Run `/deploy <text>` for `user` in `channel`; the ephemeral answer.

        A command that changes anything acts once per `trigger_id`: the same signed
        request sent again (a replay, a retry) starts nothing.
        """
        parsed = grammar.parse(text, self.context.config)
        run = self._runners[type(parsed)]
        return run(parsed, Asker(user, channel, trigger_id, response_url, team_id))

    def _guarded(self, act: Act[E]) -> Runner:
        """`act`, run only for someone the environment allows, once per request."""

        def run(parsed: E, asker: Asker) -> SlackMessage | None:
            members = self.members_in(asker.team_id)
            denial = slack_denial(
                self.context.config, parsed.environment, asker.user, asker.channel, members
            )
            if denial is not None:
                return messages.denied(denial)
            if asker.trigger_id and not self.context.store.claim(
                f"slack-trigger:{asker.trigger_id}"
            ):
                return None  # this very request was handled already
            return act(parsed, asker, members)

        return run

    def _help(self, parsed: grammar.Help, asker: Asker) -> SlackMessage:
        return messages.help_message(self.context.config)

    def _status_command(self, parsed: grammar.Status, asker: Asker) -> SlackMessage:
        return messages.status_message(self._statuses.read(parsed.environment))

    def _history(self, parsed: grammar.History, asker: Asker) -> SlackMessage:
        environment = parsed.environment
        return messages.history_message(environment, self.context.engine.history(environment, 10))

    def _lock(
        self, parsed: grammar.LockEnvironment, asker: Asker, members: UserGroupMembers
    ) -> Answer:
        held = self.context.engine.lock(parsed.environment, asker.who, parsed.reason)
        return messages.lock_taken(held) if held.holder == asker.who else messages.locked_out(held)

    def _unlock(
        self, parsed: grammar.UnlockEnvironment, asker: Asker, members: UserGroupMembers
    ) -> SlackMessage | None:
        environment = parsed.environment
        if not parsed.force:
            released = self.context.engine.unlock(environment, asker.who)
            if released:
                waiters(self.context).start_next(environment)
            return messages.unlocked(environment, released)
        denial = slack_admin_denial(self.context.config, environment, asker.user, members)
        if denial is not None:
            return messages.denied(denial)
        cleared = self.context.engine.force_unlock(environment, asker.who, parsed.reason)
        if cleared.abandoned is not None:
            # Its worker (or this dispatch) abandons it: build stopped, traffic put back.
            self.context.dispatcher.dispatch(cleared.abandoned.id)
        else:
            waiters(self.context).start_next(environment)
        return messages.forced(environment, cleared.manual, cleared.abandoned)

    def _rollback(
        self, parsed: grammar.Rollback, asker: Asker, members: UserGroupMembers
    ) -> Answer:
        record = self.context.engine.new_rollback(parsed.environment, parsed.revision, asker.who)
        return self._start(record, asker.channel, respond_to=asker.response_url)

    def _deploy(self, parsed: grammar.Deploy, asker: Asker, members: UserGroupMembers) -> Answer:
        engine = self.context.engine
        record = engine.new_deploy(parsed.environment, parsed.ref, asker.who, parsed.service)
        record.rebuild = parsed.rebuild
        return self._start_new(record, parsed.break_glass, parsed.queue, asker, members)

    def _promote(self, parsed: grammar.Promote, asker: Asker, members: UserGroupMembers) -> Answer:
        record = self.context.engine.new_promotion(parsed.source, parsed.environment, asker.who)
        return self._start_new(record, parsed.break_glass, parsed.queue, asker, members)

    def _start_new(
        self,
        record: DeployRecord,
        break_glass: str | None,
        queue: bool,
        asker: Asker,
        members: UserGroupMembers,
    ) -> Answer:
        """A deploy or promotion asked for by a command, with its break-glass reason if any."""
        if break_glass is not None:
            # Only the environment's admins may break glass; others learn it privately.
            denial = slack_admin_denial(
                self.context.config, record.environment, asker.user, members, BREAK_GLASS
            )
            if denial is not None:
                return messages.denied(denial)
            window_gate.break_glass(record, asker.who, break_glass)
        return self._start(record, asker.channel, queue, asker.response_url)

    def _vote(self, deploy_id: str, verdict: str, reason: str, asker: Asker) -> Answer:
        members = self.members_in(asker.team_id)
        return vote_from_slack(self.context, deploy_id, verdict, reason, asker.user, members)

    # --- buttons ---

    def button(
        self, action_id: str, value: str, user: str, channel: str, team_id: str = ""
    ) -> SlackMessage | None:
        """A click on a thread's button (the caller claimed the click already)."""
        members = self.members_in(team_id)
        if action_id == messages.QUEUE:
            return self._queue_click(value, user, channel, members)
        if action_id in VOTES:
            return vote_from_slack(self.context, value, VOTES[action_id], "", user, members)
        if action_id.startswith(PROMOTE_BUTTON):
            return self._promote_click(value, user, channel, members)
        record = self.context.store.get(value)
        if record is None or action_id not in BUTTONS:
            return messages.reply("That deploy is no longer known here.")
        denial = slack_denial(self.context.config, record.environment, user, channel, members)
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
            follow_up.rebuild = record.rebuild  # a retry asks for what the deploy asked for
        if not self.context.store.claim(f"slack-{action_id}:{record.id}"):
            return messages.reply("That was done already: see the newer thread in this channel.")
        answer = self._start(follow_up, channel)
        if isinstance(answer, SlackMessage) and self.context.store.get(follow_up.id) is None:
            return answer  # refused: nothing to announce
        self._announce(record, follow_up)
        return answer

    def _queue_click(
        self, value: str, user: str, channel: str, members: UserGroupMembers
    ) -> SlackMessage | None:
        wanted = queue_request(value, self.context.config)
        if wanted is None:
            return messages.reply("That request can no longer be queued; send it again.")
        environment = wanted.environment
        denial = slack_denial(self.context.config, environment, user, channel, members)
        if denial is not None:
            return messages.denied(denial)
        who = f"slack:{user}"
        engine = self.context.engine
        if wanted.kind == "rollback":
            record = engine.new_rollback(environment, wanted.revision, who)
        elif wanted.promoted_from is not None:
            record = engine.new_promotion(wanted.promoted_from, environment, who)
        else:
            record = engine.new_deploy(environment, wanted.ref, who, wanted.service)
            record.rebuild = wanted.rebuild
        return self._start(record, channel, queue=True)

    def _promote_click(
        self, value: str, user: str, channel: str, members: UserGroupMembers
    ) -> SlackMessage | None:
        """A succeeded deploy's "Promote to ENV": what it carries is checked again (it came
        back from a client); one promotion per deploy and environment."""
        found = promote_request(value, self.context.store, self.context.config)
        if found is None:
            return messages.reply("That promotion is no longer possible; see `/deploy help`.")
        source, target = found
        denial = slack_denial(self.context.config, target, user, channel, members)
        if denial is not None:
            return messages.denied(denial)
        digest = digest_of(source.image or "") or None
        newer = superseded(self.context.store, source)
        if newer is not None:
            # Refused at once; a promotion's preflight checks again what Cloud Run serves.
            now = digest_of(newer.image or "")[:19]
            return messages.reply(
                f"Not promoted: {source.environment} now runs {now} (deploy {newer.id}), not "
                f"{(digest or '')[:19]} that this button was drawn for. Promote from the newer "
                f"thread, or `/deploy promote {source.environment} {target}`."
            )
        follow_up = self.context.engine.new_promotion(
            source.environment, target, f"slack:{user}", digest
        )
        if not self.context.store.claim(f"slack-promote:{source.id}:{target}"):
            return messages.reply(
                f"{target} was promoted from this deploy already: see its thread."
            )
        answer = self._start(follow_up, channel)
        if isinstance(answer, SlackMessage) and self.context.store.get(follow_up.id) is None:
            return answer  # refused: nothing to announce
        self._announce(source, follow_up)
        return answer

    def _cancel(self, record: DeployRecord, who: str) -> SlackMessage | None:
        if record.state.finished:
            return messages.reply(f"This {record.kind} has already ended ({record.state}).")
        if record.state == State.AWAITING_APPROVAL:
            return messages.reply("It is waiting for approval: Reject it to stop it.")
        if record.state == State.QUEUED:
            record.state, record.cancelled_by = State.CANCELLED, who
            record.error = "taken out of the queue"
            self.context.store.save(record)
            waiters(self.context).tell(record)
            return None
        health = record.stage(Stage.HEALTH)
        if record.kind == "rollback" or (health and health.outcome == Outcome.SUCCEEDED):
            return messages.reply(
                "Too late to cancel: traffic is already moving. Roll back once it ends."
            )
        self.context.engine.cancel(record.id, who)
        notice_lost(self.context, record)  # a deploy whose worker died still hears the cancel
        return None

    # --- the shared path of deploys and rollbacks ---

    def _start(
        self, record: DeployRecord, channel: str, queue: bool = False, respond_to: str = ""
    ) -> SlackMessage | None:
        """Lock, record, announce, dispatch; or tell who holds the environment."""
        closed = window_gate.closed_text(self.context.config, record)
        if closed is not None:  # before anything is locked, recorded or built
            return messages.window_closed(closed)
        who = record.requester
        manual = blocking_manual_lock(self.context, record.environment, who)
        if manual is not None and not queue:
            return messages.locked_out(manual)
        # The thread lives in the environment's channel, wherever the command was typed,
        # so that channel holds the whole record; elsewhere, the person gets a link.
        where = self.context.config.environment(record.environment).channel or channel
        loud = messages.break_glass_reply(record) if record.break_glass else None
        outcome = take_in(self.context, record, where, queue, loud, respond_to)
        if isinstance(outcome, Started):
            if outcome.record.state == State.FAILED:
                return messages.never_started(outcome.record)
            return messages.started(outcome.record)
        if isinstance(outcome, Queued):
            return messages.queued(outcome.record, outcome.position, outcome.holder)
        permalink = outcome.thread.permalink if outcome.thread else ""
        return messages.busy(
            outcome.holder, outcome.record, permalink, outcome.reviving, queue_value(record)
        )

    def _announce(self, old: DeployRecord, new: DeployRecord) -> None:
        if old.slack_channel is None:
            return
        try:
            # Sent by the new deploy's worker as it starts (it drains what is due).
            self.context.outbox.reply(old.id, messages.follow_up(old, new))
        except Exception as error:  # the new thread stands on its own
            log.warning("could not announce %s in %s's thread: %s", new.id, old.id, error)
