"""Routes of the webhook app shared by Cloud Functions and `deployer serve`.

    GET  /healthz         {"status": "ok"}
    POST /slack/events    the request's checks, then the bolt app of the front's context
    POST /github/webhook  the request's checks, then the release handler
    anything else         404, or 405 with `Allow`

Nothing is parsed before the raw body passed its checks; refusals have generic
bodies. A signed Slack body whose fields are not what Slack sends is refused
with 400 before bolt sees it (bolt would answer 500, or fail to build its
request), and a signed `ssl_check=1` is answered 200 and goes no further. The
heavy context (config, store, clients) is built on the first request that needs
it (`context.current_context`) unless one is given, and reused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import flask

from deployer.front import request_checks
from deployer.front.settings import FrontSettings
from deployer.front.verify import Refusal

if TYPE_CHECKING:
    from deployer.front.context import FrontContext

log = logging.getLogger(__name__)

UNAVAILABLE = Refusal(503, "unavailable\n")
FAILED = Refusal(500, "internal error\n")
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _text(status: int, body: str, mimetype: str = "text/plain") -> flask.Response:
    return flask.Response(body, status=status, mimetype=mimetype)


def _refused(refusal: Refusal) -> flask.Response:
    return _text(refusal.status, refusal.body)


def _method_not_allowed(allowed: str) -> flask.Response:
    response = _text(405, "method not allowed\n")
    response.headers["Allow"] = allowed
    return response


def _context(given: FrontContext | None) -> FrontContext | None:
    if given is not None:
        return given
    from deployer.front.context import current_context

    try:
        return current_context()
    except Exception:
        log.exception("the front cannot start: check its configuration")
        return None


def healthz(request: flask.Request, context: FrontContext | None = None) -> flask.Response:
    """Liveness: answers without touching config, store or any API."""
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET, HEAD")
    return _text(200, '{"status": "ok"}\n', "application/json")


def slack_events(request: flask.Request, context: FrontContext | None = None) -> flask.Response:
    """`POST /slack/events`: slash commands and interactive buttons."""
    if request.method != "POST":
        return _method_not_allowed("POST")
    settings = context.settings if context else FrontSettings.from_environment()
    verified = request_checks.slack_request(request, settings)
    if isinstance(verified, Refusal):
        return _refused(verified)
    if request.headers.get("X-Slack-Retry-Num"):
        return _text(200, "")  # the first delivery was (or is being) handled
    ready = _context(context)
    if ready is None:
        return _refused(UNAVAILABLE)
    from deployer.front.slack_app import slack_front

    answer = slack_front(ready).handle(verified.body, verified.headers)
    response = flask.Response(answer.body, status=answer.status)
    for key, values in answer.headers.items():
        for value in values:
            response.headers[key] = value
    return response


def github_webhook(request: flask.Request, context: FrontContext | None = None) -> flask.Response:
    """`POST /github/webhook`: release events."""
    if request.method != "POST":
        return _method_not_allowed("POST")
    settings = context.settings if context else FrontSettings.from_environment()
    verified = request_checks.github_request(request, settings)
    if isinstance(verified, Refusal):
        return _refused(verified)
    ready = _context(context)
    if ready is None:
        return _refused(UNAVAILABLE)
    from deployer.front.github import handle_github

    status, text = handle_github(verified.headers, verified.body, ready)
    return _text(status, text)


Route = Callable[[flask.Request, "FrontContext | None"], flask.Response]
ROUTES: dict[str, Route] = {
    "/healthz": healthz,
    "/slack/events": slack_events,
    "/github/webhook": github_webhook,
}


def respond(request: flask.Request, context: FrontContext | None = None) -> flask.Response:
    """Answer one HTTP request of the webhook app (`context`: default, from the environment)."""
    route = ROUTES.get(request.path)
    if route is None:
        return _text(404, "not found\n")
    try:
        return route(request, context)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _refused(FAILED)


def create_app(context: FrontContext | None = None) -> flask.Flask:
    """The webhook app as a WSGI application (what `deployer serve` and the sandbox run)."""
    app = flask.Flask("deployer.front")

    def every_path(path: str = "") -> flask.Response:
        return respond(flask.request, context)

    app.add_url_rule("/", "root", every_path, methods=METHODS, provide_automatic_options=False)
    app.add_url_rule(
        "/<path:path>", "path", every_path, methods=METHODS, provide_automatic_options=False
    )
    return app
