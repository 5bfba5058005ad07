"""A failure's detail as people read it: redacted of secrets, its key lines first.

Quoted output (a crashed container's lines, a failed build's output, a health answer)
reaches the Slack thread, the terminal, the store and the logs; none of them may show
a secret, and each shows the error and the port before the rest of the tail.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud.logging_v2.types import LogEntry
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from deployer.adapters.cloud_logging import RevisionLogs
from deployer.adapters.health import HttpHealth
from deployer.config import HealthCheck
from deployer.failure_detail import DETAIL_LINES, GAP, excerpt
from deployer.front import deploy_messages
from deployer.front.mrkdwn import detail_block
from deployer.front.outbox import Outbox
from deployer.pipeline.events import StageFinished
from deployer.pipeline.record import DeployRecord, Outcome, Stage, StageResult, State
from deployer.redaction import REDACTED, redact
from deployer.terminal import TerminalProgress, render_record
from tests.engine_world import World, _seed_secret, world_fixture  # noqa: F401
from tests.slack_thread_text import read_messages
from tests.test_front_thread import (  # noqa: F401  (fixtures)
    channel,
    deploy_in_thread,
    outbox,
    slack,
    thread_of,
)

# What Cloud Run says of a revision that never listened; the container's words follow.
CLOUD_RUN = (
    "The user-provided container failed to start and listen on the port defined provided "
    "by the PORT=8080 environment variable within the allocated timeout. Logs for this "
    "revision might contain more information."
)
UVICORN = "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)"


class TeamSettings(BaseSettings):
    """A team's settings as pydantic-settings writes them by default: inputs shown in errors."""

    model_config = SettingsConfigDict(extra="ignore")

    mongodb_url: str
    secret_key: SecretStr
    sentry_dsn: str = ""
    port: int = Field(default=8080)


