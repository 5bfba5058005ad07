"""Routes of the webhook app shared by Cloud Functions (`main.py`) and `deployer serve`.

    GET  /healthz         {"status": "ok"}
    POST /slack/events    size -> signature and timestamp -> fields (`payloads`) -> bolt (`slack_app`)
    POST /github/webhook  size -> signature -> `github.handle_github`
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
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import flask

from deployer.front import payloads, verify
from deployer.front.settings import FrontSettings
from deployer.front.verify import Refusal

if TYPE_CHECKING:
    from deployer.front.context import FrontContext
    from deployer.front.slack_app import SlackFront

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


def _headers(request: flask.Request) -> dict[str, str]:
    return dict(request.headers.items())


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
    if not settings.slack_signing_secret or not settings.slack_bot_token:
        return _refused(verify.NOT_CONFIGURED)  # never accept what cannot be verified
    body = verify.read_body(request.stream, request.content_length, settings.max_body_bytes)
    if isinstance(body, Refusal):
        return _refused(body)
    if payloads.is_ssl_check(body):
        return _text(200, "")  # Slack checking the certificate: a 200, and nothing else
    headers = _headers(request)
    refusal = verify.slack_refusal(headers, body, settings.slack_signing_secret)
    if refusal is None and not verify.is_form(request.content_type or ""):
        refusal = verify.WRONG_TYPE
    if refusal is not None:
        return _refused(refusal)
    # A slash command or a button click with every field the listeners need, as bolt reads it.
    form = payloads.slack_form(body)
    if isinstance(form, payloads.Malformed):
        log.warning("refused a signed Slack request: %s", form.reason)
        return _refused(verify.BAD_FORM)
    if isinstance(form, payloads.SslCheck):
        return _text(200, "")  # Slack checking the certificate wants a 200 and nothing else
    if request.headers.get("X-Slack-Retry-Num"):
        return _text(200, "")  # the first delivery was (or is being) handled
    front = _slack_front(_context(context))
    if front is None:
        return _refused(UNAVAILABLE)
    answer = front.handle(body, headers)
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
    if not settings.github_webhook_secret:
        return _refused(verify.NOT_CONFIGURED)
    body = verify.read_body(request.stream, request.content_length, settings.max_body_bytes)
    if isinstance(body, Refusal):
        return _refused(body)
    headers = _headers(request)
    refusal = verify.github_refusal(headers, body, settings.github_webhook_secret)
    if refusal is not None:
        return _refused(refusal)
    ready = _context(context)
    if ready is None:
        return _refused(UNAVAILABLE)
    from deployer.front.github import handle_github

    status, text = handle_github(headers, body, ready)
    return _text(status, text)


_fronts: dict[int, SlackFront] = {}
_fronts_lock = threading.Lock()


def _slack_front(context: FrontContext | None) -> SlackFront | None:
    """The bolt app of `context`, built once."""
    if context is None:
        return None
    from deployer.front.slack_app import SlackFront

    with _fronts_lock:
        front = _fronts.get(id(context))
        if front is None or front.context is not context:
            front = _fronts[id(context)] = SlackFront(context)
        return front


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


def serve(host: str, port: int) -> int:
    """`deployer serve`: the webhook app on a threaded server until SIGINT/SIGTERM."""
    import signal
    import sys

    from werkzeug.serving import make_server

    from deployer.front.context import close_contexts, current_context
    from deployer.front.sweep import Sweeper, SweepTimer

    # Fail fast on a bad configuration, and answer the first request warm.
    context = current_context()
    sweeps = SweepTimer(Sweeper(context), context.config.deployer.sweep_interval)
    server = make_server(host, port, create_app(), threaded=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            raise SystemExit(130)  # a second signal: stop waiting for running deploys
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    thread.start()
    print(f"deployer serve: listening on http://{host}:{server.server_port}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        print("deployer serve: stopping; running deploys finish first", file=sys.stderr, flush=True)
        sweeps.stop()
        close_contexts()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
