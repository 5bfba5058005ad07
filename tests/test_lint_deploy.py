"""A deploy whose image would fail stops at preflight: no build is spent on it.

The world's repository holds service/ and cloudbuild.yaml; each test plants one of
the seed's failures in a commit, deploys it, and lists the project's builds through
the Cloud Build client: there are none.
"""

from __future__ import annotations

from deployer.pipeline.record import Outcome, Stage, State
from tests.engine_world import World, empty_world_fixture  # noqa: F401
from tests.git_repos import commit


def stopped_at_preflight(world: World) -> str:
    """Deploy HEAD; assert it failed at preflight with no build; the stage's text."""
    record, events = world.deploy()
    assert record.state == State.FAILED, record.error
    preflight = record.stage(Stage.PREFLIGHT)
    assert preflight is not None and preflight.outcome == Outcome.FAILED
    assert record.stage(Stage.BUILD) is None
    assert world.build_ids() == []
    assert "nothing was built" in preflight.summary
    return f"{preflight.summary}\n{preflight.detail}\n{events.text.getvalue()}"


def test_buildkit_syntax_without_buildkit_stops_before_the_build(empty_world: World) -> None:
    build = (empty_world.repo / "cloudbuild.yaml").read_text()
    commit(
        empty_world.repo, {"cloudbuild.yaml": build.replace('    env: ["DOCKER_BUILDKIT=1"]\n', "")}
    )
    said = stopped_at_preflight(empty_world)
    assert "the --mount option requires BuildKit" in said
    assert "add `env: ['DOCKER_BUILDKIT=1']` to step \"build\" (steps[1])" in said


def test_the_seeds_readme_excluded_by_dockerignore_stops_before_the_build(
    empty_world: World,
) -> None:
    ignore = (empty_world.repo / "service" / ".dockerignore").read_text()
    commit(empty_world.repo, {"service/.dockerignore": ignore.replace("!README.md\n", "")})
    said = stopped_at_preflight(empty_world)
    line = (
        (empty_world.repo / "service" / "Dockerfile")
        .read_text()
        .splitlines()
        .index("COPY pyproject.toml uv.lock README.md ./")
    )
    assert (
        f"line {line + 1} COPY README.md: README.md is excluded from the build context service/"
        in said
    )
    star = ignore.splitlines().index("*.md") + 1
    assert f"by .dockerignore line {star} (*.md)" in said
    assert "`uv sync` installs the project of pyproject.toml" in said


def test_a_required_variable_missing_stops_before_the_build(empty_world: World) -> None:
    empty_world.reconfigure(environment={"secrets": {"SECRET_KEY": None}})
    said = stopped_at_preflight(empty_world)
    assert (
        "is required by the app and not set by the environment's env, secrets or env_from_secret"
        in said
    )
    assert "service/app/settings.py: Settings.secret_key" in said
