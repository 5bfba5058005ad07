"""RUN, as far as the sandbox runs it: Python installs for real, inside the image.

A RUN's shell form is read as /bin/sh would (`shell_words.split_commands`) and each
simple command is judged on its own:

- uv (`uv sync --frozen --no-dev`, `uv pip install`, `uv venv`, ...) and Python itself
  (`python -m venv`, `python -c ...`) run for real inside the image (`common.rootfs`),
  with the package registry; the project's own build backend runs too, so its errors
  (hatchling's missing README.md) fail the build with its words.
- pip (`pip install -r ...`, `pip install .`, `python -m pip install ...`) runs as
  `uv pip install --python <that pip's python>`, and the log says so.
- `cd`, `export`, `true`, `echo` act as the shell's builtins would.
- Anything else (apt-get, useradd, curl, ...) is not run: the log says so, line by line.

A command runs only when the ones before it allowed it (`&&`, `||`, `;`), as in sh;
the first failing command fails the RUN with Docker's words.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import uv

from deployer_sandbox.cloud_build.image_trees import in_tree, prune_empty_dirs, remove_tree
from deployer_sandbox.cloud_build.shell_words import split_commands
from deployer_sandbox.common import rootfs

RUN_TIMEOUT_S = 900
_PIP_DROPPED = {
    "--no-cache-dir", "--disable-pip-version-check", "--no-warn-script-location",
    "--no-python-version-warning", "--user", "--force-reinstall", "--no-input",
}  # fmt: skip
_PIP_DROPPED_WITH_VALUE = {"--root-user-action", "--progress-bar", "--cache-dir", "--timeout"}


# What the machine's network needs, passed to every RUN as Docker passes its predefined
# proxy ARGs (Dockerfile reference, "Predefined ARGs"): the proxies, and the CA bundle of
# a TLS-inspecting egress, which the host's own tools are given the same way.
_MACHINE_ENV = (
    "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "PIP_CERT",
)  # fmt: skip


def machine_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with the machine's proxy and CA settings that it does not set itself."""
    found = {name: os.environ[name] for name in _MACHINE_ENV if name in os.environ}
    return {**found, **env}


class RunFailed(Exception):
    """A command of the RUN failed; `code` is its exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exit code: {code}")
        self.code = code


@dataclass
class RunContext:
    """Where and how a RUN's commands run."""

    tree: Path  # the stage's tree, materialized
    workdir: str
    env: dict[str, str]  # the image's ENV, the stage's ARGs, HOME
    say: Callable[[str], None]
    binds: dict[str, Path] = field(default_factory=dict)
    # uv's cache when it stands in for pip: the sandbox's, outside the image (pip's own
    # cache is not uv's, and it must not land in the image's /root/.cache).
    standin_cache: Path | None = None


_STANDIN_CACHE_AT = "/tmp/.deployer-sandbox-uv-cache"


def _which(tree: Path, env: Mapping[str, str], program: str) -> str | None:
    """The image path of `program` on the image's PATH, looked up in the tree only."""
    if "/" in program:
        return program if os.path.lexists(in_tree(tree, program, follow_last=False)) else None
    for directory in env.get("PATH", "").split(":"):
        candidate = posixpath.join(directory or "/", program)
        if os.path.lexists(in_tree(tree, candidate, follow_last=False)):
            return candidate
    return None


def _pip_python(tree: Path, env: Mapping[str, str], pip: str) -> str | None:
    """The interpreter a pip belongs to: the `python` beside it, else the one on PATH."""
    found = _which(tree, env, pip)
    if found is not None:
        beside = posixpath.join(posixpath.dirname(found), "python")
        if os.path.lexists(in_tree(tree, beside, follow_last=False)):
            return beside
    return _which(tree, env, "python3") or _which(tree, env, "python")


def _pip_as_uv(python: str, pip_args: list[str]) -> list[str] | None:
    """`pip install|uninstall ...` as `uv pip ...` for `python`, or None for other verbs."""
    if not pip_args or pip_args[0] not in ("install", "uninstall"):
        return None
    kept: list[str] = []
    words = iter(pip_args[1:])
    for word in words:
        flag = word.partition("=")[0]
        if word in _PIP_DROPPED:
            continue
        if flag in _PIP_DROPPED_WITH_VALUE:
            if "=" not in word:
                next(words, None)
            continue
        kept.append("--prerelease=allow" if word == "--pre" else word)
    if pip_args[0] == "uninstall":
        kept = [w for w in kept if w not in ("-y", "--yes")]
    return [uv.find_uv_bin(), "pip", pip_args[0], "--python", python, *kept]


