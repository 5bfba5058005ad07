"""What a container runs: the image's command as the template overrides it, where, with what.

argv_of(image, command, args)        ENTRYPOINT/CMD as Cloud Run's command/args override them
listen_port(container)               the container port: PORT inside the container
launch_command(image, argv, layer)   (argv, cwd) that run it: inside the image's tree for a
                                     built image, in place for a host image
base_environment(image)              what the container's env is laid over
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from google.cloud import run_v2

from deployer_sandbox.common import rootfs
from deployer_sandbox.common.child_processes import minimal_environment, resolve_command
from deployer_sandbox.common.images import Image

# Cloud Run's default container port: "By default, Cloud Run sends requests to 8080"
# (https://cloud.google.com/run/docs/container-contract#port).
DEFAULT_PORT = 8080
# What Docker (and so Cloud Run) puts in a container's environment when the image sets
# no PATH (moby's oci.DefaultPathEnv for Linux) and HOME for root.
_DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DOCKER_HOME = "/root"


def argv_of(image: Image | None, command: Sequence[str], args: Sequence[str]) -> list[str]:
    """The container's argv: `command` replaces the image's ENTRYPOINT, `args` its CMD.

    As Kubernetes defines them, which Cloud Run follows
    (https://cloud.google.com/run/docs/configuring/services/containers#configure-entrypoint,
    https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/#notes):
    `command` without `args` runs the command alone (the image's CMD is dropped), `args`
    without `command` run after the image's ENTRYPOINT.
    """
    entrypoint = list(command) if command else list(image.entrypoint if image else ())
    if args:
        cmd = list(args)
    elif command:
        cmd = []
    else:
        cmd = list(image.cmd if image else ())
    return entrypoint + cmd


def listen_port(container: run_v2.Container) -> int:
    """The port the container listens on and finds in PORT: ports[0], else 8080."""
    if container.ports and container.ports[0].container_port:
        return int(container.ports[0].container_port)
    return DEFAULT_PORT


def base_environment(image: Image) -> dict[str, str]:
    """The environment before the container's own: a built image's ENV over Docker's
    defaults; for a host image, the host's essentials under its ENV."""
    if image.root:
        return {"PATH": _DOCKER_PATH, "HOME": _DOCKER_HOME, **image.env}
    return {**minimal_environment(), **image.env}


def launch_command(
    image: Image, argv: Sequence[str], private_layer: Path
) -> tuple[list[str], Path | None]:
    """(argv, cwd) that run `argv` for `image`.

    A built image runs inside its tree (`rootfs.command_in_image`, in its WORKDIR, its
    writes in `private_layer`); a host image runs in place in its folder, "python" being
    the sandbox's interpreter. Raises RuntimeError when the image's tree cannot be entered.
    """
    if not argv:
        # Docker's refusal for an image with neither ENTRYPOINT nor CMD.
        raise RuntimeError("no command specified")
    if image.root:
        return rootfs.command_in_image(
            image.context, image.workdir, argv, private_layer=private_layer, binds={}
        ), None
    return resolve_command(argv), image.context
