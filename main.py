"""Cloud Functions entry points. They translate requests and hold no logic."""

from __future__ import annotations

import flask
import functions_framework

from deployer.front.http import respond


@functions_framework.http
def deployer_http(request: flask.Request) -> flask.Response:
    """Every route of the webhook app in one function (`GET /healthz`, later Slack and GitHub)."""
    return respond(request)
