"""The `deployer` command line: the same operations as chat, from a terminal."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from deployer import logs
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

    env = commands.add_parser("env", help="move environment variables into Secret Manager")
    env_commands = env.add_subparsers(dest="env_command", required=True, metavar="COMMAND")
    env_import = env_commands.add_parser(
        "import",
        help="a dotenv file into Secret Manager, pinned in the config",
        description="Create (or add a version to) one secret per variable of FILE, exactly as "
        "written, and pin each in [environments.ENV.secrets] of $DEPLOYER_CONFIG. "
        "Values are never printed.",
    )
    env_import.add_argument("file", metavar="FILE", type=Path, help="e.g. .env.prod")
    env_import.add_argument("--env", required=True, metavar="ENV", dest="environment")
    env_import.add_argument(
        "--prefix", metavar="NAME", help="secret ids are NAME-variable-name (default: ENV)"
    )
    env_import.add_argument(
        "--dry-run", action="store_true", help="show what would be written; change nothing"
    )

    check = commands.add_parser(
        "check", help="preflight of config, secrets, service and rights, without deploying"
    )
    check.add_argument("environment", metavar="ENV", nargs="?", help="default: every environment")
    check.add_argument("--ref", help="the ref a deploy would build (default HEAD)")

    serve = commands.add_parser(
        "serve", help="run the webhook server (the app main.py exposes) until stopped"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or 8080),
        help="default: $PORT or 8080",
    )

    worker = commands.add_parser("worker", help="run (or resume) one saved deploy by id")
    worker.add_argument("deploy_id", metavar="DEPLOY_ID")

    demo = commands.add_parser(
        "demo",
        help="watch /deploy prod unfold as a Slack thread, against the sandbox",
        description="Start the sandbox, send a signed /deploy prod as Slack would, show the "
        "thread live, then /deploy status. Exit 0 when the deploy succeeded.",
    )
    demo.add_argument(
        "--timeout", type=float, default=300.0, help="seconds the whole demo may take"
    )

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


def _check(args: argparse.Namespace) -> int:
    from deployer.adapters.permissions import GooglePermissions
    from deployer.checks import render_checks, run_checks
    from deployer.engine import default_platform

    report = run_checks(default_platform, GooglePermissions, args.environment, args.ref)
    print("\n".join(render_checks(report)))
    return 1 if report.failed else 0


def _run(args: argparse.Namespace) -> int:
    from deployer import terminal
    from deployer.engine import Engine
    from deployer.logs import log_events, wants_json
    from deployer.pipeline.events import fan_out
    from deployer.pipeline.record import State

    if args.command == "serve":
        from deployer.front.http import serve as serve_webhooks

        return serve_webhooks(args.host, args.port)
    if args.command == "env":
        return _env_import(args)
    if args.command == "check":
        return _check(args)
    engine = Engine.from_environment()
    # The terminal already tells the story; log lines repeat it only where logs are collected.
    progress = (
        fan_out(terminal.TerminalProgress(), log_events)
        if wants_json()
        else terminal.TerminalProgress()
    )
    if args.command == "deploy":
        record = engine.new_deploy(args.environment, args.ref, _requester(), args.service)
        done = engine.deploy(record, progress, dry_run=args.dry_run)
        return 0 if done.state == State.SUCCEEDED else 1
    if args.command == "rollback":
        done = engine.rollback(args.environment, args.to, _requester(), progress)
        return 0 if done.state == State.SUCCEEDED else 1
    if args.command == "worker":
        from deployer.front.worker import run_deploy

        done = run_deploy(args.deploy_id, engine, progress=terminal.TerminalProgress())
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
    logs.configure()
    if args.command == "sandbox":
        from deployer.sandbox import lifecycle

        return lifecycle.run(args.state_file, with_demo=not args.no_demo, smoke=args.smoke)
    if args.command == "demo":
        from deployer.demo import run as run_demo

        return run_demo(args.timeout)
    try:
        return _run(args)
    except DeployerError as error:
        print(f"deployer: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
