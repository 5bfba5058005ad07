"""Errors the deployer raises on purpose. Every message says what was found and what to do.

    DeployerError
    ├── ConfigError          deployer.toml is missing, malformed or inconsistent
    ├── DotenvError          a dotenv file (or secret holding one) does not parse
    └── RefusedError         a safety dependency is missing (signing secret, lock store)

Failures of the platform during a deploy are not exceptions to the caller: each
stage ends with a typed result (deployer/pipeline/stages.py).
"""

from __future__ import annotations


class DeployerError(Exception):
    """Root of every error the deployer raises deliberately."""


class ConfigError(DeployerError):
    """The configuration cannot be used; the message names the file, the field and the fix."""


class DotenvError(DeployerError):
    """A dotenv text does not parse; the message names the line."""


class RefusedError(DeployerError):
    """Something needed for safety is missing, so the deployer refuses to act."""
