"""Cloud Functions entry points. They translate requests and hold no logic."""

from __future__ import annotations

import flask
import functions_framework

from deployer import logs
from deployer.front import http

# Structured JSON lines on Cloud Functions / Cloud Run (K_SERVICE is set there).
logs.configure()


@functions_framework.http
def deployer_http(request: flask.Request) -> flask.Response:
    """Every route in one function: `POST /slack/events`, `POST /github/webhook`, `GET /healthz`."""
    return http.respond(request)


@functions_framework.http
def slack_events(request: flask.Request) -> flask.Response:
    """Slack's slash commands and button clicks, whatever path the function is deployed at."""
    return http.slack_events(request)


@functions_framework.http
def github_webhook(request: flask.Request) -> flask.Response:
    """GitHub's webhook deliveries, whatever path the function is deployed at."""
    return http.github_webhook(request)
