"""The `deployer` command line: the same operations as chat, from a terminal."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from deployer import logs
from deployer.cli_parser import parser
from deployer.errors import DeployerError
from deployer.pipeline.record import DeployRecord, Lock, State

if TYPE_CHECKING:
    from deployer.engine import Engine
    from deployer.front.ports import Chat
    from deployer.front.thread_box import ThreadBox
    from deployer.pipeline.events import Listener


def _requester() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _break_glass(record: DeployRecord, reason: str) -> None:
    """`--break-glass REASON`: whoever runs the CLI holds the deployer's credentials, and so
    could deploy by hand anyway; the override is theirs, recorded as `cli:<user>`."""
    from deployer.front.grammar import MAX_REASON
    from deployer.window_gate import break_glass

    reason = " ".join(reason.split())
    if not reason or len(reason) > MAX_REASON:
        raise DeployerError(f"--break-glass needs a reason of 1 to {MAX_REASON} characters")
    break_glass(record, _requester(), reason)


def _env_import(args: argparse.Namespace) -> int:
    from deployer.adapters.secret_writer import SecretManagerWriter
    from deployer.env_import import import_env, render_import

    result = import_env(
        args.file,
        args.environment,
        SecretManagerWriter(),
        prefix=args.prefix,
        dry_run=args.dry_run,
    )
    print("\n".join(render_import(result)))
    return 0 if result.ok else 1


def _check_chat() -> Chat | None:
    """Slack as `check` reads it (SLACK_BOT_TOKEN at SLACK_API_URL), or None without a token."""
    from deployer.front.context import outbox_chat
    from deployer.front.settings import FrontSettings

    settings = FrontSettings.from_environment()
    return outbox_chat(settings) if settings.slack_bot_token else None


def _check(args: argparse.Namespace) -> int:
    from deployer.adapters.permissions import GooglePermissions
    from deployer.adapters.project_reader import GoogleProjectReader
    from deployer.checks import render_checks, run_checks
    from deployer.engine import default_platform
    from deployer.store import STORE_ENV

    report = run_checks(
        default_platform,
        GooglePermissions,
        args.environment,
        args.ref,
        chat=_check_chat,
        dispatch=os.environ.get("DEPLOYER_DISPATCH", ""),
        project=GoogleProjectReader,
        store=os.environ.get(STORE_ENV, ""),
    )
    print("\n".join(render_checks(report)))
    return 1 if report.failed else 0


def _setup(args: argparse.Namespace) -> int:
    from deployer.setup.run import exit_status, run_setup
    from deployer.setup.secrets_input import read_secret_values

    results = run_setup(
        args.project,
        args.region,
        args.config,
        read_secret_values(args.secrets_file),
        args.image,
        args.dry_run,
        front=args.front,
    )
    return exit_status(results)


def _force_unlock(engine: Engine, environment: str, reason: str, progress: Listener) -> int:
    """`deployer unlock ENV --force`: clear every lock; abandon the deploy holding it, here."""
    from deployer.front.worker import run_deploy

    cleared = engine.force_unlock(environment, _requester(), reason)
    if cleared.manual is not None:
        print(f"{environment}: lifted {cleared.manual.holder}'s lock")
    if cleared.abandoned is None:
        if cleared.manual is None:
            print(f"{environment} was not locked")
        return 0
    done = run_deploy(cleared.abandoned.id, engine, progress=progress)
    return 0 if done.state == State.ABANDONED else 1


def _sweep(engine: Engine) -> int:
    """`deployer sweep`: one pass; deploys it resumes inline run to their end before it exits."""
    from deployer.front.context import front_context
    from deployer.front.settings import FrontSettings
    from deployer.front.sweep import Sweeper

    context = front_context(FrontSettings.from_environment(), engine)
    report = Sweeper(context).sweep()
    close = getattr(context.dispatcher, "close", None)
    if callable(close):
        close()
    print("\n".join(report.lines()))
    return 0


def _thread(engine: Engine, deploy_id: str) -> ThreadBox | None:
    """The deploy's Slack thread as the outbox keeps it (it knows the link the record lacks)."""
    from deployer.front.thread_box import ThreadBox

    found = engine.store.outbox_read(deploy_id)
    return ThreadBox.from_json(found.body) if found else None


def _record_json(
    engine: Engine, record: DeployRecord, locks: list[Lock], now: float
) -> dict[str, Any]:
    from deployer import records_json

    record = _with_votes(engine, record)
    # A stop asked for but not yet seen by the run is in the store, not in the record.
    unseen = not record.state.finished and not record.cancel_requested
    asked = engine.store.cancel_requested(record.id) if unseen else None
    return records_json.record(record, now, _thread(engine, record.id), locks, asked)


def _with_votes(engine: Engine, record: DeployRecord) -> DeployRecord:
    """`record`, with the votes cast on it while it is parked (kept apart from the record
    until its next run reads them)."""
    if record.state != State.AWAITING_APPROVAL:
        return record
    from deployer.pipeline.approval import read_votes

    return replace(record, votes=read_votes(engine.store, record.id))


