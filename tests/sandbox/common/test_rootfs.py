"""Entering an image: its tree at its own paths, a fresh /tmp, the sandbox's tools kept."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from deployer_sandbox.common import rootfs


@pytest.fixture(autouse=True)
def _namespaces() -> None:
    reason = rootfs.unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs as root with mount namespaces: {reason}")
        pytest.skip(f"needs mount namespaces: {reason}")


def enter(
    image: Path, argv: list[str], tools: list[str], layer: Path
) -> subprocess.CompletedProcess[str]:
    command = rootfs.command_in_image(image, "/app", argv, private_layer=layer)
    spec = json.loads(command[-1])
    spec["tools"] = tools
    return subprocess.run(
        [*command[:-1], json.dumps(spec)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_tool_of_the_sandbox_under_tmp_stays_visible_where_tmp_is_the_images_own(
    tmp_path: Path,
) -> None:
    # The sandbox's virtualenv (its uv) may live in a checkout under /tmp, as the image
    # does; the image's /tmp is a fresh one, but the stand-in tools must still run.
    assert str(tmp_path).startswith("/tmp/")
    image = tmp_path / "image"
    (image / "app").mkdir(parents=True)
    (image / "app" / "hello.txt").write_text("from the image\n")
    tools = tmp_path / "venv" / "bin"
    tools.mkdir(parents=True)
    tool = tools / "stand-in"
    tool.write_text("#!/bin/sh\ncat hello.txt\n")
    tool.chmod(0o755)

    kept = enter(image, [str(tool)], [str(tools)], tmp_path / "layer-1")
    hidden = enter(image, [str(tool)], [], tmp_path / "layer-2")

    assert kept.returncode == 0, kept.stderr
    assert kept.stdout == "from the image\n"
    assert hidden.returncode == 127
    assert f'exec: "{tool}": executable file not found in $PATH' in hidden.stderr
    # Nothing else of the host's /tmp is there: the image's /tmp is its own.
    peek = enter(image, ["/bin/ls", str(tmp_path)], [str(tools)], tmp_path / "layer-3")
    assert peek.stdout.split() == ["venv"]


def test_the_sandbox_names_its_uv_as_a_tool_to_keep() -> None:
    import uv

    assert str(Path(uv.find_uv_bin()).resolve().parent) in rootfs.host_tools()
