"""The deployer's own environment as Cloud Run writes it (the worker job's container, and
the front's with `--front run`): plain variables, and secrets pinned to the versions the
`secrets` step stored (`Setup.version_of`); and the part of a container setup compares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.cloud import run_v2

from deployer.setup.context import Setup


def pinned_env(
    setup: Setup, plain: Mapping[str, str], secrets: Mapping[str, str]
) -> list[run_v2.EnvVar]:
    """`plain` as values and `secrets` (variable -> secret id) as pinned references, sorted."""
    variables = [run_v2.EnvVar(name=name, value=value) for name, value in plain.items()]
    variables += [
        run_v2.EnvVar(
            name=variable,
            value_source=run_v2.EnvVarSource(
                secret_key_ref=run_v2.SecretKeySelector(
                    secret=secret, version=setup.version_of(secret)
                )
            ),
        )
        for variable, secret in secrets.items()
    ]
    return sorted(variables, key=lambda v: v.name)


def container_shape(containers: Sequence[run_v2.Container]) -> tuple[object, ...]:
    """The first container's image and environment, comparable."""
    container = containers[0] if containers else run_v2.Container()
    env = sorted(
        (
            v.name,
            v.value,
            v.value_source.secret_key_ref.secret,
            v.value_source.secret_key_ref.version,
        )
        for v in container.env
    )
    return (container.image, tuple(env))
