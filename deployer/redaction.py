"""Output the deployer quotes (a container's log lines, a build's output, a health answer),
without the secrets in it.

Quoted output reaches the Slack thread, the terminal, the store and the logs, where
more people read it than may read the revision's environment. `redact` replaces:

- every known value: the revision's environment as the deployer set it (the config's
  `env`, the values read from `env_from_secret`) and any other value it read; also as
  Python's `repr`, JSON and a URL would escape it, and the start of one cut off by a
  line clipped with `…`;
- pydantic's `input_value=` dumps: a `ValidationError` quotes every input it was given,
  a pydantic-settings app's whole environment included, and shortens them in the middle,
  so what it shows of a value is not the value;
- the shapes credentials take wherever they come from: a URL's `user:password@`,
  `Bearer …`, Slack and GitHub tokens, private key blocks, AWS access key ids, and the
  value of a `password=` / `secret:` / `token=` / `api_key=` style assignment.

Each becomes `[redacted]`. Only what is quoted goes through it: the deployer's own
messages name no value, and a pattern could mangle them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "[redacted]"
# Shorter known values ("info", "true", "8080", "prod") are words any output is full of:
# hiding them would hide the error along with them, and they protect little.
MIN_VALUE_LENGTH = 6
CLIPPED = "…"  # how a clipped line ends (Cloud Logging lines, health answers)

# The whole dump: to the last `, input_type=` of its line (a value may hold that text),
# or to the end of the line when pydantic's line was clipped.
_INPUT_VALUE = re.compile(r"(input_value=)(?:.*(?=, input_type=)|.*)")
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
# The end of a key block whose start is above the quoted lines: its base64 lines and the end.
_PRIVATE_KEY_END = re.compile(
    r"(?:^[ \t]*[A-Za-z0-9+/=]{16,}[ \t]*\n)*[^\n]*?-----END [A-Z0-9 ]*PRIVATE KEY-----",
    re.MULTILINE,
)
# `scheme://user:password@host`: to the last `@` before the path, as a password may hold `@`.
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s/]+(?=@)", re.IGNORECASE)
_BEARER = re.compile(r"\b((?i:bearer)\s+)[A-Za-z0-9._~+/-]+=*")
_BASIC = re.compile(r"\b((?i:basic)\s+)[A-Za-z0-9+/]{8,}=*")
_TOKENS = re.compile(
    r"\bxox[abpr]-[A-Za-z0-9-]+"  # Slack
    r"|\bgh[pousr]_[A-Za-z0-9]{10,}"  # GitHub
    r"|\bgithub_pat_[A-Za-z0-9_]{10,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
)
# A name ending in a secret word (DB_PASSWORD, secret_key, api-token, apiKey, "password"),
# `=` or `:`, and its value: quoted (escapes allowed), or bare up to a delimiter.
_ASSIGNMENT = re.compile(
    r"""(?P<name>(?<![A-Za-z0-9])
        (?:(?:[A-Za-z0-9]+[_.-])*(?i:password|passwd|pwd|secret|token|key)
          |[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)*(?:Password|Secret|Token|Key))
        (?![A-Za-z0-9])["']?[ \t]*[:=][ \t]*)
    (?:(?P<dq>")(?:[^"\\\n]|\\.)*"
      |(?P<sq>')(?:[^'\\\n]|\\.)*'
      |(?!\[redacted\])[^\s"',;&)\]}]+)""",
    re.VERBOSE,
)


def redact(text: str, known_values: Iterable[str] = ()) -> str:
    """`text` with every known value (of at least MIN_VALUE_LENGTH characters), every
    `input_value=` dump and every credential-shaped string replaced by [redacted]."""
    values = _usable(known_values)
    for value in _spellings(values):
        text = text.replace(value, REDACTED)
    if values and CLIPPED in text:
        text = "\n".join(_unclip(line, values) for line in text.split("\n"))
    text = _PRIVATE_KEY.sub(REDACTED, text)
    text = _PRIVATE_KEY_END.sub(REDACTED, text)
    text = _INPUT_VALUE.sub(rf"\1{REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    text = _BASIC.sub(rf"\1{REDACTED}", text)
    text = _TOKENS.sub(REDACTED, text)
    return _ASSIGNMENT.sub(_assigned, text)


def _usable(known_values: Iterable[str]) -> list[str]:
    return sorted(
        {value for value in known_values if len(value.strip()) >= MIN_VALUE_LENGTH},
        key=len,
        reverse=True,
    )


def _spellings(values: list[str]) -> list[str]:
    """Each value as written, and as `repr`, JSON and a URL escape it; longest first, so a
    value holding another one is hidden whole."""
    found: set[str] = set()
    for value in values:
        found |= {value, repr(value)[1:-1], json.dumps(value)[1:-1], quote(value, safe="")}
    return sorted(found, key=len, reverse=True)


def _unclip(line: str, values: list[str]) -> str:
    """`line` with the start of a known value hidden when the line was clipped inside it."""
    if not line.endswith(CLIPPED):
        return line
    stem = line[: -len(CLIPPED)]
    for value in values:
        for length in range(len(value) - 1, MIN_VALUE_LENGTH - 1, -1):
            if stem.endswith(value[:length]):
                return stem[:-length] + REDACTED + CLIPPED
    return line


def _assigned(match: re.Match[str]) -> str:
    quote_mark = match["dq"] or match["sq"] or ""
    return f"{match['name']}{quote_mark}{REDACTED}{quote_mark}"
