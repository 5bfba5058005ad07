"""Base images and tool images, as far as the sandbox can provide them without a registry.

- `python:X.Y[-variant]` (Docker Hub's official image, github.com/docker-library/python):
  its Python at /usr/local/bin/python, python3 and pythonX.Y, its site-packages in
  /usr/local/lib/pythonX.Y, its ENV (PATH, LANG, PYTHON_VERSION) and CMD ["python3"].
  The sandbox makes /usr/local a virtual environment of the matching host interpreter,
  so "system" installs land in the image and never in the host's Python. Without a
  matching interpreter the host's own is used, and the build log warns.
- `ghcr.io/astral-sh/uv:pythonX.Y-*` (docs.astral.sh/uv/guides/integration/docker/): the
  same, with uv and uvx in /usr/local/bin.
- Any other base (debian, alpine, distroless, scratch): an empty tree with Docker's
  default PATH; the log says so. RUN lines then see the host's own tools.

Tool images for `COPY --from=<image>`: uv's (`ghcr.io/astral-sh/uv:*`, files /uv and
/uvx) is stood in for by the host's uv (`uv.find_uv_bin()`), linked at the destination.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import uv

from deployer_sandbox.cloud_build.image_trees import remove_tree

# moby's default (oci.DefaultPathEnv) for images that set no PATH.
DOCKER_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON_IMAGE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
_PYTHON_NAMES = ("python", "docker.io/library/python", "library/python", "docker.io/python")
_UV_IMAGES = ("ghcr.io/astral-sh/uv",)
# Changes whenever `lay_down` lays a base out differently, so cached layers built on the
# old layout are not reused.
_LAYOUT = "2"
_PYENV = "/root/.pyenv/versions"


@dataclass(frozen=True)
class BaseImage:
    """What a FROM line starts from: a tree to lay down, the config, and log notes."""

    reference: str
    env: dict[str, str]
    cmd: tuple[str, ...] = ()
    python: Path | None = None  # the host interpreter behind /usr/local/bin/python
    python_version: str = ""  # X.Y.Z
    with_uv: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def identity(self) -> str:
        """What the cache key of the FROM depends on (`_LAYOUT`: how `lay_down` lays it)."""
        return (
            f"{_LAYOUT}\0{self.reference}\0{self.python or ''}\0{self.python_version}"
            f"\0{self.with_uv}"
        )

    def laid_down(self, bases: Path) -> Path:
        """The image's own files, laid down once in `bases` (the machine's cache) and
        never changed there: a stage starts from it as from a cached layer. A python
        base is hundreds of links into the host's standard library, and a symlink with a
        long target costs the filesystem a block each: once per machine, not per build."""
        laid = bases / hashlib.sha256(self.identity.encode()).hexdigest()
        if not laid.is_dir():
            bases.mkdir(parents=True, exist_ok=True)
            scratch = bases / f".{laid.name}.{os.getpid()}.{threading.get_ident()}"
            remove_tree(scratch)
            self.lay_down(scratch)
            try:
                scratch.rename(laid)
            except OSError:  # another build laid it down first: theirs is the same
                remove_tree(scratch)
        return laid

    def lay_down(self, tree: Path) -> None:
        """Write the image's own files into the empty `tree`."""
        tree.mkdir(parents=True, exist_ok=True)
        if self.python is None:
            return
        local = tree / "usr" / "local"
        major_minor = ".".join(self.python_version.split(".")[:2])
        lib = local / "lib" / f"python{major_minor}"
        (local / "bin").mkdir(parents=True)
        (lib / "site-packages").mkdir(parents=True)
        # The interpreter is copied, not linked: Python finds its prefix from where its
        # executable really is (getpath's landmark lib/pythonX.Y/os.py), so sys.prefix is
        # /usr/local and installs land in the image's own site-packages, as in the image.
        # uv then sees a system Python, as it does in python:X.Y, not a virtualenv.
        shutil.copy2(self.python, local / "bin" / f"python{major_minor}")
        layout = _layout(self.python)
        for entry in sorted(os.listdir(layout["stdlib"])):
            if entry not in ("site-packages", "dist-packages", "__pycache__"):
                (lib / entry).symlink_to(os.path.join(layout["stdlib"], entry))
        # The top-level modules' bytecode, as the image's own folder of links: Python
        # looks for a module's .pyc (typing's, say) beside the path it imported
        # (lib/pythonX.Y/__pycache__), and without it compiles the module again at every
        # start (PYTHONDONTWRITEBYTECODE); a .pyc written later replaces a link in the
        # image, never the host's file.
        cache = Path(layout["stdlib"]) / "__pycache__"
        if cache.is_dir():
            (lib / "__pycache__").mkdir()
            for entry in sorted(os.listdir(cache)):
                (lib / "__pycache__" / entry).symlink_to(cache / entry)
        dynload = os.path.join(layout["platstdlib"], "lib-dynload")
        if not (lib / "lib-dynload").exists() and os.path.isdir(dynload):
            (lib / "lib-dynload").symlink_to(dynload)
        if ".so" in layout["ldlibrary"]:
            for name in os.listdir(layout["libdir"]):
                if name.startswith(layout["ldlibrary"]):
                    (local / "lib" / name).symlink_to(os.path.join(layout["libdir"], name))
        for alias in ("python3", "python"):
            (local / "bin" / alias).symlink_to(f"python{major_minor}")
        if self.with_uv:
            link_uv_tools(local / "bin")


