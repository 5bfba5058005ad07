"""Routes of the webhook app shared by Cloud Functions (`main.py`) and `deployer serve`.

Only `GET /healthz` is served so far; Slack and GitHub routes answer 404 until
the chat front is built.
"""

from __future__ import annotations

import flask


def respond(request: flask.Request) -> flask.Response:
    """Answer one HTTP request."""
    if request.path == "/healthz":
        if request.method != "GET":
            return flask.Response("method not allowed\n", status=405, mimetype="text/plain")
        return flask.Response('{"status": "ok"}\n', status=200, mimetype="application/json")
    return flask.Response("not found\n", status=404, mimetype="text/plain")
