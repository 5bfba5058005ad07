"""Running a command inside an image's root filesystem, at the image's own paths.

An image is a directory tree (`Image.root`). A process "in the image" sees that tree's
top-level directories at `/usr`, `/app`, ... layered over the host's, and everything
else of the host as it is (its interpreters, `/proc`, `/dev`, the network). This is
done in a private mount namespace by `common.enter_image`, which is what
`command_in_image` returns the argv of:

    command_in_image(tree, "/app", ["uv", "sync"])
        -> [sys.executable, "-I", "-m", "deployer_sandbox.common.enter_image", '{...}']

Writes to the image's directories land in the tree itself (`private_layer=None`, what
a build's RUN does) or in `private_layer` (a revision's own writable layer, so the
image stays as built). `binds` mounts extra host paths at image paths (a build's
cache and bind mounts).

Mount namespaces need root, `unshare` and overlayfs; `unavailable()` says why not
when they are missing, and callers then run in `<tree><workdir>` and say so.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import uv

LAUNCHER = "deployer_sandbox.common.enter_image"


@functools.cache
def unavailable() -> str | None:
    """None when mount namespaces work here (root, unshare, overlayfs), else the reason."""
    if not sys.platform.startswith("linux"):
        return f"mount namespaces are Linux-only (this is {sys.platform})"
    if os.geteuid() != 0:
        return "mount namespaces need root (the sandbox runs as an ordinary user)"
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        return "/proc/filesystems is unreadable"
    if "overlay" not in filesystems.split():
        return "the kernel has no overlayfs"
    unshare = shutil.which("unshare")
    if unshare is None:
        return "util-linux's unshare is not installed"
    try:
        probe = subprocess.run(
            [unshare, "-m", "true"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unshare -m failed: {error}"
    if probe.returncode != 0:
        return f"unshare -m failed: {probe.stderr.strip() or probe.returncode}"
    return None


def command_in_image(
    root: Path,
    workdir: str,
    argv: Sequence[str],
    *,
    private_layer: Path | None = None,
    binds: Mapping[str, Path] = {},
) -> list[str]:
    """The argv that runs `argv` inside the image whose tree is `root`, in `workdir`.

    The process gets the environment it is spawned with (set PATH as the image's); its
    `argv[0]` is looked up on that PATH inside the image. `private_layer`: where
    writes to the image's directories go (None: into `root`). `binds`: image path ->
    host file or directory mounted there. Raises RuntimeError when `unavailable()`.
    """
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(f"cannot enter an image: {reason}")
    spec = {
        "root": str(root.resolve()),
        "workdir": workdir,
        "argv": list(argv),
        "private_layer": str(private_layer.resolve()) if private_layer is not None else None,
        "binds": {target: str(Path(source).resolve()) for target, source in binds.items()},
        "tools": host_tools(),
    }
    return [sys.executable, "-I", "-m", LAUNCHER, json.dumps(spec)]


def host_tools() -> list[str]:
    """Host folders the sandbox's stand-ins live in (its uv), kept visible at their own
    paths inside every image, even where the image's /tmp is a fresh one (a checkout,
    and so the sandbox's virtualenv, may well live under /tmp)."""
    return [str(Path(uv.find_uv_bin()).resolve().parent)]
