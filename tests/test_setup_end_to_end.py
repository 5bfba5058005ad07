"""From an empty project to `/deploy prod`, as README's "Deploy it to your project" goes:
`deployer setup` (a second run changes nothing), then Slack's signed `/deploy prod` sent to
the deployed function's own URL. The function (its own functions-framework process)
records the deploy in Firestore and starts the worker job; the job's execution deploys
and tells the thread. Nothing here talks to the deployer in this process: every step
crosses the wire the way it would on Google.

The worker job runs the sandbox's stand-in of the deployer's image (`push_worker_image`,
given with `--image`): the image setup builds from the root Dockerfile runs in
`tests/test_setup_image.py`, but it holds no git (its `apt-get` is not run here), which a
worker needs to read a build config at the deployed commit.
"""

from __future__ import annotations

import io
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.harness.chat_front import push_worker_image
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import functions_v2, run_v2

from deployer.cli import main
from deployer.pipeline.record import State
from deployer.store import open_store
from tests.conftest import REGION, GoogleClients
from tests.engine_world import ENVIRONMENT, World, close_world, make_world, wait_finished
from tests.front_requests import send_http, slash_command
from tests.front_world import unique

Completion = run_v2.ExecutionReference.CompletionStatus


@pytest.fixture
def world(
    gcp: Sandbox,
    firestore_emulator: str,
    tmp_path: Path,
    repo_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    """An application repository and its config, nothing deployed, nothing set up."""
    # The sandbox hands the Firestore emulator's address to the processes it starts (the
    # function, the job's tasks), as Google's network hands them Firestore's.
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
    made = make_world(gcp, tmp_path / "world", repo_root, deploy_first=False)
    try:
        yield made
    finally:
        close_world(made)


def setup(world: World, capsys: pytest.CaptureFixture[str], image: str, stdin: str) -> str:
    sys.stdin = io.StringIO(stdin)
    try:
        code = main(
            [
                "setup",
                "--project",
                world.project,
                "--region",
                REGION,
                "--config",
                str(world.config_path),
                "--image",
                image,
            ]
        )
    finally:
        sys.stdin = sys.__stdin__
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 0, out
    return out


def test_setup_then_a_signed_deploy_prod_runs_through_the_function_and_the_worker_job(
    world: World, gcp: Sandbox, google_clients: GoogleClients, capsys: pytest.CaptureFixture[str]
) -> None:
    channel, user = unique("C"), unique("U")
    gcp.http.sink.add_channel(channel, "deploys")
    gcp.http.sink.add_user(user, "alice")
    world.reconfigure(
        environment={
            "channel": channel,
            "allow": {"slack_users": [user], "slack_channels": [channel]},
        }
    )
    signing = secrets.token_hex(16)
    given = (
        f"SLACK_SIGNING_SECRET={signing}\nSLACK_BOT_TOKEN=xoxb-{secrets.token_hex(12)}\n"
        f"GITHUB_WEBHOOK_SECRET={secrets.token_hex(16)}\n"
    )
    image = push_worker_image(gcp, world.project, REGION)

    first = setup(world, capsys, image, given)
    second = setup(world, capsys, image, "")

    assert "front: changed (created" in first, first
    assert second.endswith("\n0 changed, 13 unchanged\n"), second
    assert ": changed" not in second, second
    function = google_clients(functions_v2.FunctionServiceClient).get_function(
        name=f"projects/{world.project}/locations/{REGION}/functions/deployer"
    )
    url = function.url
    assert f"Payload URL   {url}/github/webhook" in second  # what to paste, with the real URL

    # Slack's POST of `/deploy prod`, signed with the secret given to setup, to the
    # function's own URL (a functions-framework process the sandbox runs behind its router).
    response_url = gcp.http.mint_response_url(channel=channel, user=user)
    answer = send_http(
        url,
        slash_command(signing, ENVIRONMENT, user=user, channel=channel, response_url=response_url),
        # Not Slack's 3 s: the function's first answer on a loaded test machine may take
        # longer (benchmarks/setup.py measures it), and the deploy is what is checked here.
        timeout=60,
    )
    assert answer.status == 200, answer.body

    # The deploy is in the store the function and the job share: Firestore.
    store = open_store(f"firestore://{world.project}")
    deadline = time.monotonic() + 30
    while not (records := store.history(ENVIRONMENT, 5)):
        assert time.monotonic() < deadline, "the function recorded no deploy"
        time.sleep(0.2)
    (record,) = records
    assert record.requester == f"slack:{user}"
    done = wait_finished(store, record.id)
    assert done.state == State.SUCCEEDED, done.error

    # It ran in the worker job setup made, started by the function with the deploy's id.
    jobs = google_clients(run_v2.JobsClient)
    job = jobs.get_job(name=f"projects/{world.project}/locations/{REGION}/jobs/deployer-worker")
    executions = list(google_clients(run_v2.ExecutionsClient).list_executions(parent=job.name))
    assert [list(e.template.containers[0].args) for e in executions] == [["worker", record.id]]
    # The service serves the candidate, and the thread says so.
    assert world.serving() == [(done.candidate_revision, 100)]
    deadline = time.monotonic() + 20
    while True:
        parent = next(m for m in gcp.http.sink.messages(channel) if m["ts"] == done.slack_ts)
        if parent["edits"] and done.candidate_revision in parent["text"]:
            break
        assert time.monotonic() < deadline, parent
        time.sleep(0.2)
    assert parent["reply_count"] >= 1