@functools.cache
def _layout(interpreter: Path) -> dict[str, str]:
    """Where an interpreter keeps its standard library and shared library."""
    script = (
        "import json, sysconfig as s; p = s.get_paths(); print(json.dumps({"
        "'stdlib': p['stdlib'], 'platstdlib': p['platstdlib'], "
        "'libdir': s.get_config_var('LIBDIR') or '', "
        "'ldlibrary': s.get_config_var('LDLIBRARY') or ''}))"
    )
    done = subprocess.run(
        [str(interpreter), "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    layout: dict[str, str] = json.loads(done.stdout)
    return layout


def split_image(reference: str) -> tuple[str, str]:
    """(name, tag) of an image reference; the tag defaults to `latest`."""
    name = reference.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        return name, tag
    return name, "latest"


@functools.cache
def _version(interpreter: Path) -> str:
    done = subprocess.run(
        [str(interpreter), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip()


@functools.cache
def find_python(wanted: str) -> Path | None:
    """A host interpreter of version `wanted` (X.Y): pyenv's, uv's (no downloads), PATH's."""
    found = sorted(glob.glob(f"{_PYENV}/{wanted}.*/bin/python{wanted}"))
    if found:
        return Path(found[-1])
    try:
        done = subprocess.run(
            [uv.find_uv_bin(), "python", "find", "--no-python-downloads", wanted],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        )
        if done.returncode == 0 and done.stdout.strip():
            return Path(done.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    on_path = shutil.which(f"python{wanted}")
    return Path(on_path) if on_path else None


def _newest_host_python() -> str:
    versions = [Path(p).name for p in glob.glob(f"{_PYENV}/3.*")]
    numbers = sorted(
        tuple(int(x) for x in v.split(".")[:2]) for v in versions if re.match(r"3\.\d+", v)
    )
    return (
        ".".join(map(str, numbers[-1]))
        if numbers
        else f"{sys.version_info[0]}.{sys.version_info[1]}"
    )


def _python_base(reference: str, tag: str, with_uv: bool) -> BaseImage:
    match = re.match(r"(?:python)?(\d+)(?:\.(\d+))?", tag)
    if match and match.group(2):
        wanted = f"{match.group(1)}.{match.group(2)}"
    else:
        wanted = _newest_host_python()  # `python:3`, `python:latest`, `python:slim`
    notes: list[str] = []
    interpreter = find_python(wanted)
    if interpreter is None:
        interpreter = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
        notes.append(
            f"WARNING: {reference} provides Python {wanted}; this machine has no Python "
            f"{wanted}, so the image's Python is the host's "
            f"{sys.version_info[0]}.{sys.version_info[1]} ({interpreter})"
        )
    version = _version(interpreter) or wanted
    notes.append(f"(sandbox) {reference}: Python {version} from the host ({interpreter})")
    env = {"PATH": PYTHON_IMAGE_PATH, "LANG": "C.UTF-8", "PYTHON_VERSION": version}
    return BaseImage(reference, env, ("python3",), interpreter, version, with_uv, tuple(notes))


def base_image(reference: str) -> BaseImage:
    """The base image a FROM names (not an earlier stage)."""
    name, tag = split_image(reference)
    if name in _PYTHON_NAMES:
        return _python_base(reference, tag, with_uv=False)
    if name in _UV_IMAGES and tag.startswith("python"):
        return _python_base(reference, tag, with_uv=True)
    if name == "scratch":
        return BaseImage(reference, {}, notes=("(sandbox) scratch: an empty image",))
    return BaseImage(
        reference,
        {"PATH": DOCKER_DEFAULT_PATH},
        notes=(
            f"(sandbox) {reference}: an empty tree here; the image's own files (shell, "
            "packages) are not provided, RUN lines see the host's tools",
        ),
    )


def link_uv_tools(directory: Path) -> None:
    """uv and uvx of the host, linked into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for tool, path in tool_image_files("ghcr.io/astral-sh/uv").items():
        target = directory / tool.lstrip("/")
        if target.exists() or target.is_symlink():
            target.unlink()
        target.symlink_to(path)


def tool_image_files(reference: str) -> dict[str, Path]:
    """The files the sandbox provides for a tool image (image path -> host file)."""
    name, _ = split_image(reference)
    if name not in _UV_IMAGES:
        return {}
    uv_bin = Path(uv.find_uv_bin()).resolve()
    files = {"/uv": uv_bin}
    uvx = uv_bin.with_name("uvx")
    if uvx.exists():
        files["/uvx"] = uvx
    return files
