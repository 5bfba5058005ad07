"""Which lines of a failure's detail are shown when not all fit: the key ones first.

A crashed container's last lines are rarely its reason: after pydantic's
"mongodb_url / Field required" come its help link, Cloud Run's exit line, a restart's
output. The terminal and the Slack thread show at most DETAIL_LINES lines of a
detail; when it is longer, its key lines come first, in their order:

- error lines: a traceback's last line (the exception, whatever its name), lines
  naming an `Error`, `ERROR`, `error:`, `Exception`, `ERR!`, `panic:`, `FATAL`,
  `Field required`, `validation error`, and pydantic's `[type=…]` lines with the
  field named above them;
- the lines saying where the app listens or should: `Uvicorn running on`,
  `Listening on`, `PORT` (Cloud Run's "…listen on the port defined … by the PORT=8080
  environment variable"), `port 8080`;

then a `…` line when lines were left out, then the detail's last lines. Key lines
take at most half of the budget, so the end of the output is still seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DETAIL_LINES = 15  # the terminal's and the Slack thread's budget for one detail
GAP = "…"  # stands for the lines left out between the key lines and the last ones

_ERROR = re.compile(
    r"Error|ERROR|error:|Exception|ERR!|Field required|validation error|panic:|FATAL"
)
# pydantic's message line, under the line naming the field: "  Field required [type=missing, …".
_PYDANTIC = re.compile(r"^\s+\S.*\[type=[\w.]+")
_LISTEN = re.compile(r"\b(?i:running on|listening on|listening at)\b|\bPORT\b|\b(?i:port)[ =:]\d+")
_TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True)
class Excerpt:
    """What is shown of a detail: key lines from before the tail, then the tail."""

    key: tuple[str, ...]
    tail: tuple[str, ...]
    gap: bool  # lines were left out between the key lines and the tail

    def lines(self) -> list[str]:
        return [*self.key, *([GAP] if self.gap else []), *self.tail]


def excerpt(detail: str, budget: int = DETAIL_LINES) -> Excerpt:
    """At most `budget` lines of `detail`: all of them when they fit, else its key lines
    first (at most half the budget), a gap line, and its last lines."""
    lines = detail.strip().splitlines()
    if len(lines) <= budget:
        return Excerpt((), tuple(lines), False)
    ranked = _ranked(lines)
    most = max(0, (budget - 1) // 2)  # with the gap line, the tail keeps half the budget
    start = len(lines) - budget
    while True:
        shown = {line.strip() for line in lines[start:]}
        # A key line the tail shows already is not repeated.
        picked = sorted([i for i in ranked if i < start and lines[i].strip() not in shown][:most])
        size = budget - len(picked)
        if picked and picked[-1] < len(lines) - size - 1:
            size -= 1  # the gap line
        # Key lines shorten the tail; one the shorter tail no longer shows may be picked
        # too. The tail only ever shortens, so this ends.
        if len(lines) - size <= start:
            break
        start = len(lines) - size
    gap = bool(picked) and picked[-1] < start - 1
    return Excerpt(tuple(lines[i] for i in picked), tuple(lines[start:]), gap)


def _ranked(lines: list[str]) -> list[int]:
    """The key lines' indexes: errors first, then listening lines, each line's text once."""
    errors: list[int] = []
    listening: list[int] = []
    in_traceback = False
    for index, line in enumerate(lines):
        if line.lstrip().startswith(_TRACEBACK):
            in_traceback = True
            continue
        if in_traceback:
            # Frames and their code are indented ("raise ValueError" is not the error);
            # the first line that is not is the exception.
            if not line.strip() or line[:1].isspace():
                continue
            in_traceback = False
            errors.append(index)
            continue
        if _PYDANTIC.search(line):
            above = index - 1
            if above >= 0 and lines[above].strip() and not lines[above][:1].isspace():
                errors.append(above)  # the field's name
            errors.append(index)
        elif _ERROR.search(line):
            errors.append(index)
        elif _LISTEN.search(line):
            listening.append(index)
    seen: set[str] = set()
    ranked: list[int] = []
    for index in [*errors, *listening]:
        text = lines[index].strip()
        if text not in seen:
            seen.add(text)
            ranked.append(index)
    return ranked
