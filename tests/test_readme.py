"""The README's Quickstart is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path


def quickstart_lines(readme: str) -> list[str]:
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the Quickstart has no sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_is_two_lines_and_ci_runs_the_second_verbatim(repo_root: Path) -> None:
    lines = quickstart_lines((repo_root / "README.md").read_text())
    assert len(lines) == 2
    assert lines[0].endswith("deployer demo")
    ci = (repo_root / ".ci" / "run").read_text().splitlines()
    assert lines[1] in ci