def validation_error(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> str:
    """The text pydantic-settings gives when the environment lacks MONGODB_URL."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MONGODB_URL", raising=False)
    with pytest.raises(ValidationError) as caught:
        TeamSettings()
    return str(caught.value)


def failed(stage: Stage, detail: str) -> StageResult:
    return StageResult(stage, Outcome.FAILED, 0.0, 12.0, f"{stage} failed", detail)


def record_with(*results: StageResult) -> DeployRecord:
    return DeployRecord(
        id="d-details",
        kind="deploy",
        environment="prod",
        service="backend",
        requester="slack:U0TESTER1",
        state=State.FAILED,
        stages=list(results),
    )


# --- redaction ---------------------------------------------------------------------------


def test_pydantic_input_dumps_are_redacted_and_its_error_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = 'q9,Z=x"y' + secrets.token_hex(8)
    dsn = f"https://{secrets.token_hex(8)}@o1.ingest.sentry.io/42"
    text = validation_error(monkeypatch, {"SECRET_KEY": key, "SENTRY_DSN": dsn})
    assert "input_value=" in text and key[:8] in text  # pydantic quotes the inputs

    shown = redact(text)

    assert key[:8] not in shown and dsn[8:24] not in shown
    assert "mongodb_url" in shown
    assert f"Field required [type=missing, input_value={REDACTED}, input_type=dict]" in shown
    assert "errors.pydantic.dev" in shown


def test_known_values_are_redacted_however_they_are_quoted() -> None:
    token = "tok'en-" + secrets.token_hex(6)
    text = "\n".join(
        [
            f"using {token} as given",
            f"settings: {{'api_token': {token!r}}}",
            f'{{"api_token": {json.dumps(token)}}}',
            "LOG_LEVEL is info; region europe-west1",
            # Cloud Logging's clip cut the value: its start is not shown either.
            f"a long line that ends in {token[:9]}…",
        ]
    )

    shown = redact(text, [token, "info", "europe-west1"])

    assert token[:9] not in shown
    assert "using [redacted] as given" in shown
    # Under six characters a value is a word ("info"), not a secret: it stays.
    assert "LOG_LEVEL is info; region [redacted]" in shown
    assert shown.splitlines()[-1] == f"a long line that ends in {REDACTED}…"


@pytest.mark.parametrize(
    ("line", "secret", "kept"),
    [
        (
            "pymongo: cannot reach mongodb://app:pw-s3cr3t@db.internal:27017/content",
            "pw-s3cr3t",
            "mongodb://app:",
        ),
        ("auth header: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGci", "Bearer"),
        ("slack_sdk: token xoxb-123456789012-abcdefABCDEF rejected", "xoxb-1234", "rejected"),
        ("git: using ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "ghp_A1b2", "git: using"),
        ("boto3: AKIAIOSFODNN7EXAMPLE has no access", "AKIAIOSFODNN7EXAMPLE", "has no access"),
        ("DB_PASSWORD=hunter2-x DEBUG=1", "hunter2-x", "DEBUG=1"),
        ('config {"secret": "a b\\" c", "region": "eu"}', "a b", '"region": "eu"'),
        ("stripe api_key: sk_live_abcdef", "sk_live_abcdef", "stripe api_key:"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI", "aws_"),
    ],
)
def test_credential_shapes_are_redacted(line: str, secret: str, kept: str) -> None:
    shown = redact(line)
    assert secret not in shown and REDACTED in shown and kept in shown


def test_private_keys_are_redacted_whole_even_when_cut_off() -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
    whole = f"loading key\n-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\nok"
    assert redact(whole) == f"loading key\n{REDACTED}\nok"
    # The log's tail began inside the key, or ended before its end.
    assert redact(f"{body}\n-----END PRIVATE KEY-----\nValueError: bad key") == (
        f"{REDACTED}\nValueError: bad key"
    )
    assert redact(f"ValueError: bad key\n-----BEGIN RSA PRIVATE KEY-----\n{body}") == (
        f"ValueError: bad key\n{REDACTED}"
    )


def test_ordinary_output_is_left_as_it_is() -> None:
    text = "\n".join(
        [
            UVICORN,
            "ERROR:    [Errno 98] error while attempting to bind on address ('0.0.0.0', 8000)",
            "max_tokens=100 monkey=3 tokenizer=bpe",
            "  Field required [type=missing]",
        ]
    )
    assert redact(text, ["8000", "ab"]) == text


def test_revision_logs_are_redacted_before_a_long_line_is_clipped() -> None:
    token = "SECRETVALUE" + secrets.token_hex(16)
    # Clipped at 500 characters where the token starts: clipped first, "SECRETVA" would stay.
    long_line = "x" * 481 + f" token is {token}"

    class Logging:
        def list_log_entries(self, **_: Any) -> Iterator[LogEntry]:
            # Newest first, as the request asks.
            yield LogEntry(text_payload="Container called exit(1).")
            yield LogEntry(text_payload=long_line)
            yield LogEntry(text_payload="-----END PRIVATE KEY-----")
            yield LogEntry(text_payload="MIIEvQIBADANBgkqhkiG9w0BAQEFAASC")
            yield LogEntry(text_payload="-----BEGIN PRIVATE KEY-----")

    service: Any = type("Service", (), {"project": "p", "service": "s"})()
    logs = RevisionLogs(Logging())  # type: ignore[arg-type]
    lines = logs.tail(service, "s-1", 5, 5.0, known=[token])

    assert lines[0] == REDACTED
    assert lines[1] == "x" * 481 + " token is [redacte…"
    assert "SECRETVA" not in "\n".join(lines)
    assert lines[-1] == "Container called exit(1)."


def test_a_health_answer_is_quoted_without_the_revisions_values() -> None:
    """A candidate whose /health prints what it was given, probed over HTTP as a deploy
    probes it: what reaches the progress lines, the message and the body is redacted."""
    token = f"tok-{secrets.token_hex(8)}"
    answer = json.dumps(
        {"status": "degraded", "token": token, "dsn": "postgres://app:pw-123456@db/x"}
    ).encode()

    class Candidate(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Candidate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    told: list[str] = []
    try:
        health = HttpHealth().redacting([token])
        check = HealthCheck(consecutive=1, failures=1, interval=0.05, request_timeout=2.0)
        url = f"http://127.0.0.1:{server.server_port}/health"
        outcome = health.check(url, check, "abc", 5.0, "", told.append)
    finally:
        server.shutdown()
        server.server_close()

    assert not outcome.ok and outcome.status == 500
    said = "\n".join([*told, outcome.message, outcome.body])
    assert token not in said and "pw-123456" not in said
    assert "[redacted]" in outcome.body and "degraded" in outcome.body


# --- key lines first --------------------------------------------------------------------


def crash_detail(error: str, chatter: int = 20) -> str:
    """Cloud Run's message, then a container that said where it listens, failed, and went
    on logging."""
    output = [UVICORN, "INFO:     Waiting for application startup.", *error.splitlines()]
    output += [f"INFO:     retrying the database, attempt {n}" for n in range(chatter)]
    return f"{CLOUD_RUN}\n\nContainer output (last {len(output)} lines):\n" + "\n".join(output)


def test_the_error_and_the_port_come_before_the_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    error = redact(validation_error(monkeypatch, {"SECRET_KEY": "s" * 12}))
    detail = crash_detail(error)

    shown = excerpt(detail).lines()

    assert len(shown) == DETAIL_LINES
    gap = shown.index(GAP)
    assert shown[:gap] == [
        CLOUD_RUN,
        UVICORN,
        "1 validation error for TeamSettings",
        "mongodb_url",
        f"  Field required [type=missing, input_value={REDACTED}, input_type=dict]",
    ]
    assert shown[gap + 1 :] == detail.splitlines()[-(DETAIL_LINES - gap - 1) :]
    assert shown[-1] == "INFO:     retrying the database, attempt 19"


def test_a_tracebacks_exception_is_a_key_line_and_its_code_is_not() -> None:
    traceback = "\n".join(
        [
            "Traceback (most recent call last):",
            '  File "/app/app/main.py", line 12, in <module>',
            "    raise ConfigError('DATABASE_URL')",
            '  File "/app/app/db.py", line 3, in connect',
            "    except Exception:",
            "app.config.ConfigMissing: DATABASE_URL is not set",
        ]
    )
    detail = traceback + "\n" + "\n".join(f"worker {n} exited" for n in range(20))

    shown = excerpt(detail).lines()

    assert shown[:2] == ["app.config.ConfigMissing: DATABASE_URL is not set", GAP]
    assert not any("raise" in line or "except" in line for line in shown)


def test_a_short_detail_or_one_without_key_lines_shows_as_before() -> None:
    short = "\n".join(f"step {n}" for n in range(DETAIL_LINES))
    assert excerpt(short).lines() == short.splitlines()
    long = "\n".join(f"step {n}" for n in range(40))
    assert excerpt(long).lines() == long.splitlines()[-DETAIL_LINES:]
    # A key line the tail shows anyway is not repeated above it.
    ending = long + "\nError: step 40 failed"
    assert excerpt(ending).lines() == ending.splitlines()[-DETAIL_LINES:]


def test_key_lines_take_at_most_half_the_budget() -> None:
    errors = [f"ValueError: bad value {n}" for n in range(30)]
    detail = "\n".join([*errors, *(f"tail {n}" for n in range(30))])

    shown = excerpt(detail).lines()

    assert len(shown) == DETAIL_LINES
    assert shown[: DETAIL_LINES // 2] == errors[: DETAIL_LINES // 2]
    assert shown[DETAIL_LINES // 2] == GAP
    assert shown[-1] == "tail 29"


def test_terminal_and_slack_show_the_same_lines_within_their_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = redact(validation_error(monkeypatch, {"SECRET_KEY": "s" * 12}))
    result = failed(Stage.READY, crash_detail(error))
    record = record_with(result)

    out = io.StringIO()
    TerminalProgress(out)(StageFinished(record, result))
    printed = [line.split("| ", 1)[1] for line in out.getvalue().splitlines() if "| " in line]
    shown = [line.split("| ", 1)[1] for line in render_record(record).splitlines() if "| " in line]
    reply = deploy_messages.stage_reply(record, result)
    assert reply is not None
    quoted = reply.blocks[0]["text"]["text"].split("```")[1].strip("\n").splitlines()

    assert printed == shown == excerpt(result.detail).lines()
    assert quoted == [line.replace("&", "&amp;") for line in printed]
    assert "  Field required [type=missing, input_value=[redacted], input_type=dict]" in quoted
    assert CLOUD_RUN in quoted and UVICORN in quoted


def test_slack_drops_the_oldest_tail_lines_first_to_fit() -> None:
    detail = "\n".join(["KeyError: 'MONGODB_URL'", *(f"{n:02d} " + "x" * 200 for n in range(30))])

    block = detail_block(detail).split("\n")[1:-1]

    assert block[:2] == ["KeyError: 'MONGODB_URL'", GAP]
    assert block[-1].startswith("29 ") and len("\n".join(block)) <= 1800


# --- end to end ----------------------------------------------------------------------------


def test_a_crashed_revisions_secrets_stay_out_of_the_thread_and_the_terminal(
    world: World,
    sandbox: Sandbox,
    outbox: Outbox,  # noqa: F811
    channel: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="deployer")
    # The team's app: pydantic-settings' defaults (inputs shown in errors), the error
    # uncaught, and a setting given as a plain variable in the config.
    settings = world.repo / "service" / "app" / "settings.py"
    text = settings.read_text(encoding="utf-8")
    text = text.replace("hide_input_in_errors=True", "hide_input_in_errors=False")
    text = text.replace(
        "    secret_key: SecretStr\n", '    secret_key: SecretStr\n    sentry_dsn: str = ""\n'
    )
    settings.write_text(text, encoding="utf-8")
    main = world.repo / "service" / "app" / "__main__.py"
    text = main.read_text(encoding="utf-8")
    main.write_text(text.replace("        return 1\n", "        raise\n", 1), encoding="utf-8")
    dsn = f'https://q9,Z=x"y{secrets.token_hex(8)}@o1.ingest.sentry.io/42'
    # MONGODB_URL empty: given, so the preflight lets it through, but refused by the app.
    engine = world.reconfigure(
        environment={
            "secrets": {"MONGODB_URL": None},
            "env": {"SENTRY_DSN": dsn, "MONGODB_URL": ""},
        }
    )
    world.commit("a team's settings, without the database")

    record, events = deploy_in_thread(world, outbox, channel, engine)

    assert record.state == State.FAILED
    ready = record.stage(Stage.READY)
    assert ready is not None and ready.outcome == Outcome.FAILED
    terminal = world.note(events.text.getvalue())
    thread = thread_of(world, sandbox, record)
    raw = "\n".join(_strings(read_messages(sandbox.http.url, channel)))
    for shown in (terminal, thread, raw):
        assert "Field required" in shown and "mongodb_url" in shown
        assert "PORT=" in shown  # Cloud Run's words on what the app should listen on
        assert "input_value=[redacted]" in shown
    # The deployer's own logs (what Cloud Logging would keep of the worker) too.
    for shown in (terminal, raw, ready.detail, world.records_text(), caplog.text):
        assert dsn not in shown and dsn[8:20] not in shown
        for secret_id, value in world.secret_values.items():
            assert value not in shown and value[:12] not in shown, secret_id


def test_a_failed_builds_output_hides_every_value_the_deploy_read(world: World) -> None:
    # A dotenv secret: API_TOKEN reaches the revision; SECRET_KEY is skipped (a secret
    # reference sets it) though it was read. And a plain variable from the config.
    token, skipped = f"tok-{secrets.token_hex(12)}", f"old-key-{secrets.token_hex(12)}"
    dotenv = f"API_TOKEN={token}\nSECRET_KEY={skipped}\n"
    world.secret_values["backend-dotenv"] = token
    world.secret_values["backend-dotenv, skipped"] = skipped
    _seed_secret(world.secret_manager, world.project, "backend-dotenv", dotenv)
    plain = f"plain-{secrets.token_hex(12)}"
    engine = world.reconfigure(
        environment={"env_from_secret": "backend-dotenv", "env": {"FEATURE_SEED": plain}}
    )
    world.commit("a build step that echoes its environment")
    world.sandbox.faults.arm(
        "build_fail",
        step="build",
        message=f"npm ERR! cannot reach the API: {token} {skipped} {plain}",
    )

    record, events = world.deploy(engine=engine)

    build = record.stage(Stage.BUILD)
    assert record.state == State.FAILED and build is not None
    terminal = events.text.getvalue()
    for shown in (build.detail, terminal):
        assert "npm ERR! cannot reach the API: [redacted] [redacted] [redacted]" in shown
    world.assert_no_secrets(terminal, build.detail)
    assert plain not in terminal + world.records_text()


def _strings(found: Any) -> Iterator[str]:
    """Every string in a JSON value: what Slack would render, unescaped."""
    if isinstance(found, str):
        yield found
    elif isinstance(found, dict):
        for value in found.values():
            yield from _strings(value)
    elif isinstance(found, list):
        for value in found:
            yield from _strings(value)
