"""The `deployer` command line: the same operations as chat, from a terminal."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from deployer.errors import DeployerError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deployer", description="ChatOps deployer for Google Cloud Run."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    deploy = commands.add_parser("deploy", help="build REF and roll it out to ENV")
    deploy.add_argument("environment", metavar="ENV")
    deploy.add_argument(
        "ref", metavar="REF", nargs="?", help="branch, tag or commit (default HEAD)"
    )
    deploy.add_argument("--service", help="the service, when several are configured")
    deploy.add_argument(
        "--dry-run", action="store_true", help="run preflight and show the plan; change nothing"
    )

    status = commands.add_parser("status", help="what runs where")
    status.add_argument("environment", metavar="ENV", nargs="?")

    history = commands.add_parser("history", help="deploys and rollbacks of ENV, newest first")
    history.add_argument("environment", metavar="ENV")
    history.add_argument("--limit", type=int, default=20)

    rollback = commands.add_parser(
        "rollback", help="move ENV's traffic back to an earlier revision"
    )
    rollback.add_argument("environment", metavar="ENV")
    rollback.add_argument("--to", metavar="REVISION", help="default: the previous ready revision")

    lock = commands.add_parser("lock", help="stop others from deploying to ENV")
    lock.add_argument("environment", metavar="ENV")
    lock.add_argument("--reason", default="")

    unlock = commands.add_parser("unlock", help="release ENV's lock")
    unlock.add_argument("environment", metavar="ENV")

    worker = commands.add_parser("worker", help="run (or resume) one saved deploy by id")
    worker.add_argument("deploy_id", metavar="DEPLOY_ID")

    sandbox = commands.add_parser(
        "sandbox",
        help="run the local cloud (Cloud Build, Cloud Run, Secret Manager, Slack) until stopped",
        description="Run the local cloud until SIGINT/SIGTERM; every child process ends with it.",
    )
    sandbox.add_argument(
        "--state-file",
        type=Path,
        help="write the sandbox's addresses and demo here (JSON) once ready",
    )
    sandbox.add_argument(
        "--no-demo", action="store_true", help="start empty: no demo secrets, build or service"
    )
    sandbox.add_argument(
        "--smoke",
        action="store_true",
        help="check the demo service answers /health with the commit it was built from, then exit",
    )
    return parser


def _requester() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _run(args: argparse.Namespace) -> int:
    from deployer import terminal
    from deployer.engine import Engine
    from deployer.pipeline.record import State

    engine = Engine.from_environment()
    if args.command == "deploy":
        record = engine.new_deploy(args.environment, args.ref, _requester(), args.service)
        done = engine.deploy(record, terminal.TerminalProgress(), dry_run=args.dry_run)
        return 0 if done.state == State.SUCCEEDED else 1
    if args.command == "rollback":
        done = engine.rollback(args.environment, args.to, _requester(), terminal.TerminalProgress())
        return 0 if done.state == State.SUCCEEDED else 1
    if args.command == "worker":
        done = engine.resume(args.deploy_id, terminal.TerminalProgress())
        return 0 if done.state == State.SUCCEEDED else 1
    if args.command == "status":
        statuses = engine.status(args.environment)
        print(terminal.render_status(statuses))
        return 0 if all(not s.problem for s in statuses) else 1
    if args.command == "history":
        print(
            terminal.render_history(args.environment, engine.history(args.environment, args.limit))
        )
        return 0
    if args.command == "lock":
        held = engine.lock(args.environment, _requester(), args.reason)
        if held.holder != _requester():
            print(f"{args.environment} is already locked by {held.holder}", file=sys.stderr)
            return 1
        print(f"{args.environment} locked")
        return 0
    if args.command == "unlock":
        released = engine.unlock(args.environment, _requester())
        print(f"{args.environment} unlocked" if released else f"{args.environment} was not locked")
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `deployer` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "sandbox":
        from deployer.sandbox import lifecycle

        return lifecycle.run(args.state_file, with_demo=not args.no_demo, smoke=args.smoke)
    try:
        return _run(args)
    except DeployerError as error:
        print(f"deployer: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
