"""The sandbox is a package of its own: only its harness knows the deployer, and the
deployer knows only the harness (lazily, for `deployer sandbox` and `deployer demo`)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "sandbox" / "deployer_sandbox"
PRODUCT = ROOT / "deployer"


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in the file, at any depth (lazy imports too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _offending(root: Path, forbidden: str, allowed: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        if where.startswith(allowed):
            continue
        for line, module in imports(path):
            if module == forbidden or module.startswith(forbidden + "."):
                found.append(f"{where}:{line} imports {module}")
    return found


def test_only_the_harness_imports_the_deployer() -> None:
    """Beside the harness, the builder reads Dockerfiles with the deployer's own reading of
    Docker's rules (`deployer.dockerfiles`), so the lint and the build cannot disagree."""
    assert SANDBOX.is_dir()
    found = _offending(SANDBOX, "deployer", ("sandbox/deployer_sandbox/harness/",))
    shared = [
        entry
        for entry in found
        if entry.startswith("sandbox/deployer_sandbox/cloud_build/")
        and entry.split(" imports ")[1].startswith("deployer.dockerfiles")
    ]
    assert sorted(set(found) - set(shared)) == []


def test_the_deployer_reaches_the_sandbox_only_through_its_harness() -> None:
    found = [
        entry
        for entry in _offending(PRODUCT, "deployer_sandbox", ())
        if not entry.split(" imports ")[1].startswith("deployer_sandbox.harness")
    ]
    assert found == []
    assert not (PRODUCT / "sandbox").exists()


def test_each_emulated_api_is_a_package() -> None:
    packages = {path.parent.name for path in SANDBOX.glob("*/__init__.py")}
    assert packages == {
        "artifact_registry",
        "cloud_build",
        "cloud_logging",
        "cloud_run",
        "common",
        "firestore_admin",
        "functions",
        "github",
        "harness",
        "iam",
        "metadata",
        "monitoring",
        "resource_manager",
        "scheduler",
        "secret_manager",
        "service_usage",
        "slack",
        "storage",
    }


# A sandbox module named in prose: `cloud_run.iam`, `slack.rate_limits`.
_MODULE_REFERENCE = re.compile(
    r"`((?:artifact_registry|cloud_build|cloud_logging|cloud_run|common|firestore_admin|functions|github|harness|iam|metadata|monitoring|resource_manager|scheduler|secret_manager|service_usage|slack|storage)"
    r"\.[a-z_]+)`"
)
# A file name in prose, not part of a path: `masks.py`, but not google/auth/_metadata.py.
_FILE_REFERENCE = re.compile(r"(?<![\w/.])([a-z_]+\.py)\b")


def test_docstrings_and_comments_name_modules_that_exist() -> None:
    """Modules get renamed and split; a pointer to one that is gone misleads the reader."""
    files = {path.name for path in SANDBOX.rglob("*.py")} | {p.name for p in ROOT.glob("*.py")}
    stale = []
    for path in sorted(SANDBOX.rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for module in _MODULE_REFERENCE.findall(line):
                if not (SANDBOX / f"{module.replace('.', '/')}.py").is_file():
                    stale.append(f"{where}:{number} names {module}")
            stale.extend(
                f"{where}:{number} names {name}"
                for name in _FILE_REFERENCE.findall(line)
                if name not in files
            )
    assert stale == []