def _judge(words: list[str], ctx: RunContext) -> list[str] | None:
    """The argv to run for one simple command, or None when it is not run here."""
    if any(w in (">", ">>", "<", "&>") or w.startswith("2>") for w in words):
        return None
    program = posixpath.basename(words[0])
    if program in ("uv", "uvx"):
        return words
    pip_args: list[str] | None = None
    python: str | None = None
    if program == "pip" or (program.startswith("pip") and program[3:].replace(".", "").isdigit()):
        python, pip_args = _pip_python(ctx.tree, ctx.env, words[0]), words[1:]
    elif program.startswith("python") and words[1:3] == ["-m", "pip"]:
        python, pip_args = words[0], words[3:]
    elif program.startswith("python"):
        return words
    if pip_args is None:
        return None
    translated = _pip_as_uv(python or "python", pip_args)
    if translated is not None:
        shown = " ".join(["uv", *translated[1:]])
        ctx.say(f"(sandbox) {' '.join(words)}: run as {shown} (the host's uv)")
    return translated


def runs_anything(text: str | None, argv: list[str] | None, env: Mapping[str, str]) -> bool:
    """Whether any command of the RUN would really run (uv, Python, pip installs)."""
    commands = split_commands(text, env) if text is not None else [(";", argv or [])]
    for _, words in commands:
        while len(words) > 1 and "=" in words[0].split("/")[0]:
            words = words[1:]  # `VAR=value command`
        program = posixpath.basename(words[0])
        if program in ("uv", "uvx") or program.startswith("python"):
            return True
        if program.startswith("pip") and words[1:2] in (["install"], ["uninstall"]):
            return True
    return False


def _spawn(argv: list[str], cwd: str, env: dict[str, str], ctx: RunContext) -> int:
    """Run one command inside the image; stream its output to the log; its exit status."""
    reason = rootfs.unavailable()
    if reason is None:
        command = rootfs.command_in_image(ctx.tree, cwd, argv, binds=ctx.binds)
        host_cwd: Path | None = None
    else:
        ctx.say(f"(sandbox) no mount namespace ({reason}): run in {ctx.tree}{cwd}")
        host_cwd = in_tree(ctx.tree, cwd)
        host_cwd.mkdir(parents=True, exist_ok=True)
        paths = [str(in_tree(ctx.tree, d)) for d in env.get("PATH", "").split(":") if d]
        env = {**env, "PATH": ":".join([*paths, os.environ.get("PATH", "")])}
        command = argv
    before = {entry.name for entry in os.scandir(ctx.tree)}
    if argv[0] == uv.find_uv_bin() and ctx.standin_cache is not None and reason is None:
        command = rootfs.command_in_image(
            ctx.tree, cwd, argv, binds={**ctx.binds, _STANDIN_CACHE_AT: ctx.standin_cache}
        )
        env = {"UV_CACHE_DIR": _STANDIN_CACHE_AT, "UV_LINK_MODE": "copy", **env}
    try:
        with subprocess.Popen(
            command,
            cwd=host_cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                ctx.say(line.rstrip("\n"))
            code = process.wait(RUN_TIMEOUT_S)
    except OSError as error:
        ctx.say(f"/bin/sh: 1: {argv[0]}: {error.strerror}")
        return 127
    with contextlib.suppress(OSError):  # the stand-in cache's mount point, if it was made
        in_tree(ctx.tree, _STANDIN_CACHE_AT).rmdir()
    prune_empty_dirs(ctx.tree, before)
    remove_tree(ctx.tree.with_name(ctx.tree.name + ".work"))
    return code


def run_commands(text: str | None, argv: list[str] | None, ctx: RunContext) -> None:
    """Run a RUN's commands (shell form `text`, or exec form `argv`); `RunFailed` on failure."""
    commands = split_commands(text, ctx.env) if text is not None else [(";", argv or [])]
    cwd, env = ctx.workdir, machine_environment(ctx.env)
    status = 0
    for operator, words in commands:
        if (operator == "&&" and status != 0) or (operator == "||" and status == 0):
            continue
        assignments = 0
        while assignments < len(words) and "=" in words[assignments].split("/")[0]:
            assignments += 1
        prefix = dict(w.split("=", 1) for w in words[:assignments])
        words = words[assignments:]
        if not words:
            env.update(prefix)
            status = 0
            continue
        status = _one(words, cwd, {**env, **prefix}, ctx)
        if words[0] == "cd" and status == 0:
            cwd = posixpath.normpath(posixpath.join(cwd, words[1] if len(words) > 1 else "/root"))
        elif words[0] == "export":
            env.update(w.partition("=")[::2] for w in words[1:] if "=" in w)
    # `/bin/sh -c` exits with the status of the last command it ran.
    if status != 0:
        raise RunFailed(status)


def _one(words: list[str], cwd: str, env: dict[str, str], ctx: RunContext) -> int:
    """Run or judge one simple command; its exit status."""
    builtin = words[0]
    if builtin in ("cd", "export", "set", "true", ":"):
        return 0
    if builtin == "false":
        return 1
    if builtin == "echo":
        ctx.say(" ".join(words[1:]))
        return 0
    argv = _judge(words, ctx)
    if argv is None:
        ctx.say(f"(sandbox) not run: {' '.join(words)}")
        return 0
    if argv[0] in ("uv", "uvx") and _which(ctx.tree, env, argv[0]) is None:
        ctx.say(f"/bin/sh: 1: {argv[0]}: not found")
        return 127
    return _spawn(argv, cwd, env, ctx)
