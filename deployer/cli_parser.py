"""The `deployer` command line's arguments: every command, its options and its help.

Commands are added in the order `deployer --help` lists them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TypeAlias

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def parser() -> argparse.ArgumentParser:
    """The parser of `deployer COMMAND ...`."""
    parser = argparse.ArgumentParser(
        prog="deployer", description="ChatOps deployer for Google Cloud Run."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_deploy(commands)
    _add_reads(commands)
    _add_rollback_and_locks(commands)
    _add_upkeep(commands)
    _add_slack_manifest(commands)
    _add_setup(commands)
    _add_processes(commands)
    _add_sandbox(commands)
    return parser


def _add_deploy(commands: Commands) -> None:
    deploy = commands.add_parser("deploy", help="build REF and roll it out to ENV")
    deploy.add_argument("environment", metavar="ENV")
    deploy.add_argument(
        "ref", metavar="REF", nargs="?", help="branch, tag or commit (default HEAD)"
    )
    deploy.add_argument("--service", help="the service, when several are configured")
    deploy.add_argument(
        "--dry-run", action="store_true", help="run preflight and show the plan; change nothing"
    )
    deploy.add_argument(
        "--rebuild",
        action="store_true",
        help="build again even when a successful build of the same commit and build config "
        "exists (by default its image is reused)",
    )
    deploy.add_argument(
        "--break-glass",
        metavar="REASON",
        help="deploy even while ENV's deploy window is closed; the reason and who ran it "
        "(cli:USER) are recorded and shown in the thread",
    )

    promote = commands.add_parser(
        "promote",
        help="deploy what FROM serves (its image and commit, no build) to ENV",
        description="ENV must name FROM as its `promote_from`. FROM must serve one revision, "
        "healthy, and not be mid-rollout; ENV's own env, secrets and settings apply.",
    )
    promote.add_argument("source", metavar="FROM")
    promote.add_argument("environment", metavar="ENV")
    promote.add_argument(
        "--dry-run", action="store_true", help="check what would be promoted; change nothing"
    )
    promote.add_argument("--break-glass", metavar="REASON", help="as for deploy")

    approve = commands.add_parser(
        "approve",
        help="approve a deploy awaiting approval; once enough have, it moves traffic here",
    )
    approve.add_argument("deploy_id", metavar="ID")
    reject = commands.add_parser(
        "reject", help="reject a deploy awaiting approval: its tag goes, traffic stays"
    )
    reject.add_argument("deploy_id", metavar="ID")
    reject.add_argument("--reason", default="", help="shown in the thread and the record")


def _add_reads(commands: Commands) -> None:
    """What only reads the store and the cloud."""
    status = commands.add_parser("status", help="what runs where")
    status.add_argument("environment", metavar="ENV", nargs="?")
    status.add_argument("--json", action="store_true", help="a JSON list, one entry per ENV")

    history = commands.add_parser("history", help="deploys and rollbacks of ENV, newest first")
    history.add_argument("environment", metavar="ENV")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true", help="a JSON list of records")

    show = commands.add_parser("show", help="one deploy or rollback in full")
    show.add_argument("deploy_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="the record as JSON")


def _add_rollback_and_locks(commands: Commands) -> None:
    """What a person does to an environment by hand, besides deploying."""
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
    unlock.add_argument(
        "--force",
        action="store_true",
        help="clear a deploy's lock too: the deploy is abandoned, its build stopped, "
        "and the traffic that served before it put back and verified",
    )
    unlock.add_argument("--reason", default="", help="why, kept with the abandoned deploy")


def _add_upkeep(commands: Commands) -> None:
    """The operator's tools: the time-driven pass, secrets, and the preflight."""
    commands.add_parser(
        "sweep",
        help="resume or abandon deploys whose worker died, start queued deploys, drain Slack",
        description="One pass of the time-driven work (Cloud Scheduler runs it every minute).",
    )

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


def _add_slack_manifest(commands: Commands) -> None:
    """The Slack app, as a manifest to paste into api.slack.com/apps."""
    manifest = commands.add_parser(
        "slack-manifest",
        help="print the Slack app's manifest (YAML) for the front at URL",
        description="Print a Slack app manifest: the /deploy command and the buttons' "
        "interactivity, both at URL/slack/events, and the bot scopes the deployer uses. "
        "Paste it at api.slack.com/apps: Create New App, From an app manifest.",
    )
    manifest.add_argument(
        "--url",
        required=True,
        help="the front's base URL, e.g. https://REGION-PROJECT.cloudfunctions.net/deployer",
    )
    manifest.add_argument("--name", default="deployer", help="the app's name (default deployer)")


def _add_setup(commands: Commands) -> None:
    """`deployer setup`: a project made ready for the deployer, idempotently."""
    setup = commands.add_parser(
        "setup",
        help="create or correct everything the deployer needs on a Google Cloud project",
        description="Enable the APIs, create the accounts, grant least privilege, create the "
        "Firestore database, store the secrets, the worker job, the sweep and the front. Each step "
        "prints planned, changed or unchanged; a second run changes nothing. Secrets are "
        "read from --secrets-file or standard input (SLACK_SIGNING_SECRET=..., "
        "SLACK_BOT_TOKEN=..., GITHUB_WEBHOOK_SECRET=...), never from arguments.",
    )
    setup.add_argument("--project", required=True, metavar="P")
    setup.add_argument("--region", required=True, metavar="R", help="e.g. europe-west1")
    setup.add_argument(
        "--config",
        type=Path,
        help="deployer.toml (default: $DEPLOYER_CONFIG); stored as the secret deployer-config",
    )
    setup.add_argument(
        "--secrets-file",
        type=Path,
        metavar="FILE",
        help="dotenv file of the secrets (default: standard input)",
    )
    setup.add_argument(
        "--image",
        help="run this image of the deployer instead of building one from this checkout's "
        "root Dockerfile with Cloud Build",
    )
    setup.add_argument(
        "--front",
        choices=("function", "run"),
        default="function",
        help="how the front is deployed: a Cloud Functions 2nd-gen function built from "
        "this checkout's main.py (default), or a Cloud Run service running the deployer's "
        "image (run)",
    )
    setup.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")


def _add_processes(commands: Commands) -> None:
    """The long-running front and the one-deploy worker."""
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


def _add_sandbox(commands: Commands) -> None:
    """The local cloud and the demo that runs against it."""
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
    sandbox.add_argument(
        "--slack-rate-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="Slack's rate limits, X times faster (default 1: Slack's own; 0: no limits)",
    )
