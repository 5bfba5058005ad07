"""The sandbox's HTTP front: the Slack Web API sink and the control endpoint.

    POST /api/<method>              Slack Web API (slack_sdk.WebClient base_url=URL/api/)
    POST /response/<id>             a Slack response_url (slack_sdk.webhook.WebhookClient)
    POST /upload/v1/<token>         the upload URL files.getUploadURLExternal gave: a file's
                                    bytes, raw or as a multipart form's file (`slack.files`)
    GET  /_sandbox/health           {"ok": true}
    GET|DELETE /_sandbox/messages   every message posted (?channel=, ?thread_ts=) / clear
    GET  /_sandbox/calls            every Web API call, token removed
    GET  /_sandbox/slack/files      every file shared (?channel=, ?thread_ts=): channel,
                                    thread_ts, filename, title, length, sha256, and the
                                    bytes as content_base64
    POST /_sandbox/response_urls    mint a response_url
    GET|POST|DELETE /_sandbox/faults  list / arm / clear faults (see `common.faults`)
    POST /_sandbox/traffic          send loopback traffic to a Cloud Run service's URL and
                                    answer its status counts once done
                                    (see `cloud_run.loopback_traffic`)
    GET  /_sandbox/rate_limits      the rate limits enforced (see `slack.rate_limits`)
    *    /github/...                GitHub's REST API for deployments (see `github.api`)
    GET|DELETE /_sandbox/github     every GitHub REST call, token never recorded / clear

A Web API call meets, in this order: an armed `slack_latency` (a sleep, then
on), an armed `slack_429` or `slack_5xx` (answered before the token is even
looked at, so slack_sdk's retry handlers meet them exactly as they would meet
Slack; with `after_post` the call is performed first and its answer lost; a
fault with a `method` hits only calls of that method), then the token, then
Slack's rate limits: a call over its method's limit is answered 429 with
`Retry-After` and is not performed. Then an armed `slack_error` for the method
answers `{"ok": false, "error": ...}` in its place; otherwise the method runs.
"""

from __future__ import annotations

import json
import logging
import time
from email.message import Message as Headers
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from deployer_sandbox.cloud_run.loopback_traffic import (
    LoopbackTraffic,
    TrafficError,
    TrafficRequest,
)
from deployer_sandbox.common.faults import FaultError, Faults
from deployer_sandbox.common.serving import Serving
from deployer_sandbox.github.api import GitHubApi
from deployer_sandbox.github.state import GitHubState
from deployer_sandbox.harness.http_bodies import (
    HttpError,
    Response,
    form_fields,
    form_file,
    json_answer,
    json_object,
    ratelimited,
    text_answer,
)
from deployer_sandbox.harness.http_wire import HttpServer
from deployer_sandbox.slack.rate_limits import SlackRateLimits
from deployer_sandbox.slack.sink import METHODS, SlackError, SlackSink

log = logging.getLogger(__name__)


