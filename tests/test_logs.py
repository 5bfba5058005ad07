"""Logs: JSON lines Cloud Logging reads, plain text at a terminal, secrets never printed."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest
from deployer_sandbox.harness.seed import Demo

from deployer import cli, logs
from deployer.pipeline.events import DeployFinished, StageFinished, StageStarted
from deployer.pipeline.record import DeployRecord, Outcome, Stage, StageResult, State

SIGNING_SECRET = "8f14e45fceea167a5a36dedd4bea2543"


def _capture(environ: dict[str, str]) -> io.StringIO:
    stream = io.StringIO()
    logs.configure(stream, environ)
    return stream


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_severity_time_logger_and_extra_fields() -> None:
    stream = _capture({"DEPLOYER_LOG_FORMAT": "json"})
    log = logging.getLogger("deployer.test")
    log.info("stage %s started", "build", extra={"deploy_id": "d-1", "environment": "prod"})
    log.warning("slow")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("build failed")
    first, second, third = _lines(stream)
    assert first["severity"] == "INFO" and first["message"] == "stage build started"
    assert first["logger"] == "deployer.test"
    assert first["deploy_id"] == "d-1" and first["environment"] == "prod"
    assert isinstance(first["time"], str) and first["time"].endswith("Z")
    assert second["severity"] == "WARNING"
    assert third["severity"] == "ERROR"
    assert isinstance(third["message"], str) and "RuntimeError: boom" in third["message"]


@pytest.mark.parametrize(
    ("environ", "json_lines"),
    [
        ({}, False),
        ({"DEPLOYER_LOG_FORMAT": "json"}, True),
        ({"K_SERVICE": "deployer"}, True),
        ({"CLOUD_RUN_JOB": "deployer-worker"}, True),
        ({"K_SERVICE": "deployer", "DEPLOYER_LOG_FORMAT": "text"}, False),
    ],
)
def test_json_on_cloud_run_and_when_asked(environ: dict[str, str], json_lines: bool) -> None:
    stream = _capture(environ)
    logging.getLogger("deployer.test").warning("hello")
    line = stream.getvalue().strip()
    if json_lines:
        assert json.loads(line)["severity"] == "WARNING"
    else:
        assert line == "WARNING deployer.test: hello"


def test_secret_values_are_redacted_wherever_they_appear() -> None:
    os.environ["SLACK_SIGNING_SECRET"] = SIGNING_SECRET
    os.environ["DEPLOYER_SIGNING_SALT"] = "pepper-and-salt-42"
    os.environ["STRIPE_API_KEY"] = "sk_live_abcdef123456"
    os.environ["LOG_LEVEL"] = "verbose-mode"  # not secret-looking: left alone
    for environ in ({"DEPLOYER_LOG_FORMAT": "json"}, {}):
        stream = _capture(environ)
        log = logging.getLogger("deployer.test")
        log.warning(
            "signature %s vs key sk_live_abcdef123456, salt pepper-and-salt-42, level verbose-mode",
            SIGNING_SECRET,
            extra={"header": f"v0={SIGNING_SECRET}"},
        )
        log.error("cannot reach mongodb://app:hunter2pass@db:27017/x")
        try:
            raise ValueError(f"bad token {SIGNING_SECRET}")
        except ValueError:
            log.exception("failed")
        text = stream.getvalue()
        for value in (SIGNING_SECRET, "sk_live_abcdef123456", "pepper-and-salt-42", "hunter2pass"):
            assert value not in text
        assert "[redacted]" in text and "verbose-mode" in text
        assert "mongodb://app:[redacted]@db:27017/x" in text


def test_pipeline_events_become_stage_lines() -> None:
    stream = _capture({"DEPLOYER_LOG_FORMAT": "json"})
    record = DeployRecord(
        id="d-42", kind="deploy", environment="prod", service="backend", requester="cli:me"
    )
    logs.log_events(StageStarted(record, Stage.BUILD))
    failed = StageResult(Stage.BUILD, Outcome.FAILED, 0.0, 12.5, "step docker-build failed")
    logs.log_events(StageFinished(record, failed))
    record.state, record.error = State.FAILED, "build failed"
    logs.log_events(DeployFinished(record))
    started, finished, ended = _lines(stream)
    assert started["severity"] == "INFO" and started["stage"] == "build"
    assert started["deploy_id"] == "d-42" and started["environment"] == "prod"
    assert finished["severity"] == "ERROR" and finished["outcome"] == "failed"
    assert finished["duration_s"] == 12.5
    assert finished["message"] == "deploy d-42: build failed in 12.5s: step docker-build failed"
    assert ended["state"] == "failed" and ended["severity"] == "ERROR"


def test_the_cli_logs_a_deploy_as_json(demo: Demo, capfd: pytest.CaptureFixture[str]) -> None:
    os.environ.update(DEPLOYER_STORE=demo.store, DEPLOYER_LOG_FORMAT="json")
    capfd.readouterr()
    assert cli.main(["deploy", "prod", "--dry-run"]) == 0
    out, err = capfd.readouterr()
    assert "preflight ok" in out  # the terminal still shows progress
    entries = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    stages = [(e["message"], e.get("stage")) for e in entries if e["logger"] == "deployer.pipeline"]
    assert [stage for _, stage in stages[:2]] == ["preflight", "preflight"]
    assert all(
        e["deploy_id"].startswith("d-") and e["environment"] == "prod"
        for e in entries
        if e["logger"] == "deployer.pipeline"
    )
    assert any("preflight started" in message for message, _ in stages)
