"""The sandbox's control endpoint, over HTTP as a user (or a test) drives it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from deployer_sandbox.harness.sandbox import Sandbox


@pytest.fixture
def control(sandbox: Sandbox) -> Iterator[str]:
    """Base URL of the control endpoint, with no faults armed before or after."""
    sandbox.faults.clear()
    yield f"{sandbox.http.url}/_sandbox"
    sandbox.faults.clear()


def test_health_answers_ok(control: str) -> None:
    answer = httpx.get(f"{control}/health")

    assert (answer.status_code, answer.json()) == (200, {"ok": True})


def test_arming_a_fault_answers_it(control: str) -> None:
    answer = httpx.post(f"{control}/faults", json={"kind": "build_fail", "step": "test"})

    assert answer.status_code == 201
    fault = answer.json()
    assert (fault["kind"], fault["times"], fault["step"]) == ("build_fail", 1, "test")
    assert isinstance(fault["id"], int)


def test_armed_faults_are_listed(control: str) -> None:
    httpx.post(f"{control}/faults", json={"kind": "slack_429", "times": 2, "retry_after": 3})
    httpx.post(f"{control}/faults", json={"kind": "slack_5xx"})

    listed = httpx.get(f"{control}/faults").json()

    assert [(f["kind"], f["times"]) for f in listed] == [("slack_429", 2), ("slack_5xx", 1)]
    assert listed[0]["retry_after"] == 3 and listed[1]["status"] == 503


def test_clearing_faults_disarms_them(control: str, sandbox: Sandbox) -> None:
    httpx.post(f"{control}/faults", json={"kind": "revision_crash"})

    assert httpx.delete(f"{control}/faults").status_code == 204

    assert httpx.get(f"{control}/faults").json() == []
    assert sandbox.faults.take("revision_crash", "any-revision") is None


def test_unknown_kind_is_400_naming_the_kinds(control: str) -> None:
    answer = httpx.post(f"{control}/faults", json={"kind": "meteor_strike"})

    assert answer.status_code == 400
    assert "unknown fault kind 'meteor_strike'" in answer.json()["error"]
    assert "slack_429" in answer.json()["error"]


def test_bad_parameter_is_400(control: str) -> None:
    answer = httpx.post(f"{control}/faults", json={"kind": "slack_5xx", "status": 418})

    assert answer.status_code == 400
    assert "status must be one of" in answer.json()["error"]


def test_missing_kind_is_400(control: str) -> None:
    answer = httpx.post(f"{control}/faults", json={"times": 2})

    assert answer.status_code == 400
    assert '"kind"' in answer.json()["error"]


def test_malformed_json_is_400(control: str) -> None:
    answer = httpx.post(
        f"{control}/faults", content=b'{"kind": ', headers={"Content-Type": "application/json"}
    )

    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]
    assert httpx.get(f"{control}/faults").json() == []


def test_json_that_is_not_an_object_is_400(control: str) -> None:
    answer = httpx.post(f"{control}/faults", json=["slack_429"])

    assert answer.status_code == 400
    assert "must be a JSON object" in answer.json()["error"]


def test_oversized_body_is_413(control: str) -> None:
    answer = httpx.post(f"{control}/faults", content=b"x" * (1024 * 1024 + 1))

    assert answer.status_code == 413
    assert "limit" in answer.json()["error"]


def test_unknown_route_is_404(control: str) -> None:
    answer = httpx.get(f"{control}/nothing-here")

    assert answer.status_code == 404


def test_wrong_method_is_405_with_allow(control: str) -> None:
    answer = httpx.put(f"{control}/faults", json={})

    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET, POST, DELETE"


def test_minting_a_response_url_answers_one_served_here(control: str) -> None:
    answer = httpx.post(f"{control}/response_urls", json={"channel": "C0MINT0001"})

    assert answer.status_code == 201
    url = answer.json()["response_url"]
    assert url.startswith(control.removesuffix("/_sandbox") + "/response/")
    assert httpx.post(url, json={"text": "hello"}).text == "ok"
