"""The build Cloud Build is asked to run: the source at the commit, substitutions and tags."""

from __future__ import annotations

import hashlib
import json
import re

from google.cloud.devtools import cloudbuild_v1

from deployer.build_config import referenced_substitutions
from deployer.config import ServiceConfig

Build = cloudbuild_v1.Build

# Build tags (not image tags) must match this, or CreateBuild answers INVALID_ARGUMENT.
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
# The tag naming a build's effective config (see `config_tag`).
CONFIG_TAG_PREFIX = "deployer-config-"


def build_parent(service: ServiceConfig) -> str:
    """The location builds of the service run in: `projects/P/locations/R`."""
    return f"projects/{service.project}/locations/{service.region}"


def our_substitutions(service: ServiceConfig, commit: str) -> dict[str, str]:
    """The substitutions the deployer gives every build of `service` at `commit`."""
    return {**service.substitutions, "_COMMIT_SHA": commit, "_IMAGE": service.image}


def build_name(service: ServiceConfig, build_id: str) -> str:
    """The build's full resource name."""
    return f"{build_parent(service)}/builds/{build_id}"


def prepare_build(
    service: ServiceConfig, config: Build, commit: str, deploy_id: str, ours: dict[str, str]
) -> Build:
    """The build to submit: the config with the source at `commit`, substitutions and tags."""
    build: Build = Build.deserialize(Build.serialize(config))  # the caller's copy stays as it was
    source = service.source
    if source.git:
        build.source = cloudbuild_v1.Source(
            git_source=cloudbuild_v1.GitSource(url=source.git, revision=commit, dir_=source.dir)
        )
    elif source.connected_repository:
        build.source = cloudbuild_v1.Source(
            connected_repository=cloudbuild_v1.ConnectedRepository(
                repository=source.connected_repository, revision=commit, dir_=source.dir
            )
        )
    substitutions = wanted_substitutions(build, ours, keep_declared=True)
    build.substitutions.clear()
    build.substitutions.update(substitutions)
    tags = [*build.tags, "deployer", _tag(f"commit-{commit[:12]}")]
    build.tags = list(dict.fromkeys(tag for tag in tags if tag))
    # Fingerprinted before the deploy's own tag: two deploys of the same config match.
    build.tags = [*build.tags, config_tag(build), *([_tag(deploy_id)] if _tag(deploy_id) else [])]
    return build


def config_tag(build: Build) -> str:
    """A build tag naming `build`'s effective config: source and commit, steps, images,
    options and substitutions as submitted, and its tags bar the deploy's id.

    Two builds with the same tag would build the same image, so a deploy finds a
    reusable one with ListBuilds' `tags="..."` filter. The JSON of the message, keys
    sorted, is stable where its binary form is not (map fields have no set order).
    """
    text = json.dumps(Build.to_dict(build), sort_keys=True, separators=(",", ":"))
    return CONFIG_TAG_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:40]


def wanted_substitutions(
    build: Build, ours: dict[str, str], *, keep_declared: bool
) -> dict[str, str]:
    """Our substitutions merged into the declared ones, minus keys nothing uses.

    Cloud Build refuses a build whose substitutions include a key no template uses
    ("key ... in the substitution data is not matched in the template") unless
    `options.substitution_option` is ALLOW_LOOSE. Overriding `_IMAGE` can also
    orphan keys that only fed the declared `_IMAGE` value (`_REGION`, ...).
    """
    merged = {**(build.substitutions if keep_declared else {}), **ours}
    loose = (
        build.options.substitution_option
        == cloudbuild_v1.BuildOptions.SubstitutionOption.ALLOW_LOOSE
    )
    if loose:
        return merged
    bare: Build = Build.deserialize(Build.serialize(build))
    bare.substitutions.clear()
    used = referenced_substitutions(bare)
    if build.options.dynamic_substitutions:
        # Values are expanded too, so a key another used key's value refers to is used.
        pending = [key for key in used if key in merged]
        while pending:
            value = merged[pending.pop()]
            for key in referenced_substitutions(Build(substitutions={"_V": value})):
                if key not in used and key in merged:
                    used.add(key)
                    pending.append(key)
    return {key: value for key, value in merged.items() if key in used}


def _tag(text: str) -> str:
    """`text` as a valid build tag: other characters become '-', at most 128 of them."""
    cleaned = re.sub(r"[^\w.-]", "-", text).lstrip(".-")[:128]
    return cleaned if _TAG.match(cleaned) else ""