def _show(engine: Engine, deploy_id: str, as_json: bool) -> int:
    """`deployer show ID`: the record in full, with its thread and its hold on the lock."""
    from deployer import terminal
    from deployer.pipeline.lease import DEPLOY

    record = engine.store.get(deploy_id)
    if record is None:
        print(f"deployer: no deploy {deploy_id} in the store", file=sys.stderr)
        return 1
    record = _with_votes(engine, record)
    now = time.time()
    locks = engine.store.locks(record.environment)
    document = _record_json(engine, record, locks, now)
    if as_json:
        print(json.dumps(document, indent=2))
        return 0
    shown = replace(
        record,
        slack_channel=document["slack_channel"],
        slack_ts=document["slack_ts"],
        cancel_requested=document["cancel_requested"],
        cancelled_by=document["cancelled_by"],
    )
    held = [lock for lock in locks if lock.kind == DEPLOY and lock.holder == record.id]
    print(
        terminal.render_record(shown, document["thread_url"] or "", held[0] if held else None, now)
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from deployer import cli_approvals, terminal
    from deployer.engine import Engine
    from deployer.logs import log_events, wants_json
    from deployer.pipeline.events import fan_out

    if args.command == "serve":
        from deployer.front.server import serve as serve_webhooks

        return serve_webhooks(args.host, args.port)
    if args.command == "env":
        return _env_import(args)
    if args.command == "check":
        return _check(args)
    if args.command == "setup":
        return _setup(args)
    if args.command == "slack-manifest":
        from deployer.slack_manifest import manifest, render

        print(render(manifest(args.url, args.name)), end="")
        return 0
    engine = Engine.from_environment()
    # The terminal already tells the story; log lines repeat it only where logs are collected.
    progress = (
        fan_out(terminal.TerminalProgress(), log_events)
        if wants_json()
        else terminal.TerminalProgress()
    )
    if args.command == "deploy":
        record = engine.new_deploy(args.environment, args.ref, _requester(), args.service)
        record.rebuild = args.rebuild
        if args.break_glass is not None:
            _break_glass(record, args.break_glass)
        listener = progress
        if not args.dry_run:
            from deployer.front.github_deployments import github_deployments

            github = github_deployments(engine, record, progress)
            listener = progress if github is None else fan_out(github, progress)
        done = engine.deploy(record, listener, dry_run=args.dry_run)
        return cli_approvals.exit_status(done)
    if args.command == "promote":
        done = cli_approvals.promote(
            engine,
            args.source,
            args.environment,
            _requester(),
            progress,
            args.dry_run,
            lambda record: _break_glass(record, args.break_glass) if args.break_glass else None,
        )
        return cli_approvals.exit_status(done)
    if args.command in ("approve", "reject"):
        verdict = "approve" if args.command == "approve" else "reject"
        reason = getattr(args, "reason", "")
        return cli_approvals.vote(engine, args.deploy_id, _requester(), verdict, reason, progress)
    if args.command == "rollback":
        done = engine.rollback(args.environment, args.to, _requester(), progress)
        return 0 if done.state == State.SUCCEEDED else 1
    if args.command == "worker":
        from deployer.front.worker import run_deploy

        run_deploy(args.deploy_id, engine, progress=terminal.TerminalProgress())
        # Any end is finished work; only a worker that dies before it asks for a retry.
        return 0
    if args.command == "sweep":
        return _sweep(engine)
    if args.command == "status":
        from deployer import records_json

        statuses = engine.status(args.environment)
        if args.json:
            now = time.time()
            documents = [records_json.environment_status(s, now) for s in statuses]
            print(json.dumps(documents, indent=2))
        else:
            print(terminal.render_status(statuses))
        return 0 if all(not s.problem for s in statuses) else 1
    if args.command == "history":
        records = engine.history(args.environment, args.limit)
        if args.json:
            now, locks = time.time(), engine.store.locks(args.environment)
            documents = [_record_json(engine, record, locks, now) for record in records]
            print(json.dumps(documents, indent=2))
        else:
            print(terminal.render_history(args.environment, records))
        return 0
    if args.command == "show":
        return _show(engine, args.deploy_id, args.json)
    if args.command == "lock":
        held = engine.lock(args.environment, _requester(), args.reason)
        if held.holder != _requester():
            print(f"{args.environment} is already locked by {held.holder}", file=sys.stderr)
            return 1
        print(f"{args.environment} locked")
        return 0
    if args.command == "unlock" and args.force:
        return _force_unlock(engine, args.environment, args.reason, progress)
    if args.command == "unlock":
        released = engine.unlock(args.environment, _requester())
        print(f"{args.environment} unlocked" if released else f"{args.environment} was not locked")
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def _sandbox_harness() -> Any:
    """The sandbox's harness package, or None (having said how to get it) when the
    sandbox is not installed: it is a package of its own, which production leaves out."""
    try:
        import deployer_sandbox.harness.demo
        import deployer_sandbox.harness.lifecycle
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("deployer_sandbox"):
            raise
        print(
            "deployer: the sandbox is not installed. It is the package deployer-sandbox in "
            "this repository's sandbox/ folder: in a clone, `uv run deployer ...` installs "
            "it (the dev group); elsewhere, `pip install ./sandbox`.",
            file=sys.stderr,
        )
        return None
    return deployer_sandbox.harness


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `deployer` console script."""
    args = parser().parse_args(argv)
    logs.configure()
    if args.command in ("sandbox", "demo"):
        harness = _sandbox_harness()
        if harness is None:
            return 2
        if args.command == "demo":
            return int(harness.demo.run(args.timeout))
        return int(
            harness.lifecycle.run(
                args.state_file,
                with_demo=not args.no_demo,
                smoke=args.smoke,
                slack_rate_scale=args.slack_rate_scale,
            )
        )
    try:
        return _run(args)
    except DeployerError as error:
        print(f"deployer: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
