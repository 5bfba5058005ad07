""" "What changes" end to end: a signed `/deploy` through `main.py`, the parent message read
back from the Slack sink, and the record as `deployer show` gives it to people and scripts."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.adapters.secret_writer import SecretManagerWriter
from deployer.pipeline.record import State
from tests.engine_world import World, world_fixture  # noqa: F401
from tests.front_world import FrontWorld, in_process, make_front


@pytest.fixture
def front(world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    with in_process(make_front(world, gcp), repo_root) as ready:
        yield ready


def parent_blocks(front: FrontWorld, deploy_id: str) -> list[str]:
    """The deploy's thread parent as Slack shows it now: each block's text."""
    box = front.world.store().outbox_read(deploy_id)
    assert box is not None
    ts = json.loads(box.body)["ts"]
    parent = next(m for m in front.messages() if m.get("ts") == ts)
    return [str(block.get("text", {}).get("text", "")) for block in parent.get("blocks", [])]


def test_the_parent_names_the_commits_env_and_secret_versions_that_change(
    front: FrontWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world = front.world
    serving_before = world.first.candidate_revision
    assert serving_before is not None and world.first.commit is not None
    # Two commits ahead of what serves; LOG_LEVEL goes, FEATURE_FLAG comes, and the
    # secret-key secret gets a new version (the config pins the latest).
    world.commit("first of two")
    world.commit("second of two")
    flag = f"flag-{secrets.token_hex(8)}"
    new_key = secrets.token_urlsafe(24)
    world.secret_values["secret-key@2"] = new_key
    SecretManagerWriter(world.secret_manager).add_version(
        world.project, "secret-key", new_key.encode()
    )
    world.reconfigure(environment={"env": {"LOG_LEVEL": None, "FEATURE_FLAG": flag}})

    started = front.command("prod main")
    assert str(started.json().get("text", "")).startswith("Started deploy")
    done = front.finished(front.newest().id)
    assert done.state == State.SUCCEEDED, done.error

    [section] = [b for b in parent_blocks(front, done.id) if b.startswith("*What changes*")]
    lines = section.splitlines()
    assert lines[0] == (
        f"*What changes* against `{serving_before}`: "
        f"2 commits since {world.first.commit[:12]}"  # a local repository: no compare link
    )
    assert lines[1:3] == ["• second of two", "• first of two"]
    assert lines[3].startswith("Image `sha256:") and " → `sha256:" in lines[3]
    assert lines[4:] == [
        "Env added: `FEATURE_FLAG`",
        "Env removed: `LOG_LEVEL`",
        "Secret `secret-key`: version 1 → 2",
    ]
    assert flag not in json.dumps(front.messages())

    # The record keeps it: `deployer show` prints it, `--json` structures it.
    code, out, _ = world.cli(capsys, "show", done.id)
    assert code == 0
    assert "  env added: FEATURE_FLAG" in out and "  secret secret-key: version 1 -> 2" in out
    code, out, _ = world.cli(capsys, "show", done.id, "--json")
    assert code == 0
    changes = json.loads(out)["changes"]
    assert changes["commits"] == 2 and changes["subjects"] == ["second of two", "first of two"]
    assert changes["serving_revision"] == serving_before
    assert changes["env"] == {"added": ["FEATURE_FLAG"], "removed": ["LOG_LEVEL"], "changed": []}
    assert changes["secret_env"] == {"added": [], "removed": [], "changed": []}
    assert changes["secret_versions"] == {"secret-key": {"from": "1", "to": "2"}}
    assert changes["settings"] == {}
    assert flag not in out
    world.assert_no_secrets(out)
