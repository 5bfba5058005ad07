"""The launcher behind `rootfs.command_in_image`: enter an image's root, then exec.

    python -I -m deployer_sandbox.common.enter_image '{"root": ..., "workdir": ...,
        "argv": [...], "private_layer": ... | null, "binds": {image path: host path}}'

In a new mount namespace (made private, so nothing propagates back to the host), a
new root is assembled on a tmpfs:

- each host top-level entry: symlinks recreated, directories rbind-mounted (their
  own submounts included), files bind-mounted;
- each top-level directory of the image mounted over it: overlayfs with the image
  as the upper layer over the host's directory (a build's RUN, `private_layer`
  None, writes into the image), or with the image and the host's directory as
  lower layers under `private_layer/upper/X` (a revision's writable layer). A build
  also captures writes to the host's other ordinary directories (`/opt`, `/root`,
  ...) in the image, as a Docker RUN writes into its layer; the builder drops the
  empty directories this leaves;
- `binds` mounted at their image paths (mount points created in the writable layer);

then chroot, chdir to the working directory (created when missing, as runc does),
and exec argv with this process's environment, argv[0] looked up on its PATH inside
the image. Failures before exec exit 125 (Docker's "the container could not start")
or 127 (command not found), with the reason on stderr.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
# Host directories that stay the host's: kernel filesystems and the runtime's state.
_ALWAYS_HOST = {"proc", "sys", "dev", "run"}
_MOUNT_BASE = ("/run/deployer-sandbox-root", "/tmp/.deployer-sandbox-root")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def _host_mount_points() -> list[str]:
    """Mount points of this namespace, shallowest first (mountinfo's 5th field, unescaped)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        field = line.split()[4]
        points.append(field.encode().decode("unicode_escape"))
    return sorted(set(points), key=lambda p: p.count("/"))


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _overlay_work(layer_dir: Path, name: str) -> str:
    """overlayfs's scratch directory, on the same filesystem as the upper layer."""
    work = layer_dir / name
    work.mkdir(parents=True, exist_ok=True)
    return str(work)


class _NewRoot:
    def __init__(self, spec: dict[str, object]) -> None:
        self.image = Path(str(spec["root"]))
        layer = spec.get("private_layer")
        self.private = Path(str(layer)) if layer else None
        # Build mode: upper layers in the image itself, scratch beside it.
        self.work = (
            self.private / "work"
            if self.private
            else self.image.with_name(self.image.name + ".work")
        )
        self.mounts = _host_mount_points()
        self.ours = [str(self.image)] + ([str(self.private)] if self.private else [])
        self.base = ""
        self.host_bound: set[str] = set()  # top-level directories that are the host's own
        tools = spec.get("tools")
        self.tools = [str(tool) for tool in tools] if isinstance(tools, list) else []

    def _overlay_safe(self, host_dir: str) -> bool:
        """Whether the host directory can be an overlay's lower layer: not a kernel
        filesystem, and holding neither the image nor its writable layer."""
        name = host_dir.strip("/").split("/")[0]
        if name in _ALWAYS_HOST or not os.path.isdir(host_dir):
            return False
        return not any(_inside(ours, host_dir) for ours in self.ours)

    def _rebind_submounts(self, host_dir: str, target: str) -> None:
        """An overlay hides the host's mounts below it (a bind-mounted /etc/resolv.conf):
        mount them again where they are."""
        for point in self.mounts:
            if point != host_dir and _inside(point, host_dir):
                inner = target + point[len(host_dir) :]
                if os.path.lexists(inner):
                    _mount(point, inner, None, MS_BIND | MS_REC)

    def _overlay(self, name: str, lowers: list[str], upper: Path) -> None:
        target = f"{self.base}/{name}"
        os.mkdir(target)
        if not upper.exists():
            upper.mkdir(parents=True)
            if os.path.isdir(lowers[-1]):  # the merged directory shows the upper's mode
                info = os.stat(lowers[-1])
                os.chmod(upper, info.st_mode & 0o7777)
        options = (
            f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={_overlay_work(self.work, name)}"
        )
        _mount("overlay", target, "overlay", 0, options)

    def _image_dir(self, name: str) -> None:
        host = os.path.realpath(f"/{name}")
        lowers = [host] if self._overlay_safe(host) else []
        if self.private is None:
            if lowers:
                self._overlay(name, lowers, self.image / name)
            else:
                os.mkdir(f"{self.base}/{name}")
                _mount(str(self.image / name), f"{self.base}/{name}", None, MS_BIND | MS_REC)
        else:
            self._overlay(name, [str(self.image / name), *lowers], self.private / "upper" / name)
        if lowers:
            self._rebind_submounts(host, f"{self.base}/{name}")

    def _host_entry(self, name: str) -> None:
        path, target = f"/{name}", f"{self.base}/{name}"
        if os.path.islink(path):
            os.symlink(os.readlink(path), target)
        elif os.path.isdir(path):
            if self.private is None and self._overlay_safe(path):
                self._overlay(name, [path], self.image / name)
                self._rebind_submounts(path, target)
            elif name == "tmp" and name not in _ALWAYS_HOST and not self._overlay_safe(path):
                # The host's /tmp holds the image itself: the process gets a /tmp of its
                # own, as a container does (and as Cloud Run's in-memory /tmp is).
                os.mkdir(target)
                _mount("tmpfs", target, "tmpfs", 0, "mode=1777")
                self._keep_tools(path, target)
            else:
                os.mkdir(target)
                _mount(path, target, None, MS_BIND | MS_REC)
                self.host_bound.add(name)
        elif os.path.exists(path):
            Path(target).touch()
            _mount(path, target, None, MS_BIND)

    def _keep_tools(self, host_dir: str, target: str) -> None:
        """The sandbox's own tools under a host directory the image does not see (its uv,
        in a virtualenv under /tmp): bound again at their paths, read-only in intent."""
        for tool in self.tools:
            if _inside(tool, host_dir) and os.path.isdir(tool):
                inner = target + tool[len(host_dir) :]
                os.makedirs(inner, exist_ok=True)
                _mount(tool, inner, None, MS_BIND)

    def assemble(self, binds: dict[str, str]) -> None:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _mount("none", "/", None, MS_REC | MS_PRIVATE)
        base = next((b for b in _MOUNT_BASE if os.path.isdir(os.path.dirname(b))), _MOUNT_BASE[1])
        os.makedirs(base, exist_ok=True)
        _mount("tmpfs", base, "tmpfs", 0, "mode=755")
        self.base = base
        image_entries = {entry.name: entry for entry in os.scandir(self.image)}
        for name in sorted(os.listdir("/")):
            if name not in image_entries or name in _ALWAYS_HOST:
                self._host_entry(name)
        for name, entry in sorted(image_entries.items()):
            if name in _ALWAYS_HOST:
                continue
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), f"{base}/{name}")
            elif entry.is_dir():
                self._image_dir(name)
            else:
                Path(f"{base}/{name}").touch()
                _mount(entry.path, f"{base}/{name}", None, MS_BIND)
        for image_path, host_path in sorted(binds.items()):
            target = base + "/" + image_path.strip("/")
            top = image_path.strip("/").split("/")[0]
            if top in self.host_bound and not os.path.lexists(target):
                raise OSError(0, f"mount point {image_path} would be made on the host's /{top}")
            if os.path.isdir(host_path):
                os.makedirs(target, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                Path(target).touch()
            _mount(host_path, target, None, MS_BIND | MS_REC)


def main() -> None:
    spec = json.loads(sys.argv[1])
    argv = [str(word) for word in spec["argv"]]
    try:
        root = _NewRoot(spec)
        root.assemble({str(k): str(v) for k, v in dict(spec.get("binds") or {}).items()})
        os.chroot(root.base)
        os.makedirs(str(spec["workdir"]), exist_ok=True)
        os.chdir(str(spec["workdir"]))
    except OSError as error:
        print(f"error entering the image: {error}", file=sys.stderr)
        sys.exit(125)
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=os.environ.get("PATH"))
    if program is None or not os.path.exists(program):
        # runc's words (libcontainer/standard_init_linux.go), as `docker run` prints them.
        print(f'exec: "{argv[0]}": executable file not found in $PATH', file=sys.stderr)
        sys.exit(127)
    sys.stdout.flush()
    os.execve(program, argv, dict(os.environ))


if __name__ == "__main__":
    main()
