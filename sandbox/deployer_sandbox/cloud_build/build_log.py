"""A build's log in the words of the builder that runs it.

BuildKit (`docker buildx build`, DOCKER_BUILDKIT=1) numbers its vertices and labels
each filesystem step with its stage and position (`#5 [builder 3/7] WORKDIR /app`),
prints a command's output prefixed with the vertex, then `DONE 1.2s`, `CACHED` or
`ERROR: ...`; the build ends with `ERROR: failed to solve: ...`. The legacy builder
prints `Step k/n : INSTRUCTION` for every instruction, ` ---> Using cache`, and
`Successfully built <id>`. (Output formats of docker/buildx's progress printer and
moby's builder/dockerfile.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

_BUILDKIT_STEPS = ("FROM", "COPY", "ADD", "RUN", "WORKDIR")


def shown(original: str) -> str:
    """An instruction as the log shows it: one line, runs of blanks collapsed."""
    return re.sub(r"\s+", " ", original.replace("\\\n", " ")).strip()


class BuildLog:
    """Steps, output and outcomes of one `docker build`, in the builder's format."""

    def __init__(self, say: Callable[[str], None], buildkit: bool) -> None:
        self._say = say
        self.buildkit = buildkit
        self._vertex = 0
        self._started = 0.0
        self._current = ""
        self._shown = False

    def note(self, text: str) -> None:
        """A line of the sandbox's own (always says what the sandbox did not do)."""
        for line in text.splitlines():
            self._say(f"#{self._vertex} {line}" if self.buildkit and self._vertex else line)

    def output(self, line: str) -> None:
        """A line a command printed."""
        if self.buildkit:
            self._say(f"#{self._vertex} {time.monotonic() - self._started:.3f} {line}")
        else:
            self._say(line)

    def header(self, dockerfile: str, size: int, context_bytes: int) -> None:
        if self.buildkit:
            self._vertex = 1
            self._say(f"#1 [internal] load build definition from {dockerfile}")
            self._say(f"#1 transferring dockerfile: {size}B done")
            self._say("#1 DONE 0.0s")
            self._vertex = 2
            self._say("#2 [internal] load build context")
            self._say(f"#2 transferring context: {context_bytes}B done")
            self._say("#2 DONE 0.0s")
        else:
            self._say(
                "DEPRECATED: The legacy builder is deprecated and will be removed in a future "
                "release.\n            Install the buildx component to build images with "
                "BuildKit:\n            https://docs.docker.com/go/buildx/"
            )
            self._say(f"Sending build context to Docker daemon  {context_bytes / 1024:.2f}kB")

    def step(self, keyword: str, label: str, legacy_position: str, original: str) -> bool:
        """Announce an instruction; False when the builder shows nothing for it."""
        self._started = time.monotonic()
        self._current = f"[{label}] {shown(original)}"
        self._shown = not self.buildkit or keyword in _BUILDKIT_STEPS
        if not self.buildkit:
            self._say(f"Step {legacy_position} : {shown(original)}")
            return True
        if not self._shown:
            return False
        self._vertex += 1
        self._say(f"#{self._vertex} {self._current}")
        return True

    def done(self, layer_id: str) -> None:
        if not self._shown:
            return
        if self.buildkit:
            self._say(f"#{self._vertex} DONE {time.monotonic() - self._started:.1f}s")
        else:
            self._say(f" ---> {layer_id[:12]}")

    def cached(self, layer_id: str) -> None:
        if not self._shown:
            return
        if self.buildkit:
            self._say(f"#{self._vertex} CACHED")
        else:
            self._say(" ---> Using cache")
            self._say(f" ---> {layer_id[:12]}")

    def running(self, layer_id: str) -> None:
        if not self.buildkit:
            self._say(f" ---> Running in {layer_id[12:24]}")

    def failed(self, message: str) -> str:
        """Log the current step's failure; the message the build step fails with."""
        if not self.buildkit:
            return message
        self._say(f"#{self._vertex} ERROR: {message}")
        self._say("------")
        self._say(f" > {self._current}:")
        self._say("------")
        return f"ERROR: failed to solve: {message}"

    def exported(self, digest: str, tags: list[str]) -> None:
        if self.buildkit:
            self._vertex += 1
            self._say(f"#{self._vertex} exporting to image")
            self._say(f"#{self._vertex} exporting layers done")
            self._say(f"#{self._vertex} writing image {digest} done")
            for tag in tags:
                self._say(f"#{self._vertex} naming to {tag} done")
            self._say(f"#{self._vertex} DONE 0.0s")
        else:
            self._say(f"Successfully built {digest.removeprefix('sha256:')[:12]}")
            for tag in tags:
                self._say(f"Successfully tagged {tag}")
