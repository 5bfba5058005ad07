"""Build once: a deploy of a commit that was built before, with the same effective build
config, reuses that build's image once Artifact Registry says it still exists.

Everything goes through the real clients over the sandbox's gRPC: Cloud Build's build
count is read with ListBuilds, the image is deleted with Artifact Registry's
DeleteVersion, and chat deploys are signed slash commands to the front over HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import artifactregistry_v1

from deployer.adapters.google_clients import google_client
from deployer.front import grammar
from deployer.pipeline.record import DeployRecord, Stage, State
from tests.conftest import REGION
from tests.engine_world import ENVIRONMENT, World, world_fixture  # noqa: F401
from tests.front_world import FrontWorld, in_process, make_front


def build_summary(record: DeployRecord) -> str:
    result = record.stage(Stage.BUILD)
    assert result is not None
    return result.summary


def reused_line(build_id: str, commit: str) -> str:
    return f"reused build {build_id[:8]} of commit {commit[:7]} (image sha256:"


def delete_image(world: World, image: str) -> None:
    """Delete `image` (repository@sha256:...) and its tags, as `gcloud artifacts docker
    images delete --delete-tags` does: DeleteVersion with force."""
    repository, _, digest = image.partition("@")
    path = repository.removeprefix(f"{REGION}-docker.pkg.dev/{world.project}/deployer/")
    client = google_client(artifactregistry_v1.ArtifactRegistryClient, world.sandbox.grpc_address)
    name = (
        f"projects/{world.project}/locations/{REGION}/repositories/deployer"
        f"/packages/{path}/versions/{digest}"
    )
    request = artifactregistry_v1.DeleteVersionRequest(name=name, force=True)
    client.delete_version(request=request, timeout=30).result(timeout=30)


def test_redeploying_the_same_commit_reuses_its_image_and_builds_nothing(world: World) -> None:
    first = world.first
    builds = world.build_ids()
    assert first.build_id in builds and first.image and first.commit

    record, events = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    assert world.build_ids() == builds
    assert record.commit == first.commit and record.image == first.image
    assert (record.build_reused, record.build_id, record.reused_from) == (
        True,
        first.build_id,
        first.id,
    )
    assert record.build_log_url == first.build_log_url
    summary = build_summary(record)
    assert summary.startswith(reused_line(first.build_id, first.commit))
    assert summary.endswith("still in Artifact Registry)")
    build = record.stage(Stage.BUILD)
    assert build is not None and build.link == first.build_log_url
    # The new revision runs the very image the first build pushed.
    assert record.candidate_revision is not None
    assert world.revision(record.candidate_revision).containers[0].image == first.image
    assert world.serving() == [(record.candidate_revision, 100)]
    assert world.health()["version"]["commit"] == first.commit
    text = events.text.getvalue()
    assert reused_line(first.build_id, first.commit) in text
    assert f"reused build {first.build_id} of deploy {first.id}" in text


def test_a_dry_run_says_whether_it_would_reuse_a_build(world: World) -> None:
    first = world.first
    assert first.build_id is not None and first.commit is not None
    _, events = world.deploy(dry_run=True)
    said = events.text.getvalue()
    assert f"would reuse build {first.build_id[:8]} of {first.commit[:7]}" in said
    commit = world.commit("not built yet")
    _, events = world.deploy(dry_run=True)
    assert f"no earlier build of {commit[:7]} with this config: it would build" in (
        events.text.getvalue()
    )


def test_a_new_commit_is_built(world: World) -> None:
    builds = world.build_ids()
    commit = world.commit("a change")

    record, _ = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    assert record.commit == commit and not record.build_reused
    assert world.build_ids() == [record.build_id, *builds]
    assert record.image != world.first.image


def test_a_changed_build_config_is_built_and_an_unused_substitution_changes_nothing(
    world: World,
) -> None:
    builds = world.build_ids()
    # _IMAGE_NAME only fed the declared _IMAGE, which the deployer overrides: no build
    # step sees it, so the effective config is the same.
    world.reconfigure(service={"substitutions": {"_IMAGE_NAME": "renamed"}})
    unchanged, _ = world.deploy()
    assert unchanged.state == State.SUCCEEDED, unchanged.error
    assert unchanged.build_reused and world.build_ids() == builds

    # The image (`_IMAGE`) is a substitution the steps use: a different build.
    image = f"{REGION}-docker.pkg.dev/{world.project}/deployer/backend-two"
    world.reconfigure(service={"image": image})
    changed, _ = world.deploy()

    assert changed.state == State.SUCCEEDED, changed.error
    assert not changed.build_reused
    assert world.build_ids() == [changed.build_id, *builds]
    assert changed.image is not None and changed.image.startswith(image + "@sha256:")


def test_an_image_gone_from_the_registry_is_built_again(world: World) -> None:
    first = world.first
    assert first.image is not None and first.commit is not None
    builds = world.build_ids()
    delete_image(world, first.image)

    record, events = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    assert not record.build_reused
    assert world.build_ids() == [record.build_id, *builds]
    digest = first.image.partition("@")[2]
    assert (
        f"build {first.build_id[:8]} of commit {first.commit[:7]} made {digest}, no longer in "
        "Artifact Registry: building again"
    ) in events.text.getvalue()
    # Built again and pushed again: the registry holds the image the revision runs.
    assert record.image is not None
    assert world.platform.images.check(record.image, 10).exists
    assert world.health()["version"]["commit"] == first.commit


def test_rebuild_on_the_command_line_builds_again(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    builds = world.build_ids()

    code, out, _ = world.cli(capsys, "deploy", ENVIRONMENT, "--rebuild")

    assert code == 0, out
    record = world.store().history(ENVIRONMENT, 1)[0]
    assert record.rebuild and not record.build_reused and record.state == State.SUCCEEDED
    assert world.build_ids() == [record.build_id, *builds]
    assert "--rebuild: building anew, not reusing an earlier build" in out
    assert "reused build" not in out


@pytest.fixture
def front(world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    with in_process(make_front(world, gcp), repo_root) as ready:
        yield ready


def chat_deploy(front: FrontWorld, text: str) -> DeployRecord:
    before = {r.id for r in front.records()}
    answer = front.command(text)
    assert answer.status == 200, answer.text
    [new] = [r for r in front.records() if r.id not in before]
    return front.finished(new.id)


def parent_text(front: FrontWorld, record: DeployRecord) -> str:
    [parent] = [m for m in front.messages() if m.get("ts") == record.slack_ts]
    return "\n".join(block["text"]["text"] for block in parent["blocks"] if "text" in block)


def test_in_chat_a_redeploy_says_which_build_it_reused_and_rebuild_builds(
    front: FrontWorld,
) -> None:
    world = front.world
    first = world.first
    assert first.build_id and first.build_log_url and first.commit
    builds = world.build_ids()

    reused = chat_deploy(front, "prod main")

    assert reused.state == State.SUCCEEDED, reused.error
    assert reused.build_reused and world.build_ids() == builds
    parent = parent_text(front, reused)
    linked = f"reused build <{first.build_log_url}|{first.build_id[:8]}> of `{first.id}`"
    # In the details line, and on the build's line of the checklist.
    assert len(re.findall(re.escape(linked), parent)) == 2, parent
    assert re.search(r"✓ \*build\* — done in [^\n]* · reused build", parent), parent

    rebuilt = chat_deploy(front, "prod main --rebuild")

    assert rebuilt.state == State.SUCCEEDED, rebuilt.error
    assert rebuilt.rebuild and not rebuilt.build_reused
    assert world.build_ids() == [rebuilt.build_id, *builds]
    parent = parent_text(front, rebuilt)
    assert "reused build" not in parent and "build log" in parent


def test_the_grammar_reads_rebuild_beside_the_other_options(world: World) -> None:
    config = world.config
    assert grammar.parse("prod main --rebuild", config) == grammar.Deploy(
        "prod", "main", rebuild=True
    )
    assert grammar.parse("--rebuild prod --queue", config) == grammar.Deploy(
        "prod", queue=True, rebuild=True
    )
    assert grammar.parse("prod main", config) == grammar.Deploy("prod", "main")
    usage = grammar.parse("prod main extra --rebuild", config)
    assert isinstance(usage, grammar.Reply) and "[--rebuild]" in usage.text


def test_a_retry_of_a_rebuild_builds_again(front: FrontWorld) -> None:
    world = front.world
    # The same commit, rebuilt on purpose; the revision then crashes at start.
    world.sandbox.faults.arm("revision_crash")
    failed = chat_deploy(front, "prod main --rebuild")
    assert failed.state == State.FAILED and failed.rebuild and not failed.build_reused
    builds = world.build_ids()

    assert front.click("deploy_retry", failed).status == 200
    retried = front.finished(front.newest().id)

    # The retry asked for what the deploy asked for: a build, not the failed one's image.
    assert retried.id != failed.id and retried.rebuild
    assert retried.state == State.SUCCEEDED, retried.error
    assert not retried.build_reused and world.build_ids() == [retried.build_id, *builds]
