"""Each webhook's checks on a request, in order, before anything of it is handled.

Slack: a secret and a token configured, the size, then Slack's certificate
check (answered 200 unsigned, as Slack sends it), the signature and timestamp,
the content type, and the fields the listeners need, read as bolt will read
them. GitHub: a secret configured, the size, the signature. Nothing is parsed
before the raw body passed its checks; every refusal has a generic body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import flask

from deployer.front import payloads, verify
from deployer.front.settings import FrontSettings
from deployer.front.verify import Refusal

log = logging.getLogger(__name__)

# Slack checking the certificate wants a 200 and nothing else: nothing is handled.
CERTIFICATE_CHECK = Refusal(200, "")


@dataclass(frozen=True)
class Verified:
    """A request that passed its checks: the raw body and the headers it was signed with."""

    body: bytes
    headers: dict[str, str]


def _headers(request: flask.Request) -> dict[str, str]:
    return dict(request.headers.items())


def slack_request(request: flask.Request, settings: FrontSettings) -> Verified | Refusal:
    """A request to `POST /slack/events` that came from Slack, or why it is not handled."""
    if not settings.slack_signing_secret or not settings.slack_bot_token:
        return verify.NOT_CONFIGURED  # never accept what cannot be verified
    body = verify.read_body(request.stream, request.content_length, settings.max_body_bytes)
    if isinstance(body, Refusal):
        return body
    if payloads.is_ssl_check(body):
        return CERTIFICATE_CHECK
    headers = _headers(request)
    refusal = verify.slack_refusal(headers, body, settings.slack_signing_secret)
    if refusal is None and not verify.is_form(request.content_type or ""):
        refusal = verify.WRONG_TYPE
    if refusal is not None:
        return refusal
    # A slash command or a button click with every field the listeners need, as bolt reads it.
    form = payloads.slack_form(body)
    if isinstance(form, payloads.Malformed):
        log.warning("refused a signed Slack request: %s", form.reason)
        return verify.BAD_FORM
    if isinstance(form, payloads.SslCheck):
        return CERTIFICATE_CHECK
    return Verified(body, headers)


def github_request(request: flask.Request, settings: FrontSettings) -> Verified | Refusal:
    """A request to `POST /github/webhook` that came from GitHub, or why it is not handled."""
    if not settings.github_webhook_secret:
        return verify.NOT_CONFIGURED
    body = verify.read_body(request.stream, request.content_length, settings.max_body_bytes)
    if isinstance(body, Refusal):
        return body
    headers = _headers(request)
    refusal = verify.github_refusal(headers, body, settings.github_webhook_secret)
    if refusal is not None:
        return refusal
    return Verified(body, headers)
