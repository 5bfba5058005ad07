"""The secrets setup stores, read from `--secrets-file FILE` or standard input (never
argv, where `ps` and the shell's history would keep them), as dotenv lines:

    SLACK_SIGNING_SECRET=...
    SLACK_BOT_TOKEN=xoxb-...
    GITHUB_WEBHOOK_SECRET=...

Any may be left out: a secret already stored keeps its value. An unknown name is refused
(a typo would otherwise be silently dropped), naming the line's variable, never a value.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from deployer.dotenv import parse_dotenv
from deployer.errors import DeployerError
from deployer.setup.names import INPUT_SECRETS


def read_secret_values(path: Path | None, stdin: TextIO | None = None) -> dict[str, str]:
    """secret id -> value, from `path`, else from `stdin` (nothing when it is a terminal
    left empty)."""
    if path is not None:
        try:
            text, source = path.read_text(), str(path)
        except OSError as error:
            raise DeployerError(f"--secrets-file {path}: {error.strerror}") from None
    else:
        stream = stdin if stdin is not None else sys.stdin
        if stream.isatty():
            print(
                "Paste SLACK_SIGNING_SECRET=..., SLACK_BOT_TOKEN=... and "
                "GITHUB_WEBHOOK_SECRET=... lines, then Ctrl-D (none to keep what is stored):",
                file=sys.stderr,
            )
        text, source = stream.read(), "standard input"
    values = parse_dotenv(text, source)
    variables = {variable: secret for secret, variable in INPUT_SECRETS.items()}
    unknown = sorted(set(values) - set(variables))
    if unknown:
        raise DeployerError(
            f"{source}: unknown {', '.join(unknown)}; setup reads only "
            f"{', '.join(sorted(variables))}"
        )
    return {variables[name]: value for name, value in values.items() if value}