class SandboxHttp:
    """Serves the Slack sink and the control endpoint on one port (bound at construction).

    `rate_limits` defaults to Slack's real limits (`SlackRateLimits(scale=1.0)`).
    """

    def __init__(
        self,
        faults: Faults,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        sink: SlackSink | None = None,
        rate_limits: SlackRateLimits | None = None,
        github: GitHubState | None = None,
        traffic: LoopbackTraffic | None = None,
    ) -> None:
        """`traffic`: what `POST /_sandbox/traffic` sends with (None: it answers 404)."""
        self.faults = faults
        self.traffic = traffic
        self.github = github if github is not None else GitHubState()
        self._github_api = GitHubApi(self.github)
        self.sink = sink if sink is not None else SlackSink()
        self.rate_limits = rate_limits if rate_limits is not None else SlackRateLimits()
        self._server = HttpServer((host, port), self)
        self.url = f"http://{host}:{self._server.server_address[1]}"
        # files.getUploadURLExternal answers upload URLs served here.
        self.sink.file_store.upload_base = self.url
        self._serving = Serving(self._server, "sandbox-http", poll_interval=0.2)

    def start(self) -> None:
        """Serve on a daemon thread."""
        self._serving.start()

    def close(self) -> None:
        """Stop serving and release the port. Safe to call twice."""
        self._serving.close()

    def mint_response_url(
        self, channel: str | None = None, user: str | None = None, message_ts: str | None = None
    ) -> str:
        """A fresh response_url served here, as Slack puts in a slash command or action payload."""
        return self.sink.open_response_url(
            self.url, channel=channel, user=user, message_ts=message_ts
        )

    # -- routing ---------------------------------------------------------------

    def handle(self, verb: str, target: str, headers: Headers, body: bytes) -> Response:
        """Answer one request (body already read and size-checked)."""
        parts = urlsplit(target)
        path, query = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
        if path.startswith("/api/"):
            self._allow(verb, ("GET", "POST"))
            return self._api(path.removeprefix("/api/"), query, headers, body)
        if path.startswith("/response/"):
            self._allow(verb, ("POST",))
            return self._response_url(path.removeprefix("/response/"), body)
        if path.startswith("/upload/v1/"):
            self._allow(verb, ("POST",))
            return self._upload(path.removeprefix("/upload/v1/"), headers, body)
        if path.startswith("/github/"):
            # URLs in answers use the host the caller reached (GitHub's: api.github.com).
            base = f"http://{headers.get('Host') or self.url.removeprefix('http://')}/github"
            return self._github_api.handle(
                verb, path.removeprefix("/github"), query, headers, body, base
            )
        routes = {
            "/_sandbox/health": ("GET",),
            "/_sandbox/messages": ("GET", "DELETE"),
            "/_sandbox/calls": ("GET",),
            "/_sandbox/slack/files": ("GET",),
            "/_sandbox/response_urls": ("POST",),
            "/_sandbox/faults": ("GET", "POST", "DELETE"),
            "/_sandbox/rate_limits": ("GET",),
            "/_sandbox/github": ("GET", "DELETE"),
            "/_sandbox/traffic": ("POST",),
        }
        if path not in routes:
            raise HttpError(404, f"no route for {verb} {path}")
        self._allow(verb, routes[path])
        if path == "/_sandbox/health":
            return json_answer(200, {"ok": True})
        if path == "/_sandbox/messages":
            if verb == "DELETE":
                self.sink.clear()
                return 204, {}, b""
            return json_answer(
                200, self.sink.messages(query.get("channel"), query.get("thread_ts"))
            )
        if path == "/_sandbox/calls":
            return json_answer(200, self.sink.calls())
        if path == "/_sandbox/slack/files":
            return json_answer(
                200, self.sink.shared_files(query.get("channel"), query.get("thread_ts"))
            )
        if path == "/_sandbox/response_urls":
            return self._mint(body)
        if path == "/_sandbox/rate_limits":
            return json_answer(200, self.rate_limits.table())
        if path == "/_sandbox/github":
            if verb == "DELETE":
                self.github.clear_calls()
                return 204, {}, b""
            return json_answer(200, self.github.calls())
        if path == "/_sandbox/traffic":
            return self._traffic(body)
        return self._faults(verb, body)

    @staticmethod
    def _allow(verb: str, allowed: tuple[str, ...]) -> None:
        if verb not in allowed:
            raise HttpError(405, f"use {' or '.join(allowed)}", {"Allow": ", ".join(allowed)})

    def _faults(self, verb: str, body: bytes) -> Response:
        if verb == "GET":
            return json_answer(200, self.faults.snapshot())
        if verb == "DELETE":
            self.faults.clear()
            return 204, {}, b""
        request = json_object(body, "fault request")
        kind = request.pop("kind", None)
        if not isinstance(kind, str):
            raise HttpError(400, 'fault request needs "kind", e.g. {"kind": "slack_429"}')
        try:
            fault = self.faults.arm(kind, **request)
        except FaultError as error:
            raise HttpError(400, str(error)) from None
        return json_answer(201, fault.to_json())

    def _traffic(self, body: bytes) -> Response:
        if self.traffic is None:
            raise HttpError(404, "this sandbox serves no Cloud Run services to send traffic to")
        try:
            request = TrafficRequest.parse(json_object(body, "traffic request"))
            return json_answer(200, self.traffic.send(request))
        except TrafficError as error:
            raise HttpError(error.status, str(error)) from None

    def _mint(self, body: bytes) -> Response:
        request = json_object(body, "response_url request")
        fields = {key: request.get(key) for key in ("channel", "user", "message_ts")}
        for key, value in fields.items():
            if value is not None and not isinstance(value, str):
                raise HttpError(400, f"{key} must be a string")
        url = self.mint_response_url(fields["channel"], fields["user"], fields["message_ts"])
        return json_answer(201, {"response_url": url})

    def _response_url(self, token: str, body: bytes) -> Response:
        payload: dict[str, Any] = {}
        try:
            payload = json_object(body, "payload")
        except HttpError:
            status, answer = 400, "invalid_payload"
        else:
            status, answer = self.sink.respond(token, payload)
        self.sink.record_call("response_url", payload, status, None if status == 200 else answer)
        return text_answer(status, answer)

    def _upload(self, token: str, headers: Headers, body: bytes) -> Response:
        """A file's bytes POSTed to its upload URL: "Files can be sent as raw bytes or can be
        multipart form encoded" (https://api.slack.com/methods/files.getUploadURLExternal)."""
        content = body
        content_type = headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() == "multipart/form-data":
            content = form_file(content_type, body)
        status, answer = self.sink.receive_upload(token, content)
        # The token is the upload's capability: recorded by its length only.
        self.sink.record_call(
            "upload", {"length": len(content)}, status, None if status == 200 else answer
        )
        return text_answer(status, answer)

    # -- Slack Web API ---------------------------------------------------------

    def _api(self, method: str, query: dict[str, str], headers: Headers, body: bytes) -> Response:
        params: dict[str, Any] = dict(query)
        parse_error: str | None = None
        try:
            params.update(self._api_body(headers.get("Content-Type", ""), body))
        except SlackError as error:
            parse_error = error.code
        token = params.pop("token", None)
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ").strip()

        if fault := self.faults.take("slack_latency"):
            time.sleep(int(fault.params["ms"]) / 1000)
        if fault := self.faults.take("slack_429", method=method):
            if fault.params.get("after_post"):
                self._perform(method, params, token, parse_error)
            self.sink.record_call(method, params, 429, "ratelimited")
            return ratelimited(fault.params.get("retry_after", 1))
        if fault := self.faults.take("slack_5xx", method=method):
            status = int(fault.params.get("status", 503))
            if fault.params.get("after_post"):
                self._perform(method, params, token, parse_error)
            self.sink.record_call(method, params, status, "server_error")
            return text_answer(status, f"sandbox: injected {status} for {method}\n")

        response, failure = self._perform(method, params, token, parse_error)
        self.sink.record_call(method, params, response[0], failure)
        return response

    def _perform(
        self, method: str, params: dict[str, Any], token: str | None, parse_error: str | None
    ) -> tuple[Response, str | None]:
        """Check the call, its rate limits, then run it: the answer and its error, if any."""
        answer: dict[str, Any]
        headers: dict[str, str] = {}
        try:
            if parse_error:
                raise SlackError(parse_error)
            if method not in METHODS:
                raise SlackError("unknown_method")
            self.sink.check_token(token)
            # Slack names a valid token's scopes on every answer, ok or not (the only way
            # to read them through the API: slack-ruby-client#378; @slack/web-api reads
            # it into response_metadata.scopes).
            headers["x-oauth-scopes"] = ",".join(sorted(self.sink.scopes()))
            retry_after = self.rate_limits.take(method, self._channel_key(params))
            if retry_after is not None:
                # Slack's own 429: the call is not performed.
                return ratelimited(retry_after), "ratelimited"
            if fault := self.faults.take("slack_error", method=method):
                # Slack's refusal of an authenticated call, answered as Slack
                # answers every API error: HTTP 200, ok false; nothing is done.
                raise SlackError(str(fault.params["error"]))
            answer = self.sink.call(method, params)
        except SlackError as error:
            answer = {"ok": False, "error": error.code, **error.details}
            if error.code == "unknown_method":
                answer["req_method"] = method
        # Slack answers API errors with HTTP 200 and ok: false.
        return json_answer(200, answer, headers), None if answer["ok"] else answer["error"]

    def _channel_key(self, params: dict[str, Any]) -> str | None:
        """The channel a call names, by id when the workspace knows it (a name or #name too)."""
        channel = params.get("channel")
        if channel is None or channel == "":
            return None
        return self.sink.channel_id(str(channel)) or str(channel)

    @staticmethod
    def _api_body(content_type: str, body: bytes) -> dict[str, Any]:
        """Arguments from a JSON, form-encoded or multipart body."""
        if not body.strip():
            return {}
        kind = content_type.split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                value = json.loads(body)
            except ValueError:
                raise SlackError("invalid_json") from None
            if not isinstance(value, dict):
                raise SlackError("json_not_object")
            return value
        if kind == "multipart/form-data":
            return form_fields(content_type, body)
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
