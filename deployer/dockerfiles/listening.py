"""Which port the image's command listens on, read from its CMD/ENTRYPOINT and source.

Cloud Run sends requests to the container port and sets `PORT` to it: "the
container must listen for requests on 0.0.0.0 on the port to which requests are
sent. By default, requests are sent to 8080, but you can configure Cloud Run to send
requests to the port of your choice" (cloud.google.com/run/docs/container-contract#port).
A server started on a fixed other port never answers. Servers' own defaults when no
port is given: uvicorn, hypercorn, daphne, `fastapi run` and `python -m http.server`
8000, `flask run` 5000; gunicorn binds `0.0.0.0:$PORT` when `PORT` is set
(docs.gunicorn.org/en/stable/settings.html#bind). In exec form nothing expands
`$PORT`: "Unlike the shell form, the exec form does not invoke a command shell. This
means that normal shell processing does not happen" (docs.docker.com/reference/dockerfile/#cmd).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from deployer.dockerfiles.parse import Instruction

_READS_PORT = re.compile(r"\$\{?PORT\b")
_FIXED = (
    re.compile(r"(?:--port|--http-port|--listen-port)(?:=|\s+)(\d{2,5})\b"),
    re.compile(r"(?:--bind|-b)(?:=|\s+)[^\s:]*:(\d{2,5})\b"),
    re.compile(r"\bhttp\.server\s+(?:--\S+\s+)*(\d{2,5})\b"),
)
_DEFAULTS = (
    (re.compile(r"\bflask\b.*\brun\b"), 5000, "flask run"),
    (re.compile(r"\bfastapi\s+(?:run|dev)\b"), 8000, "fastapi run"),
    (re.compile(r"\b(?:uvicorn|hypercorn|daphne)\b"), 8000, "{}"),
    (re.compile(r"\bhttp\.server\b"), 8000, "http.server"),
)
_SOURCE_PORT = re.compile(r"""["'`]PORT["'`]|\benv\.PORT\b|\$\{?PORT\b""")
_SHELLS = ("sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/env")


@dataclass(frozen=True)
class Listening:
    """What was found: `warning` when the revision would not answer on the container port."""

    warning: bool
    message: str


def command_of(entrypoint: Instruction | None, cmd: Instruction | None) -> tuple[list[str], bool]:
    """(argv, whether a shell reads it) of an image's ENTRYPOINT and CMD."""
    argv: list[str] = []
    shell = False
    for instruction in (entrypoint, cmd):
        if instruction is None:
            continue
        if instruction is cmd and entrypoint is not None and not entrypoint.json:
            break  # a shell-form ENTRYPOINT ignores CMD
        if instruction.json:
            argv += list(instruction.args)
        else:
            argv += ["/bin/sh", "-c", " ".join(instruction.args)]
    if argv and (argv[0].rsplit("/", 1)[-1] in ("sh", "bash") or argv[0] in _SHELLS):
        shell = "-c" in argv
    return argv, shell


def listening(
    entrypoint: Instruction | None,
    cmd: Instruction | None,
    container_port: int,
    settings_read: set[str],
    sources: Mapping[str, str],
) -> Listening:
    """How the image's command meets `container_port`. `settings_read`: variable names
    the app's settings classes read (lower-case); `sources`: the image's source files."""
    argv, shell = command_of(entrypoint, cmd)
    if not argv:
        return Listening(True, "the image has no CMD or ENTRYPOINT: the base image's runs")
    last = cmd if cmd is not None and (entrypoint is None or entrypoint.json) else entrypoint
    where = f"line {last.line}" if last is not None else ""
    text = " ".join(argv)
    shown = " ".join(argv[2:] if shell and argv[1:2] == ["-c"] else argv)
    if _READS_PORT.search(text):
        if not shell:
            return Listening(
                True,
                f'{where} `{shown}` is exec form, so $PORT is passed as the text "$PORT", '
                'not expanded; fix: use the shell form, or ["sh", "-c", "..."]',
            )
        return Listening(False, f"{where} `{shown}` listens on $PORT")
    for pattern in _FIXED:
        if (match := pattern.search(text)) is not None:
            return _fixed(int(match[1]), f"{where} `{shown}` listens on {match[1]}", container_port)
    for pattern, port, name in _DEFAULTS:
        if (match := pattern.search(text)) is not None:
            server = name.format(match[0])
            return _fixed(
                port, f"{where} `{shown}` listens on {port} ({server}'s default)", container_port
            )
    if "port" in settings_read:
        return Listening(False, f"`{shown}`: its settings read PORT")
    for path, source in sorted(sources.items()):
        if _SOURCE_PORT.search(source):
            return Listening(False, f"`{shown}`: {path} reads PORT")
    return Listening(
        True,
        f"{where} `{shown}` never reads $PORT, and no source file of the image does: Cloud "
        f"Run sends requests to port {container_port} and sets PORT to it; fix: listen on "
        "$PORT",
    )


def _fixed(port: int, said: str, container_port: int) -> Listening:
    if port == container_port:
        return Listening(False, f"{said}, the container port")
    return Listening(
        True,
        f"{said}, but the container port is {container_port}: Cloud Run sends requests "
        f"there and sets PORT to it; fix: listen on $PORT (shell form), or set run.port "
        f"= {port} in the environment",
    )
