"""cloudbuild.yaml loads as gcloud would load it, and builds the service the way we rely on."""

from pathlib import Path

import pytest
from google.cloud.devtools import cloudbuild_v1

from deployer.build_config import (
    USER_SUBSTITUTION,
    BuildConfigError,
    load_build_config,
    referenced_substitutions,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_TEXT = (ROOT / "cloudbuild.yaml").read_text()


@pytest.fixture(scope="module")
def build() -> cloudbuild_v1.Build:
    return load_build_config(CONFIG_TEXT)


def _step(build: cloudbuild_v1.Build, step_id: str) -> cloudbuild_v1.BuildStep:
    steps = [step for step in build.steps if step.id == step_id]
    assert len(steps) == 1, f"expected one step with id {step_id!r}"
    return steps[0]


def _flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]


# --- the repository's cloudbuild.yaml --------------------------------------


def test_config_has_no_source_and_some_steps(build: cloudbuild_v1.Build) -> None:
    assert "source" not in build
    assert len(build.steps) >= 1


def test_substitution_keys_are_user_substitutions(build: cloudbuild_v1.Build) -> None:
    assert build.substitutions
    for key in build.substitutions:
        assert USER_SUBSTITUTION.match(key), key


def test_every_substitution_used_is_declared(build: cloudbuild_v1.Build) -> None:
    used = referenced_substitutions(build)

    assert {"_IMAGE", "_COMMIT_SHA"} <= used
    assert used <= set(build.substitutions)


def test_image_is_built_from_service_with_buildkit_and_cache(build: cloudbuild_v1.Build) -> None:
    step = _step(build, "build")
    args = list(step.args)

    assert step.name == "gcr.io/cloud-builders/docker"
    assert step.dir_ == "service"
    assert args[0] == "build"
    assert args[-1] == "."
    assert "DOCKER_BUILDKIT=1" in step.env
    assert _flag_values(args, "--cache-from") == ["$_IMAGE:latest"]
    assert set(_flag_values(args, "--build-arg")) == {
        "BUILDKIT_INLINE_CACHE=1",
        "COMMIT_SHA=$_COMMIT_SHA",
    }
    assert set(_flag_values(args, "-t")) == {"$_IMAGE:$_COMMIT_SHA", "$_IMAGE:latest"}


def test_cache_image_is_pulled_first_without_failing_a_first_build(
    build: cloudbuild_v1.Build,
) -> None:
    pull = _step(build, "pull-cache")

    assert build.steps[0].id == "pull-cache"
    assert pull.entrypoint == "bash"
    assert "docker pull $_IMAGE:latest || exit 0" in pull.args
    assert list(_step(build, "push-latest").args) == ["push", "$_IMAGE:latest"]


def test_commit_tagged_image_goes_to_artifact_registry(build: cloudbuild_v1.Build) -> None:
    assert list(build.images) == ["$_IMAGE:$_COMMIT_SHA"]
    assert "-docker.pkg.dev/" in build.substitutions["_IMAGE"]
    assert build.substitutions["_IMAGE"].startswith("${_REGION}-docker.pkg.dev/${PROJECT_ID}/")


def test_nothing_is_pushed_to_container_registry(build: cloudbuild_v1.Build) -> None:
    # gcr.io/cloud-builders/* are builder images, not destinations.
    destinations = [*build.images, *build.substitutions.values()]
    for step in build.steps:
        args = list(step.args)
        destinations += _flag_values(args, "-t") + _flag_values(args, "--tag")
        if args[:1] == ["push"]:
            destinations += args[1:]
    assert not [d for d in destinations if "gcr.io/" in d]


def test_options_allow_nested_substitutions_and_a_timeout(build: cloudbuild_v1.Build) -> None:
    assert build.options.dynamic_substitutions is True
    assert build.options.logging == cloudbuild_v1.BuildOptions.LoggingMode.CLOUD_LOGGING_ONLY
    assert cloudbuild_v1.Build.to_dict(build)["timeout"] == "1200s"


# --- the loader --------------------------------------------------------------


def test_snake_case_keys_are_read_as_camel_case_except_map_keys() -> None:
    build = load_build_config(
        """
steps:
  - name: ubuntu
    wait_for: ['-']
    secret_env: [API_KEY]
    allow_failure: true
available_secrets:
  secret_manager:
    - version_name: projects/p/secrets/api-key/versions/1
      env: API_KEY
substitutions:
  _SNAKE_CASE_NAME: kept
options:
  dynamic_substitutions: true
"""
    )

    step = build.steps[0]
    assert list(step.wait_for) == ["-"]
    assert list(step.secret_env) == ["API_KEY"]
    assert step.allow_failure is True
    assert build.available_secrets.secret_manager[0].env == "API_KEY"
    assert dict(build.substitutions) == {"_SNAKE_CASE_NAME": "kept"}
    assert build.options.dynamic_substitutions is True


def test_referenced_substitutions_ignore_escaped_dollars_and_built_ins() -> None:
    build = load_build_config(
        """
steps:
  - name: ubuntu
    args: ['echo', '$$_NOT_ONE', '$PROJECT_ID', '${_BRACED}', '$_PLAIN/x']
"""
    )

    assert referenced_substitutions(build) == {"_BRACED", "_PLAIN"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("steps: [name: x\n", "not valid YAML", id="invalid-yaml"),
        pytest.param("", "is empty", id="empty"),
        pytest.param("- name: ubuntu\n", "must be a mapping", id="not-a-mapping"),
        pytest.param(
            "source: {storageSource: {bucket: b, object: o}}\nsteps: [{name: ubuntu}]\n",
            "`source` is not allowed",
            id="source",
        ),
        pytest.param("images: [x]\n", "at least one step", id="no-steps"),
        pytest.param("steps: []\n", "at least one step", id="empty-steps"),
        pytest.param(
            "steps: [{name: ubuntu}]\nsubstitutions: {REGION: europe-west1}\n",
            "substitution key 'REGION' must match ^_[A-Z0-9_]+$",
            id="substitution-without-underscore",
        ),
        pytest.param(
            "steps: [{name: ubuntu}]\nsubstitutions: {_region: europe-west1}\n",
            "rename it, e.g. to '_REGION'",
            id="lowercase-substitution",
        ),
        pytest.param(
            "steps: [{name: ubuntu}]\nsubstitutions: {_PORT: 8080}\n",
            "substitution _PORT must be a string",
            id="substitution-not-a-string",
        ),
        pytest.param(
            "steps: [{name: ubuntu, entrypont: bash}]\n",
            "unknown field 'entrypont' in Build.steps[0]",
            id="unknown-step-field",
        ),
        pytest.param(
            "steps: [{name: ubuntu}]\nimagez: [x]\n",
            "unknown field 'imagez' in Build",
            id="unknown-top-level-field",
        ),
        pytest.param(
            "steps: [{name: ubuntu}]\ntimeout: 20m\n",
            "does not match the Build schema",
            id="bad-duration",
        ),
        pytest.param(
            "steps: [{name: ubuntu, env: [DAY=x]}]\ntags: [2024-01-01]\n",
            "was read as a date; quote it",
            id="unquoted-date",
        ),
    ],
)
def test_invalid_configs_are_refused_with_the_reason(text: str, expected: str) -> None:
    with pytest.raises(BuildConfigError) as failure:
        load_build_config(text)

    assert expected in str(failure.value)
    assert str(failure.value).startswith("cloudbuild.yaml: ")


def test_build_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^ci/build\.yaml: "):
        load_build_config("steps: []", name="ci/build.yaml")
